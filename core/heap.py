"""Keeps the garbage collector's full passes short by leaving what lives for the whole run out of them.

After start-up the heap holds tens of thousands of objects (modules, classes, discord.py's caches) that stay
until the process exits. Python's oldest-generation collection walks all of them every time, and a pass over
the whole heap stalled the event loop for 50-120 ms in a burst of requests. `gc.freeze()` moves them to a
generation the collector never walks.

What the bot creates later is collected as before by the young generations' short passes; the full passes, which
walk everything, wait for a quiet moment instead of landing in the middle of a burst (one took 40 ms there).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FULL_COLLECTION_EVERY = 60.0  # seconds between two full passes, when the bot is quiet
LONGEST_POSTPONEMENT = 300.0  # a bot that is never quiet gets one this long after it was due
QUIET_CHECK = 1.0
_NEVER = 1 << 30  # a threshold the oldest generation's count never reaches


def freeze_long_lived_objects() -> None:
    """Collects once, then freezes what survived. Call when start-up is done."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "%d long-lived objects left out of garbage collection (%.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


async def collect_in_quiet_moments(quiet: Callable[[], bool]) -> None:
    """Takes the full passes over from the collector's own schedule: every FULL_COLLECTION_EVERY seconds, once
    `quiet()` says nothing is going on (or LONGEST_POSTPONEMENT after it was due). Runs until cancelled, then gives
    the collector its schedule back."""
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    try:
        while True:
            await asyncio.sleep(FULL_COLLECTION_EVERY)
            postponed = 0.0
            while not quiet() and postponed < LONGEST_POSTPONEMENT:
                await asyncio.sleep(QUIET_CHECK)
                postponed += QUIET_CHECK
            started = time.perf_counter()
            found = gc.collect()
            log.debug("full garbage collection: %d found in %.0f ms", found, (time.perf_counter() - started) * 1000)
    finally:
        gc.set_threshold(young, middle, oldest)
