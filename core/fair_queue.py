"""A round-robin queue between users: one user's ten jobs do not starve everyone else.

Each job gets a turn number when it is queued: the current round for a user with nothing in the queue, else one
past that user's last turn. Jobs are served by turn, then by arrival. So a newcomer is served after at most one
job of each user already waiting, whichever order the workers took jobs in (the round only moves forward).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field


@dataclass(order=True)
class _Entry:
    turn: int
    arrival: int
    job_id: str = field(compare=False)
    user_id: int = field(compare=False)


class FairQueue:
    """Job ids queued per user, served by turn (see the module docstring)."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._entries: dict[str, _Entry] = {}  # queued, by job id; removed entries stay in the heap until popped
        self._last_turn: dict[int, int] = {}  # per user, the turn of their latest job while it matters
        self._round = 0
        self._arrivals = itertools.count()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, user_id: int, job_id: str) -> None:
        last = self._last_turn.get(user_id)
        turn = self._round if last is None else max(self._round, last + 1)
        self._last_turn[user_id] = turn
        entry = _Entry(turn, next(self._arrivals), job_id, user_id)
        self._entries[job_id] = entry
        heapq.heappush(self._heap, entry)
        async with self._changed:
            self._changed.notify()

    def remove(self, job_id: str) -> bool:
        entry = self._entries.pop(job_id, None)
        if entry is None:
            return False
        if self._last_turn.get(entry.user_id) == entry.turn:
            remaining = [other.turn for other in self._entries.values() if other.user_id == entry.user_id]
            self._last_turn[entry.user_id] = max(remaining, default=entry.turn - 1)
        return True

    async def get(self) -> str:
        """The next job id in turn, waiting for one if the queue is empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._entries))
        return self._take()

    def _take(self) -> str:
        while True:
            entry = heapq.heappop(self._heap)
            if self._entries.get(entry.job_id) is entry:
                break
        del self._entries[entry.job_id]
        if entry.turn > self._round:
            self._round = entry.turn
            # A user whose last turn is behind the round starts from the round again: forget them.
            self._last_turn = {user: turn for user, turn in self._last_turn.items() if turn >= self._round}
        return entry.job_id

    def order(self) -> list[str]:
        """Every queued job id in the order it will be served."""
        return [entry.job_id for entry in sorted(self._entries.values())]

    def drain(self) -> list[str]:
        """Empties the queue, returning what was in it in service order."""
        ordered = self.order()
        self._heap.clear()
        self._entries.clear()
        return ordered
