"""What is alive when start-up is done is left out of the collector's passes; what comes later is not."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Callable

import pytest

from core import heap
from core.heap import freeze_long_lived_objects


def test_freezing_leaves_out_what_lives_and_collects_what_comes_later() -> None:
    long_lived: list[object] = ["a guild cached at start-up"]
    try:
        freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
        assert not any(obj is long_lived for obj in gc.get_objects())  # frozen: no pass walks it
        later: list[object] = []
        later.append(later)  # a cycle only the collector can free
        assert any(obj is later for obj in gc.get_objects())
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual


class Cycle:
    def __init__(self) -> None:
        self.me = self


def old_garbage_cycle() -> weakref.ref[Cycle]:
    """A reference cycle that has reached the oldest generation and then become garbage: only a full pass frees it."""
    cycle = Cycle()
    gc.collect(1)  # still referenced: it survives into the oldest generation
    return weakref.ref(cycle)


@contextlib.asynccontextmanager
async def collector(monkeypatch: pytest.MonkeyPatch, quiet: Callable[[], bool]) -> AsyncIterator[None]:
    """collect_in_quiet_moments running, with its intervals made short."""
    monkeypatch.setattr(heap, "FULL_COLLECTION_EVERY", 0.01)
    monkeypatch.setattr(heap, "QUIET_CHECK", 0.01)
    task = asyncio.create_task(heap.collect_in_quiet_moments(quiet))
    try:
        await asyncio.sleep(0.01)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def freed(cycle: weakref.ref[Cycle]) -> bool:
    for _ in range(100):
        if cycle() is None:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_full_passes_wait_for_a_quiet_moment_and_the_schedule_comes_back_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule = gc.get_threshold()
    quiet = False
    async with collector(monkeypatch, lambda: quiet):
        assert gc.get_threshold()[2] > 10**6  # the collector no longer starts full passes by itself
        cycle = old_garbage_cycle()
        await asyncio.sleep(0.1)
        assert cycle() is not None  # busy: no full pass
        quiet = True
        assert await freed(cycle)
    assert gc.get_threshold() == schedule


async def test_a_bot_that_is_never_quiet_gets_its_full_pass_late_but_gets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "LONGEST_POSTPONEMENT", 0.05)
    async with collector(monkeypatch, lambda: False):
        assert await freed(old_garbage_cycle())
