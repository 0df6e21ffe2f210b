"""A round-robin queue between users: one user's ten jobs do not starve everyone else."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque


class FairQueue:
    """Job ids queued per user, served one user at a time in turn (oldest turn first)."""

    def __init__(self) -> None:
        self._by_user: OrderedDict[int, deque[str]] = OrderedDict()
        self._user_of: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._user_of)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._user_of

    def count_for(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    async def put(self, user_id: int, job_id: str) -> None:
        self._by_user.setdefault(user_id, deque()).append(job_id)
        self._user_of[job_id] = user_id
        async with self._changed:
            self._changed.notify()

    def remove(self, job_id: str) -> bool:
        user_id = self._user_of.pop(job_id, None)
        if user_id is None:
            return False
        jobs = self._by_user[user_id]
        jobs.remove(job_id)
        if not jobs:
            del self._by_user[user_id]
        return True

    async def get(self) -> str:
        """The next job id in turn, waiting for one if the queue is empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._user_of))
        return self._take()

    def _take(self) -> str:
        user_id, jobs = next(iter(self._by_user.items()))
        job_id = jobs.popleft()
        del self._user_of[job_id]
        if jobs:
            self._by_user.move_to_end(user_id)
        else:
            del self._by_user[user_id]
        return job_id

    def order(self) -> list[str]:
        """Every queued job id in the order it will be served."""
        turns = [(user_id, list(jobs)) for user_id, jobs in self._by_user.items()]
        served: list[str] = []
        depth = 0
        while len(served) < len(self._user_of):
            served.extend(jobs[depth] for _, jobs in turns if depth < len(jobs))
            depth += 1
        return served

    def drain(self) -> list[str]:
        """Empties the queue, returning what was in it in service order."""
        ordered = self.order()
        self._by_user.clear()
        self._user_of.clear()
        return ordered
