"""Everything a request must pass before the bot answers it, from one read of the store.

The server's policy, the member's ban, limit (personal, highest role, server or default, plus grants), usage
and last request come back from `Store.member_record` together; the decision is then made in memory, so the
interaction can be acknowledged at once and a refusal stays private and free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.jobs import JobService
from core.params import Params
from core.policy import Admission, GuildPolicy, Requester, decide
from core.quota import QuotaService, QuotaStatus, exhausted
from storage.base import Store


@dataclass(frozen=True)
class Admitted:
    """A request that may go ahead, with what was learnt deciding it (carried on the job)."""

    admission: Admission
    quota: QuotaStatus
    policy: GuildPolicy


class AdmissionGate:
    def __init__(self, store: Store, quota: QuotaService, jobs: JobService) -> None:
        self._store = store
        self._quota = quota
        self._jobs = jobs

    async def admit(self, requester: Requester, params: Params, *, now: datetime) -> Admitted:
        """Raises PolicyRefusal, QuotaExhausted or another UserFacingError (restarting, queue full, too many jobs)
        when the request cannot go ahead."""
        record = await self._store.member_record(
            guild_id=requester.guild_id, user_id=requester.user_id, window=self._quota.window().key
        )
        policy = GuildPolicy.from_settings(record.guild_settings)
        last = datetime.fromisoformat(record.last_request_at) if record.last_request_at else None
        admission = decide(policy, requester, params, banned=record.banned, last_request_at=last, now=now)
        quota = self._quota.status_from(record, policy, role_ids=requester.role_ids)
        if quota.remaining == 0:
            raise exhausted(quota.limit, quota.resets_at)
        self._jobs.check_admission(record)
        return Admitted(admission=admission, quota=quota, policy=policy)
