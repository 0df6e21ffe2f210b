"""At most one edit per message every few seconds; a newer status replaces one still waiting.

The last word on a message (the image, or why the job failed) never waits for the interval: `finish` drops a
waiting edit and only lets one already sent complete, so it cannot land on top of the final message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Action = Callable[[], Awaitable[object]]


@dataclass
class _Slot:
    last: float = -math.inf
    pending: Action | None = None
    task: asyncio.Task[None] | None = None  # waits for the interval, then sends `pending`
    in_flight: asyncio.Future[object] | None = None  # an edit already sent


class EditThrottle:
    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        turn: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        """Each edit is sent inside `turn()`, which may make it wait for more urgent work (edits are cosmetic)."""
        self.interval = interval
        self._clock = clock
        self._turn = turn
        self._slots: dict[str, _Slot] = {}

    def submit(self, key: str, action: Action) -> None:
        """Runs `action` when `key` is next allowed an edit, unless a newer one replaces it before then."""
        slot = self._slots.setdefault(key, _Slot())
        slot.pending = action
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._drain(slot), name=f"throttle-{key}")

    async def finish(self, key: str, action: Callable[[], Awaitable[T]]) -> T:
        """Runs the final `action` for `key` now, whatever the interval says, and forgets the key.

        A waiting edit is dropped; an edit already on its way is let finish first (milliseconds, not the interval),
        so that it cannot overwrite the final message.
        """
        slot = self._slots.pop(key, None)
        if slot is not None:
            slot.pending = None
            if slot.in_flight is not None:
                await asyncio.wait([slot.in_flight])
            if slot.task is not None:
                slot.task.cancel()
        return await action()

    def drop(self, key: str) -> None:
        """Forgets `key`: an edit waiting for the interval is not sent (one already sent completes)."""
        slot = self._slots.pop(key, None)
        if slot is not None:
            slot.pending = None
            if slot.task is not None:
                slot.task.cancel()

    async def _drain(self, slot: _Slot) -> None:
        while slot.pending is not None:
            wait = slot.last + self.interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._turn():
                action, slot.pending = slot.pending, None
                if action is None:
                    return
                slot.in_flight = asyncio.ensure_future(action())
                try:
                    await asyncio.shield(slot.in_flight)
                except Exception:
                    log.warning("a status edit failed", exc_info=True)
                finally:
                    slot.last = self._clock()
                    slot.in_flight = None
