"""The store's guarantees, against a real SQLite file and a real PostgreSQL database (each test runs on both)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest

from storage import Store, open_store
from storage.base import StoreInspection
from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from tests.storage.conftest import Backend, postgres_backend, sqlite_backend
from tests.storage.helpers import DAY, GUILD, OTHER_USER, USER, job, reserve

ROOT = Path(__file__).resolve().parents[2]


def test_both_stores_have_every_method_of_the_protocols_in_the_same_order() -> None:
    wanted = {name for protocol in (Store, StoreInspection) for name in vars(protocol) if not name.startswith("_")}
    orders = [[name for name in vars(cls) if not name.startswith("_")] for cls in (SQLiteStore, PostgresStore)]
    for order in orders:
        assert wanted <= set(order), wanted - set(order)
    assert orders[0] == orders[1]


# -- migrations ------------------------------------------------------------------------------------


async def test_a_fresh_database_reaches_the_latest_schema(backend: Backend) -> None:
    async with open_store(backend.url):
        pass
    assert await backend.schema_version() == len(backend.migrations)


async def test_reopening_keeps_data_and_does_not_migrate_again(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(backend.url) as first:
        assert await reserve(first, "job-1")
        await first.set_meta("k", "v")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="storage"):
        async with open_store(backend.url) as second:
            assert await second.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 1
            assert await second.get_meta("k") == "v"
    assert not [record for record in caplog.records if "migrating" in record.getMessage()]
    assert await backend.schema_version() == len(backend.migrations)


async def test_refuses_a_newer_schema(backend: Backend) -> None:
    await backend.set_schema_version(len(backend.migrations) + 1)
    with pytest.raises(RuntimeError, match="newer"):
        async with open_store(backend.url):
            pass


async def test_processes_starting_together_migrate_once(backend: Backend) -> None:
    async def open_and_count() -> int:
        async with open_store(backend.url) as opened:
            return len(await opened.active_jobs())

    assert await asyncio.gather(open_and_count(), open_and_count(), open_and_count()) == [0, 0, 0]
    assert await backend.schema_version() == len(backend.migrations)


async def test_both_backends_reach_the_same_tables_and_columns(tmp_path: Path, postgres_url: str) -> None:
    sqlite, postgresql = sqlite_backend(tmp_path), postgres_backend(postgres_url)
    for backend in (sqlite, postgresql):
        async with open_store(backend.url):
            pass
    expected = await sqlite.columns()
    found = await postgresql.columns()
    found["jobs"].remove("seq")  # PostgreSQL's stand-in for SQLite's rowid
    assert {table: sorted(names) for table, names in found.items()} == {
        table: sorted(names) for table, names in expected.items()
    }


# -- jobs and their quota --------------------------------------------------------------------------


async def test_reserve_up_to_the_limit_then_refuse(store) -> None:
    assert [await reserve(store, f"job-{n}", limit=3) for n in range(4)] == [True, True, True, False]
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 3


async def test_limits_are_per_user_and_per_window(store) -> None:
    assert await reserve(store, "a", limit=1)
    assert not await reserve(store, "b", limit=1)
    assert await reserve(store, "c", user=OTHER_USER, limit=1)
    assert await reserve(store, "d", window="2026-11-22", limit=1)


async def test_refund_gives_the_generation_back_once(store) -> None:
    assert await reserve(store, "job-1", limit=1)
    assert await store.finish_job("job-1", "failed")
    assert not await store.finish_job("job-1", "failed")
    assert not await store.finish_job("job-1", "done")
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 0
    assert await reserve(store, "job-2", limit=1)


async def test_commit_is_final_and_counts(store) -> None:
    assert await reserve(store, "job-1")
    assert await store.finish_job("job-1", "done")
    assert not await store.finish_job("job-1", "done")
    assert not await store.finish_job("job-1", "failed")
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 1
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_a_job_id_is_charged_once(backend: Backend, store) -> None:
    assert await reserve(store, "job-1")
    with pytest.raises(backend.duplicate_error):
        await reserve(store, "job-1")
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 1
    assert len(await store.active_jobs()) == 1


async def test_exhausted_quota_stores_no_job(store) -> None:
    assert await reserve(store, "job-1", limit=1)
    assert not await reserve(store, "job-2", limit=1)
    assert await store.get_job("job-2") is None


async def test_job_round_trip_and_token_hidden_from_repr(store) -> None:
    assert await store.create_job(job("job-1", token="secret-interaction-token"), window=DAY, limit=5)
    stored = await store.get_job("job-1")
    assert stored is not None
    assert stored.params == {"prompt": "a cat", "seed": 7}
    assert stored.state == "queued" and stored.interaction_token == "secret-interaction-token"
    assert stored.created_at and stored.updated_at
    assert "secret-interaction-token" not in repr(stored)


async def test_snowflakes_keep_all_their_digits(store) -> None:
    big = 1_234_567_890_123_456_789
    row = job("job-1")
    row = type(row)(**{**row.__dict__, "guild_id": big, "channel_id": big + 1, "user_id": big + 2})
    assert await store.create_job(row, window=DAY, limit=1)
    assert await store.update_job("job-1", status_message_id=big + 3, application_id=big + 4)
    stored = await store.get_job("job-1")
    assert stored is not None
    assert (stored.guild_id, stored.channel_id, stored.user_id) == (big, big + 1, big + 2)
    assert (stored.status_message_id, stored.application_id) == (big + 3, big + 4)
    assert await store.used_quota(guild_id=big, user_id=big + 2, window=DAY) == 1


async def test_update_job_only_from_expected_states(store) -> None:
    await reserve(store, "job-1")
    assert await store.update_job("job-1", expect=["queued"], state="running")
    assert not await store.update_job("job-1", expect=["queued"], state="running")
    assert await store.update_job("job-1", status_message_id=99)
    stored = await store.get_job("job-1")
    assert stored is not None and (stored.state, stored.status_message_id) == ("running", 99)
    with pytest.raises(ValueError):
        await store.update_job("job-1", user_id=1)


async def test_the_quota_limit_travels_with_the_job(store) -> None:
    row = job("job-1")
    assert await store.create_job(type(row)(**{**row.__dict__, "quota_limit": 7}), window=DAY, limit=7)
    stored = await store.get_job("job-1")
    assert stored is not None and stored.quota_limit == 7
    assert await store.update_job("job-1", quota_limit=9)
    stored = await store.get_job("job-1")
    assert stored is not None and stored.quota_limit == 9


async def test_update_job_params(store) -> None:
    await reserve(store, "job-1")
    assert await store.update_job("job-1", params={"prompt": "a dog", "seed": 8})
    stored = await store.get_job("job-1")
    assert stored is not None and stored.params == {"prompt": "a dog", "seed": 8}


async def test_finishing_settles_once_and_forgets_the_token(store) -> None:
    await store.create_job(job("job-1", token="tok"), window=DAY, limit=5)
    assert await store.finish_job("job-1", "done", result_message_id=42)
    assert not await store.finish_job("job-1", "failed", error="error.unexpected")
    stored = await store.get_job("job-1")
    assert stored is not None
    assert (stored.state, stored.result_message_id, stored.interaction_token) == ("done", 42, None)
    assert stored.finished_at
    assert await store.job_counts() == {
        "pending": 0,
        "queued": 0,
        "running": 0,
        "delivering": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
    }
    with pytest.raises(ValueError):
        await store.finish_job("job-1", "running")


async def test_active_and_recent_jobs(store) -> None:
    for n in range(4):
        await reserve(store, f"job-{n}")
    await reserve(store, "other", user=OTHER_USER)
    await store.finish_job("job-1", "cancelled")
    assert [row.id for row in await store.active_jobs()] == ["job-0", "job-2", "job-3", "other"]
    recent = await store.recent_jobs(guild_id=GUILD, user_id=USER, limit=3)
    assert [row.id for row in recent] == ["job-3", "job-2", "job-1"]


async def test_expired_pending_jobs(store) -> None:
    for name, expires in (("early", "2026-11-21T10:00:00.000+00:00"), ("late", "2026-11-21T12:00:00.000+00:00")):
        await reserve(store, name)
        assert await store.update_job(name, state="pending", approval_expires_at=expires)
    await reserve(store, "queued")
    expired = await store.expired_pending_jobs("2026-11-21T11:00:00.000+00:00")
    assert [row.id for row in expired] == ["early"]


async def test_settling_an_unknown_job_does_nothing(store) -> None:
    assert not await store.finish_job("nope", "done")
    assert not await store.finish_job("nope", "cancelled")


async def test_fifty_concurrent_reservations_with_five_left(store) -> None:
    for n in range(15):
        assert await reserve(store, f"old-{n}", limit=20)
    results = await asyncio.gather(*(reserve(store, f"new-{n}", limit=20) for n in range(50)))
    assert results.count(True) == 5
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 20


async def test_two_stores_on_one_database_never_overspend(backend: Backend) -> None:
    """Two processes sharing one database, as two stores in one: the count stays exact."""
    async with open_store(backend.url) as first, open_store(backend.url) as second:
        results = await asyncio.gather(*(reserve(first if n % 2 else second, f"job-{n}", limit=7) for n in range(40)))
        assert results.count(True) == 7
        assert await first.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 7


async def test_two_processes_with_fifty_requests_each_and_five_left(backend: Backend, store) -> None:
    for n in range(15):
        assert await reserve(store, f"old-{n}", limit=20)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.reserve_worker",
            name,
            "50",
            "20",
            cwd=ROOT,
            env=os.environ | {"STORE_URL": backend.url},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for name in ("first", "second")
    ]
    try:
        for worker in workers:  # both connected before either asks
            assert worker.stdout is not None
            assert await asyncio.wait_for(worker.stdout.readline(), 60) == b"ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        granted = [int(await asyncio.wait_for(worker.stdout.readline(), 60)) for worker in workers if worker.stdout]
        assert [await asyncio.wait_for(worker.wait(), 30) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert sum(granted) == 5
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 20
    assert len(await store.active_jobs()) == 20


async def test_two_stores_finishing_one_job_settle_it_once(backend: Backend) -> None:
    async with open_store(backend.url) as first, open_store(backend.url) as second:
        jobs = [f"job-{n}" for n in range(10)]
        for name in jobs:
            assert await reserve(first, name, limit=10)
        outcomes = await asyncio.gather(
            *(store.finish_job(name, state) for name in jobs for store, state in ((first, "done"), (second, "failed")))
        )
        assert outcomes.count(True) == 10
        totals = await second.ledger_totals()
        assert totals["reserved"] == 0 and totals["committed"] + totals["refunded"] == 10


async def test_a_write_cancelled_while_it_begins_leaves_the_store_usable(store) -> None:
    assert await reserve(store, "job-1")
    task = asyncio.create_task(store.update_job("job-1", expect=["queued"], state="running"))
    await asyncio.sleep(0)  # the task is waiting for its transaction or connection
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.finish_job("job-1", "failed", error="error.restarting")
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_finish_only_from_the_expected_states(store) -> None:
    assert await reserve(store, "job-1")
    assert not await store.finish_job("job-1", "failed", expect=["pending"])
    assert await store.finish_job("job-1", "failed", expect=["queued"])
    with pytest.raises(ValueError):
        await store.finish_job("job-1", "failed", expect=["done"])


# -- server policy ---------------------------------------------------------------------------------


async def test_guild_settings_round_trip(store) -> None:
    assert await store.get_guild_settings(GUILD) is None
    await store.save_guild_settings(GUILD, {"language": "zh-CN", "channels": [1, 2]})
    await store.save_guild_settings(GUILD, {"language": "en", "channels": []})
    assert await store.get_guild_settings(GUILD) == {"language": "en", "channels": []}


async def test_user_limits_and_grants(store) -> None:
    assert await store.get_user_limit(GUILD, USER) is None
    await store.set_user_limit(GUILD, USER, 3)
    await store.set_user_limit(GUILD, USER, 4)
    assert await store.get_user_limit(GUILD, USER) == 4
    await store.set_user_limit(GUILD, USER, None)
    assert await store.get_user_limit(GUILD, USER) is None
    assert await store.granted_quota(guild_id=GUILD, user_id=USER, window=DAY) == 0
    for amount in (2, 3):
        await store.add_quota_grant(guild_id=GUILD, user_id=USER, window=DAY, amount=amount, granted_by=9)
    await store.add_quota_grant(guild_id=GUILD, user_id=USER, window="2026-11-22", amount=7, granted_by=9)
    assert await store.granted_quota(guild_id=GUILD, user_id=USER, window=DAY) == 5


async def test_bans(store) -> None:
    assert await store.get_ban(GUILD, USER) is None
    await store.ban(guild_id=GUILD, user_id=USER, reason="spam", banned_by=9)
    await store.ban(guild_id=GUILD, user_id=USER, reason="more spam", banned_by=8)
    ban = await store.get_ban(GUILD, USER)
    assert ban is not None and (ban.guild_id, ban.user_id, ban.reason, ban.banned_by) == (GUILD, USER, "more spam", 8)
    assert await store.unban(guild_id=GUILD, user_id=USER)
    assert not await store.unban(guild_id=GUILD, user_id=USER)
    assert await store.get_ban(GUILD, USER) is None


async def test_forgetting_keeps_todays_usage_and_active_jobs(store) -> None:
    assert await reserve(store, "yesterday", window="2026-11-20")
    assert await reserve(store, "today")
    assert await reserve(store, "running")
    assert await reserve(store, "elsewhere", user=OTHER_USER)
    for name in ("yesterday", "today"):
        await store.finish_job(name, "done")
    assert await store.forget_user(USER, guild_id=GUILD, keep_window=DAY) == 2
    assert await store.get_job("running") is not None and await store.get_job("today") is None
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 2
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window="2026-11-20") == 0
    assert await store.get_job("elsewhere") is not None


async def test_last_request_survives_forgetting(store) -> None:
    assert await store.last_request_at(guild_id=GUILD, user_id=USER) is None
    assert await reserve(store, "job-1", window="2026-11-21")
    await store.finish_job("job-1", "done")
    before = await store.last_request_at(guild_id=GUILD, user_id=USER)
    assert before is not None
    assert await store.forget_user(USER, guild_id=None, keep_window="2026-11-21") == 1
    assert await store.last_request_at(guild_id=GUILD, user_id=USER) == before


async def test_the_last_request_is_found_in_an_index_not_in_the_whole_history(backend: Backend, store) -> None:
    # Every admission reads it (member_record); a scan of all of a member's ledger rows would grow with their use.
    plan = await backend.query_plan(
        f"SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = {GUILD} AND user_id = {USER}"
    )
    assert "quota_ledger_last_request" in plan, plan


async def test_member_record_reads_everything_at_once(store) -> None:
    empty = await store.member_record(guild_id=GUILD, user_id=USER, window=DAY)
    assert (empty.guild_settings, empty.banned, empty.personal_limit) == (None, False, None)
    assert (empty.granted, empty.used, empty.last_request_at) == (0, 0, None)
    await store.save_guild_settings(GUILD, {"language": "en"})
    await store.ban(guild_id=GUILD, user_id=USER, reason=None, banned_by=9)
    await store.set_user_limit(GUILD, USER, 3)
    await store.add_quota_grant(guild_id=GUILD, user_id=USER, window=DAY, amount=2, granted_by=9)
    assert await reserve(store, "today")
    assert await reserve(store, "refunded")
    await store.finish_job("refunded", "failed")
    assert await reserve(store, "yesterday", window="2026-11-20")
    assert await reserve(store, "other", user=OTHER_USER)
    record = await store.member_record(guild_id=GUILD, user_id=USER, window=DAY)
    assert (record.guild_settings, record.banned, record.personal_limit) == ({"language": "en"}, True, 3)
    assert (record.granted, record.used) == (2, 1)
    assert record.last_request_at == await store.last_request_at(guild_id=GUILD, user_id=USER)


# -- metadata --------------------------------------------------------------------------------------


async def test_meta_upsert(store) -> None:
    assert await store.get_meta("missing") is None
    await store.set_meta("key", "one")
    await store.set_meta("key", "two")
    assert await store.get_meta("key") == "two"
