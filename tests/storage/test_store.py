"""The SQLite store against a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import open_store, sqlite_path
from storage.base import JobRow
from storage.sqlite import MIGRATIONS, SQLiteStore

GUILD, USER, OTHER_USER = 1, 10, 11
DAY = "2026-11-21"


@pytest.fixture
async def store(tmp_path: Path):
    async with open_store(f"sqlite:///{tmp_path}/nested/bot.sqlite3") as opened:
        yield opened


def job(job_id: str, *, user: int = USER, token: str | None = None) -> JobRow:
    return JobRow(
        id=job_id,
        guild_id=GUILD,
        channel_id=5,
        user_id=user,
        command="draw",
        params={"prompt": "a cat", "seed": 7},
        language="en",
        interaction_token=token,
    )


async def reserve(store, job_id: str, *, user: int = USER, window: str = DAY, limit: int = 5) -> bool:
    return await store.create_job(job(job_id, user=user), window=window, limit=limit)


def test_sqlite_path_relative_and_absolute() -> None:
    assert sqlite_path("sqlite:///data/bot.sqlite3") == Path("data/bot.sqlite3")
    assert sqlite_path("sqlite:////srv/bot.db") == Path("/srv/bot.db")
    with pytest.raises(ValueError):
        sqlite_path("postgresql://localhost/bot")


async def test_open_creates_folder_and_schema_version(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/a/b/bot.sqlite3"):
        pass
    with sqlite3.connect(tmp_path / "a" / "b" / "bot.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bot.sqlite3"
    async with open_store(url) as first:
        assert await reserve(first, "job-1")
        await first.set_meta("k", "v")
    async with open_store(url) as second:
        assert await second.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 1
        assert await second.get_meta("k") == "v"


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        await SQLiteStore.open(path)


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


async def test_a_job_id_is_charged_once(store) -> None:
    assert await reserve(store, "job-1")
    with pytest.raises(sqlite3.IntegrityError):
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


async def test_update_job_only_from_expected_states(store) -> None:
    await reserve(store, "job-1")
    assert await store.update_job("job-1", expect=["queued"], state="running")
    assert not await store.update_job("job-1", expect=["queued"], state="running")
    assert await store.update_job("job-1", status_message_id=99)
    stored = await store.get_job("job-1")
    assert stored is not None and (stored.state, stored.status_message_id) == ("running", 99)
    with pytest.raises(ValueError):
        await store.update_job("job-1", user_id=1)


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


async def test_settling_an_unknown_job_does_nothing(store) -> None:
    assert not await store.finish_job("nope", "done")
    assert not await store.finish_job("nope", "cancelled")


async def test_fifty_concurrent_reservations_with_five_left(store) -> None:
    for n in range(15):
        assert await reserve(store, f"old-{n}", limit=20)
    results = await asyncio.gather(*(reserve(store, f"new-{n}", limit=20) for n in range(50)))
    assert results.count(True) == 5
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 20


async def test_two_connections_to_one_file_never_overspend(tmp_path: Path) -> None:
    """Two processes sharing one database file: BEGIN IMMEDIATE keeps the count exact."""
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    async with open_store(url) as first, open_store(url) as second:
        results = await asyncio.gather(*(reserve(first if n % 2 else second, f"job-{n}", limit=7) for n in range(40)))
        assert results.count(True) == 7
        assert await first.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 7


async def test_meta_upsert(store) -> None:
    assert await store.get_meta("missing") is None
    await store.set_meta("key", "one")
    await store.set_meta("key", "two")
    assert await store.get_meta("key") == "two"


async def test_migrating_from_v2_keeps_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO jobs (id, guild_id, channel_id, user_id, command, params, language, state, upload_limit,"
            " created_at, updated_at) VALUES ('old', 1, 2, 3, 'draw', '{\"prompt\": \"p\"}', 'en', 'done', 10,"
            " '2026-11-20T00:00:00+00:00', '2026-11-20T00:00:00+00:00')"
        )
    store = await SQLiteStore.open(path)
    try:
        old = await store.get_job("old")
        assert old is not None and (old.state, old.params, old.note) == ("done", {"prompt": "p"}, None)
        assert await store.update_job("old", state="pending")
    finally:
        await store.close()


async def test_a_write_cancelled_while_it_begins_leaves_the_store_usable(store) -> None:
    assert await reserve(store, "job-1")
    task = asyncio.create_task(store.update_job("job-1", expect=["queued"], state="running"))
    await asyncio.sleep(0)  # the task is waiting for BEGIN IMMEDIATE
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


async def test_last_request_survives_forgetting(store) -> None:
    assert await store.last_request_at(guild_id=GUILD, user_id=USER) is None
    assert await reserve(store, "job-1", window="2026-11-21")
    await store.finish_job("job-1", "done")
    before = await store.last_request_at(guild_id=GUILD, user_id=USER)
    assert before is not None
    assert await store.forget_user(USER, guild_id=None, keep_window="2026-11-21") == 1
    assert await store.last_request_at(guild_id=GUILD, user_id=USER) == before
