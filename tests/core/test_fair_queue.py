"""The fair queue's order: a newcomer waits for at most one job of each user already waiting."""

from __future__ import annotations

from core.fair_queue import FairQueue


async def queue_of(*jobs: tuple[int, str]) -> FairQueue:
    queue = FairQueue()
    for user, job_id in jobs:
        await queue.put(user, job_id)
    return queue


async def test_one_user_is_served_in_arrival_order() -> None:
    queue = await queue_of((1, "a1"), (1, "a2"), (1, "a3"))
    assert [await queue.get() for _ in range(3)] == ["a1", "a2", "a3"]


async def test_users_who_queue_together_take_turns() -> None:
    queue = await queue_of((1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (2, "b2"), (3, "c1"))
    assert queue.order() == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [await queue.get() for _ in range(6)] == ["a1", "b1", "c1", "a2", "b2", "a3"]


async def test_a_newcomer_is_next_after_the_job_already_taken() -> None:
    queue = await queue_of(*((1, f"a{n}") for n in range(1, 6)))
    assert await queue.get() == "a1"  # running
    await queue.put(2, "b1")
    assert queue.order() == ["b1", "a2", "a3", "a4", "a5"]


async def test_a_newcomer_waits_one_job_of_each_user_already_waiting() -> None:
    queue = await queue_of((1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (2, "b2"))
    assert await queue.get() == "a1"
    assert await queue.get() == "b1"
    await queue.put(3, "c1")
    # Alice and Bob have had their turn in this round: Carol joins it, ahead of their second jobs.
    assert queue.order() == ["c1", "a2", "b2", "a3"]


async def test_a_heavy_user_adding_jobs_later_does_not_jump_ahead() -> None:
    queue = await queue_of((1, "a1"), (2, "b1"), (2, "b2"))
    assert await queue.get() == "a1"
    await queue.put(1, "a2")  # Alice asks again while her first job runs: next round, after Bob's b2
    assert queue.order() == ["b1", "b2", "a2"]


async def test_a_user_returning_after_their_jobs_ran_starts_at_the_current_round() -> None:
    queue = await queue_of((1, "a1"), (2, "b1"), (2, "b2"), (2, "b3"))
    for expected in ("a1", "b1", "b2"):
        assert await queue.get() == expected
    await queue.put(1, "a2")
    await queue.put(3, "c1")
    # Bob has had this round's job (b2); Alice and Carol join the round, before his b3.
    assert queue.order() == ["a2", "c1", "b3"]


async def test_removing_a_job_keeps_the_rest_in_order_and_frees_the_turn() -> None:
    queue = await queue_of((1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"))
    assert queue.remove("a3")
    assert not queue.remove("a3")
    await queue.put(1, "a4")  # takes the freed turn, not one further back
    assert queue.order() == ["a1", "b1", "a2", "a4"]
    assert len(queue) == 4


async def test_drain_empties_in_service_order() -> None:
    queue = await queue_of((1, "a1"), (1, "a2"), (2, "b1"))
    assert queue.drain() == ["a1", "b1", "a2"]
    assert len(queue) == 0
    assert queue.order() == []
