"""At most one edit per message every few seconds; a newer status replaces one still waiting."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Action = Callable[[], Awaitable[object]]


@dataclass
class _Slot:
    last: float = -math.inf
    pending: Action | None = None
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EditThrottle:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._slots: dict[str, _Slot] = {}

    def submit(self, key: str, action: Action) -> None:
        """Runs `action` when `key` is next allowed an edit, unless a newer one replaces it before then."""
        slot = self._slots.setdefault(key, _Slot())
        slot.pending = action
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._drain(slot), name=f"throttle-{key}")

    async def run_now(self, key: str, action: Callable[[], Awaitable[T]]) -> T:
        """Runs `action` as soon as `key` is allowed an edit, dropping any waiting one; returns its result."""
        slot = self._slots.setdefault(key, _Slot())
        slot.pending = None
        async with slot.lock:
            await self._wait_turn(slot)
            try:
                return await action()
            finally:
                slot.last = self._clock()

    def forget(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            slot.pending = None

    async def _drain(self, slot: _Slot) -> None:
        while slot.pending is not None:
            async with slot.lock:
                await self._wait_turn(slot)
                action, slot.pending = slot.pending, None
                if action is None:
                    return
                try:
                    await action()
                except Exception:
                    log.warning("a status edit failed", exc_info=True)
                finally:
                    slot.last = self._clock()

    async def _wait_turn(self, slot: _Slot) -> None:
        wait = slot.last + self.interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
