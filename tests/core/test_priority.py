"""Acknowledgements first: later work waits for requests still being acknowledged, a few at a time, in order."""

from __future__ import annotations

import asyncio
import contextlib

from core.priority import AcknowledgementsFirst


async def settle() -> None:
    """Lets every task that can run do so."""
    for _ in range(10):
        await asyncio.sleep(0)


class Held:
    """A request that stays in its acknowledging part until released."""

    def __init__(self, gate: AcknowledgementsFirst) -> None:
        self.release = asyncio.Event()
        self.inside = asyncio.Event()
        self.task = asyncio.create_task(self._run(gate))

    async def _run(self, gate: AcknowledgementsFirst) -> None:
        async with gate.acknowledging():
            self.inside.set()
            await self.release.wait()


def later_work(gate: AcknowledgementsFirst, log: list[str], name: str, hold: asyncio.Event | None = None):
    async def run() -> None:
        async with gate.later():
            log.append(name)
            if hold is not None:
                await hold.wait()

    return asyncio.create_task(run())


async def test_later_work_goes_at_once_when_no_request_is_being_acknowledged() -> None:
    gate = AcknowledgementsFirst(quiet=0)
    log: list[str] = []
    await later_work(gate, log, "edit")
    assert log == ["edit"]


async def test_later_work_waits_until_every_request_in_hand_is_acknowledged() -> None:
    gate = AcknowledgementsFirst(quiet=0)
    first, second = Held(gate), Held(gate)
    log: list[str] = []
    work = later_work(gate, log, "edit")
    await settle()
    assert gate.unacknowledged == 2 and log == []
    first.release.set()
    await settle()
    assert log == []  # the second one still waits for its acknowledgement
    second.release.set()
    await work
    assert log == ["edit"] and gate.unacknowledged == 0


async def test_later_work_waits_for_the_quiet_after_the_last_arrival() -> None:
    gate = AcknowledgementsFirst(quiet=0.05)
    loop = asyncio.get_running_loop()
    gate.arrived()  # read from the gateway, its handler not started yet
    arrived_at = loop.time()
    log: list[str] = []
    await later_work(gate, log, "edit")
    assert log == ["edit"]
    assert loop.time() - arrived_at >= 0.05


async def test_later_work_that_has_waited_max_wait_goes_even_while_requests_keep_coming() -> None:
    gate = AcknowledgementsFirst(quiet=0, max_wait=0.05)
    flood = Held(gate)
    log: list[str] = []
    await asyncio.wait_for(later_work(gate, log, "edit"), 1)
    assert log == ["edit"] and gate.unacknowledged == 1
    flood.release.set()
    await flood.task


async def test_later_work_runs_a_few_at_a_time_in_the_order_it_asked() -> None:
    gate = AcknowledgementsFirst(later=2, quiet=0)
    held = Held(gate)
    hold = asyncio.Event()
    log: list[str] = []
    tasks = [later_work(gate, log, f"edit {n}", hold) for n in range(5)]
    await settle()
    held.release.set()
    await settle()
    assert log == ["edit 0", "edit 1"]  # the rest wait for one of these to finish
    hold.set()
    await asyncio.gather(*tasks)
    assert log == [f"edit {n}" for n in range(5)]


async def test_requests_are_acknowledged_a_few_at_a_time() -> None:
    gate = AcknowledgementsFirst(acknowledging=2, quiet=0)
    requests = [Held(gate) for _ in range(3)]
    await settle()
    assert [r.inside.is_set() for r in requests] == [True, True, False]
    assert gate.unacknowledged == 3  # the third counts while it waits for its turn
    requests[0].release.set()
    await settle()
    assert requests[2].inside.is_set()
    for request in requests:
        request.release.set()
    await asyncio.gather(*(r.task for r in requests))
    assert gate.unacknowledged == 0


async def test_cancelled_later_work_neither_blocks_the_queue_nor_keeps_its_turn() -> None:
    gate = AcknowledgementsFirst(later=1, quiet=0)
    held = Held(gate)
    hold = asyncio.Event()
    log: list[str] = []
    waiting = later_work(gate, log, "cancelled while waiting")
    running = later_work(gate, log, "cancelled while running", hold)
    last = later_work(gate, log, "last")
    await settle()
    waiting.cancel()
    held.release.set()
    await settle()
    assert log == ["cancelled while running"]
    running.cancel()
    await last
    assert log == ["cancelled while running", "last"]
    for task in (waiting, running):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_lone_request_does_not_wait_for_the_quiet_after_its_own_arrival() -> None:
    gate = AcknowledgementsFirst(quiet=10)
    gate.arrived()  # this request, read from the gateway
    async with gate.acknowledging():
        pass
    log: list[str] = []
    await asyncio.wait_for(later_work(gate, log, "its job"), 1)
    assert log == ["its job"]
    gate.arrived()  # the next request: read, its handler not started yet
    waiting = later_work(gate, log, "waits")
    await settle()
    assert log == ["its job"]
    waiting.cancel()


async def test_later_work_given_its_turn_first_runs_first() -> None:
    gate = AcknowledgementsFirst(quiet=0)
    log: list[str] = []
    async with gate.acknowledging():
        first = later_work(gate, log, "bob's job")
        await settle()
        assert log == []
    # Leaving gave bob's job its turn, but it has not run yet; carol's, asked for now, must not go ahead of it.
    async with gate.later():
        log.append("carol's job")
    await first
    assert log == ["bob's job", "carol's job"]


async def test_quiet_means_nothing_waiting_nothing_running_and_nothing_new_for_a_while() -> None:
    gate = AcknowledgementsFirst(quiet=0)
    assert gate.quiet_for(1.0)
    gate.arrived()
    assert not gate.quiet_for(1.0) and gate.quiet_for(0)
    held = Held(gate)
    await settle()
    assert not gate.quiet_for(0)
    held.release.set()
    await held.task
    hold = asyncio.Event()
    work = later_work(gate, [], "edit", hold)
    await settle()
    assert not gate.quiet_for(0)
    hold.set()
    await work
    assert gate.quiet_for(0)
