"""Acknowledgements first: work that can wait gives way to requests still waiting for their first answer.

Discord drops an interaction that is not acknowledged within 3 s, while a status edit or a new job's bookkeeping
loses nothing by coming a moment later. asyncio runs whatever is ready in arrival order, and wakes every waiter of
an event at once, so in a burst the follow-up work of the first requests would take turns with the
acknowledgements of the later ones, and hundreds of coroutines woken together would hold the event loop for
hundreds of milliseconds.

So both kinds of work take turns here: at most `acknowledging` requests lead up to their acknowledgement at once,
and at most `later` pieces of later work run at once, only while no request waits for its acknowledgement and
none has arrived in the last `quiet` seconds (a burst's requests still on their way in), or once the work has
waited `max_wait`, so that a flood that never lets up cannot starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

# Enough to keep the requests' round trips (a store read, the deferral) overlapping; few enough that those woken
# together cannot hold the event loop for long (a step of each is well under a millisecond).
ACKNOWLEDGING_AT_ONCE = 64
LATER_AT_ONCE = 16
QUIET = 0.02
MAX_WAIT = 2.0


@dataclass
class _Waiter:
    turn: asyncio.Future[None]
    overdue_at: float


class AcknowledgementsFirst:
    def __init__(
        self,
        *,
        acknowledging: int = ACKNOWLEDGING_AT_ONCE,
        later: int = LATER_AT_ONCE,
        quiet: float = QUIET,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.later_at_once = later
        self.quiet = quiet
        self.max_wait = max_wait
        self._last_arrival = -math.inf  # for the quiet later work waits for (a lone request ends it early)
        self._last_seen = -math.inf
        self._arrivals = 0
        self._acknowledging = asyncio.Semaphore(acknowledging)
        self._unacknowledged = 0  # requests waiting for their turn or being acknowledged
        self._later_running = 0
        self._later_waiting: deque[_Waiter] = deque()
        self._overdue_timer: asyncio.TimerHandle | None = None

    @property
    def unacknowledged(self) -> int:
        return self._unacknowledged

    def arrived(self) -> None:
        """A request came in (call it as soon as it is read, before its handler runs)."""
        self._last_arrival = self._last_seen = asyncio.get_running_loop().time()
        self._arrivals += 1

    def quiet_for(self, seconds: float) -> bool:
        """Nothing waits for its acknowledgement or its turn, nothing runs in one, nothing came in for `seconds`."""
        idle = not (self._unacknowledged or self._later_running or self._later_waiting)
        return idle and asyncio.get_running_loop().time() - self._last_seen >= seconds

    def _busy_until(self) -> float:
        """When later work may start: not while requests wait for their acknowledgement (the end of the last one
        lets it in), else once the quiet after the last arrival is over."""
        return math.inf if self._unacknowledged else self._last_arrival + self.quiet

    @contextlib.asynccontextmanager
    async def acknowledging(self) -> AsyncIterator[None]:
        """Around the code that leads up to a request's acknowledgement, and the acknowledgement itself."""
        self._unacknowledged += 1
        arrivals = self._arrivals
        try:
            async with self._acknowledging:
                yield
        finally:
            self._unacknowledged -= 1
            if self._arrivals == arrivals:  # nothing came in since this one started: no need to wait for quiet
                self._last_arrival = -math.inf
            self._let_later_work_in()

    @contextlib.asynccontextmanager
    async def later(self) -> AsyncIterator[None]:
        """Around work that can wait: it starts when no request waits for its acknowledgement."""
        await self._turn()
        try:
            yield
        finally:
            self._later_running -= 1
            self._let_later_work_in()

    async def _turn(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), loop.time() + self.max_wait)
        self._later_waiting.append(waiter)
        self._let_later_work_in()
        try:
            if waiter.turn.done():
                # Given its turn at once: work given one just before has not run yet, and going on without a turn of
                # the loop would go ahead of it (create a job ahead of one that was asked for first, say).
                await asyncio.sleep(0)
            await waiter.turn
        except asyncio.CancelledError:
            if waiter.turn.done() and not waiter.turn.cancelled():  # given a turn, then cancelled: pass it on
                self._later_running -= 1
                self._let_later_work_in()
            else:
                with contextlib.suppress(ValueError):
                    self._later_waiting.remove(waiter)
            raise

    def _let_later_work_in(self) -> None:
        """Gives turns to waiting later work, in order, as far as the rules allow; else waits for the first one's
        `max_wait` to run out."""
        loop = asyncio.get_running_loop()
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
            self._overdue_timer = None
        while self._later_waiting and self._later_running < self.later_at_once:
            first = self._later_waiting[0]
            if first.turn.done():  # cancelled while waiting
                self._later_waiting.popleft()
                continue
            now, busy_until = loop.time(), self._busy_until()
            if now < busy_until and now < first.overdue_at:
                self._overdue_timer = loop.call_at(min(busy_until, first.overdue_at), self._let_later_work_in)
                return
            self._later_waiting.popleft()
            self._later_running += 1
            first.turn.set_result(None)
