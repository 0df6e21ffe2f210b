"""The queue in the store, on SQLite and PostgreSQL: fair order, claims within a global limit, leases.

A newcomer waits for at most one job of each user already waiting, whatever was claimed before.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from storage.base import Created, Store
from tests.storage.helpers import DAY, job

LEASE = "2999-01-01T00:00:00.000000+00:00"
PAST = "2000-01-01T00:00:00.000000+00:00"
NOW = "2026-11-21T12:00:00.000000+00:00"


async def put(store: Store, *jobs: tuple[int, str], state: str = "queued") -> None:
    for user, job_id in jobs:
        created = await store.create_job(replace(job(job_id, user=user), state=state), window=DAY, limit=100)
        assert created is Created.CREATED


async def claim(store: Store, owner: str = "p1", *, max_running: int = 100, lease: str = LEASE) -> str | None:
    row = await store.claim_job(owner=owner, lease_until=lease, max_running=max_running)
    return None if row is None else row.id


async def test_one_user_is_served_in_arrival_order(store: Store) -> None:
    await put(store, (1, "a1"), (1, "a2"), (1, "a3"))
    assert [await claim(store) for _ in range(4)] == ["a1", "a2", "a3", None]


async def test_users_who_queue_together_take_turns(store: Store) -> None:
    await put(store, (1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (2, "b2"), (3, "c1"))
    assert await store.queued_job_ids() == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [await claim(store) for _ in range(6)] == ["a1", "b1", "c1", "a2", "b2", "a3"]


async def test_a_newcomer_is_next_after_the_job_already_running(store: Store) -> None:
    await put(store, *((1, f"a{n}") for n in range(1, 6)))
    assert await claim(store) == "a1"
    await put(store, (2, "b1"))
    assert await store.queued_job_ids() == ["b1", "a2", "a3", "a4", "a5"]


async def test_a_newcomer_joins_the_current_round(store: Store) -> None:
    await put(store, (1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (2, "b2"))
    assert [await claim(store), await claim(store)] == ["a1", "b1"]
    await put(store, (3, "c1"))
    # Alice and Bob have had their turn in this round: Carol joins it, ahead of their second jobs.
    assert await store.queued_job_ids() == ["c1", "a2", "b2", "a3"]


async def test_a_user_asking_again_while_their_job_runs_goes_to_the_next_round(store: Store) -> None:
    await put(store, (1, "a1"), (2, "b1"), (2, "b2"))
    assert await claim(store) == "a1"
    await put(store, (1, "a2"))
    assert await store.queued_job_ids() == ["b1", "b2", "a2"]


async def test_a_user_returning_after_their_jobs_ran_starts_at_the_current_round(store: Store) -> None:
    await put(store, (1, "a1"), (2, "b1"), (2, "b2"), (2, "b3"))
    assert [await claim(store) for _ in range(3)] == ["a1", "b1", "b2"]
    await store.finish_job("a1", "done")
    await put(store, (1, "a2"), (3, "c1"))
    # Bob has had this round's job (b2); Alice and Carol join the round, before his b3.
    assert await store.queued_job_ids() == ["a2", "c1", "b3"]


async def test_claims_stop_at_the_limit_of_running_jobs_and_resume_when_one_leaves(store: Store) -> None:
    await put(store, (1, "a1"), (2, "b1"), (3, "c1"))
    assert [await claim(store, max_running=2) for _ in range(3)] == ["a1", "b1", None]
    assert await store.update_job("a1", expect=["running"], state="delivering")
    assert await claim(store, max_running=2) == "c1"


async def test_concurrent_claims_never_pass_the_limit_nor_take_a_job_twice(store: Store, backend) -> None:
    await put(store, *((user, f"j{user}") for user in range(20)))
    async with _another_store(backend) as other:
        claims = [claim(store, "p1", max_running=5) for _ in range(10)]
        claims += [claim(other, "p2", max_running=5) for _ in range(10)]
        claimed = [job_id for job_id in await asyncio.gather(*claims) if job_id is not None]
    assert len(claimed) == 5 and len(set(claimed)) == 5
    assert (await store.job_counts())["running"] == 5


async def test_an_approved_job_gets_a_turn_and_a_rerun_keeps_its_own(store: Store) -> None:
    await put(store, (2, "b1"), (2, "b2"))
    await put(store, (1, "pending-a"), state="pending")
    assert await store.queued_job_ids() == ["b1", "b2"]
    assert await store.queue_job("pending-a", expect=["pending"])
    assert not await store.queue_job("pending-a", expect=["pending"])
    assert await store.queued_job_ids() == ["b1", "pending-a", "b2"]
    assert await claim(store) == "b1"
    assert await store.queue_job("b1", expect=["running"])  # its process died: once more, first in line
    row = await store.get_job("b1")
    assert row is not None and (row.state, row.attempts, row.lease_owner) == ("queued", 1, None)
    assert await store.queued_job_ids() == ["b1", "pending-a", "b2"]


async def test_a_job_is_created_only_within_the_queue_and_member_limits(store: Store) -> None:
    await put(store, (1, "a1"), (2, "b1"))
    too_many = await store.create_job(job("a2", user=1), window=DAY, limit=100, max_per_user=1)
    assert too_many is Created.TOO_MANY_JOBS and not too_many
    full = await store.create_job(job("c1", user=3), window=DAY, limit=100, max_queue=2)
    assert full is Created.QUEUE_FULL
    pending = replace(job("c1", user=3), state="pending")  # waits for a moderator, not in the queue
    assert await store.create_job(pending, window=DAY, limit=100, max_queue=2) is Created.CREATED
    assert await store.used_quota(guild_id=1, user_id=3, window=DAY) == 1
    record = await store.member_record(guild_id=1, user_id=1, window=DAY)
    assert (record.active_jobs, record.queued_jobs) == (1, 2)


async def test_leases_are_renewed_by_their_holder_and_taken_over_once_expired(store: Store) -> None:
    await put(store, (1, "a1"), (2, "b1"))
    assert await claim(store, "p1", lease=PAST) == "a1"
    assert await claim(store, "p2", lease=LEASE) == "b1"
    assert [row.id for row in await store.expired_leases(NOW)] == ["a1"]
    assert await store.renew_leases(owner="p1", lease_until=LEASE) == ["a1"]
    assert await store.expired_leases(NOW) == []
    assert not await store.take_over("a1", state="running", owner="p2", lease_until=LEASE, now=NOW)
    await store.renew_leases(owner="p1", lease_until=PAST)  # p1 stops renewing
    assert not await store.take_over("a1", state="queued", owner="p2", lease_until=LEASE, now=NOW)  # moved on
    takers = (store.take_over("a1", state="running", owner=f"p{n}", lease_until=LEASE, now=NOW) for n in (2, 3))
    results = await asyncio.gather(*takers)
    assert sorted(results) == [False, True]
    row = await store.get_job("a1")
    assert row is not None and row.lease_owner in ("p2", "p3")


async def test_a_queued_job_is_leased_to_the_process_telling_its_place_until_claimed(store: Store) -> None:
    # Queued from p1 (which tells the requester their place); a job claimed by p2 is p2's whatever queued it.
    for job_id, lease in (("a1", PAST), ("a2", LEASE)):
        queued = replace(job(job_id, user=1), lease_owner="p1", lease_expires_at=lease)
        assert await store.create_job(queued, window=DAY, limit=100) is Created.CREATED
    await put(store, (2, "pending-b"), state="pending")
    assert await store.queue_job("pending-b", expect=["pending"], owner="p3", lease_until=PAST)  # approved in p3
    assert [row.id for row in await store.expired_leases(NOW)] == ["a1", "pending-b"]
    assert sorted(await store.renew_leases(owner="p1", lease_until=LEASE)) == ["a1", "a2"]
    assert [row.id for row in await store.expired_leases(NOW)] == ["pending-b"]
    assert await store.take_over("pending-b", state="queued", owner="p2", lease_until=LEASE, now=NOW)
    row = await store.get_job("pending-b")
    assert row is not None and (row.state, row.lease_owner) == ("queued", "p2")
    assert await claim(store, "p2") == "a1"
    assert await store.renew_leases(owner="p1", lease_until=PAST, states=["running"]) == []
    assert await store.renew_leases(owner="p1", lease_until=PAST) == ["a2"]  # a1 is not p1's any more
    row = await store.get_job("a1")
    assert row is not None and (row.state, row.lease_owner) == ("running", "p2")


async def test_a_process_that_lost_its_job_cannot_move_or_settle_it(store: Store) -> None:
    await put(store, (1, "a1"))
    assert await claim(store, "p1", lease=PAST) == "a1"
    assert await store.take_over("a1", state="running", owner="p2", lease_until=LEASE, now=NOW)
    assert not await store.update_job("a1", expect=["running"], held_by="p1", state="delivering")
    assert not await store.finish_job("a1", "failed", error="error.restarting", held_by="p1")
    assert await store.finish_job("a1", "done", held_by="p2")
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_published_topics_reach_the_listeners_of_every_process(store: Store, backend) -> None:
    heard: list[tuple[str, str]] = []
    got = asyncio.Event()

    def listener(name: str):
        def heard_it(topic: str) -> None:
            heard.append((name, topic))
            got.set()

        return heard_it

    store.listen(listener("here"))
    async with _another_store(backend) as other:
        other.listen(listener("there"))
        await store.publish("queue")
        async with asyncio.timeout(5):
            while len(heard) < (2 if store.multi_process else 1):
                got.clear()
                await got.wait()
    # SQLite serves one process: its store tells its own listeners only.
    assert sorted(heard) == ([("here", "queue"), ("there", "queue")] if store.multi_process else [("here", "queue")])


def _another_store(backend):
    """A second store on the same database: another process's, as far as the database can tell."""
    from storage import open_store

    return open_store(backend.url)
