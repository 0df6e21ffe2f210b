"""What only the SQLite store does: file URLs, folders, the upgrade from its older schemas, and writes committed
together in batches."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import open_store, sqlite_path
from storage.sqlite import SQLiteStore
from tests.storage.helpers import DAY, GUILD, USER, reserve


def test_sqlite_path_relative_and_absolute() -> None:
    assert sqlite_path("sqlite:///data/bot.sqlite3") == Path("data/bot.sqlite3")
    assert sqlite_path("sqlite:////srv/bot.db") == Path("/srv/bot.db")
    with pytest.raises(ValueError):
        sqlite_path("postgresql://localhost/bot")


async def test_open_creates_the_folder(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/a/b/bot.sqlite3", pool_size=3) as store:
        assert await reserve(store, "job-1")
    assert (tmp_path / "a" / "b" / "bot.sqlite3").is_file()


async def test_migrating_from_v2_keeps_jobs(tmp_path: Path) -> None:
    from storage.sqlite import MIGRATIONS

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
        assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 0
    finally:
        await store.close()


# -- writes made meanwhile commit together ---------------------------------------------------------


async def test_a_write_that_fails_in_a_batch_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_store(f"sqlite:///{path}") as store:
        assert await reserve(store, "taken")
        with sqlite3.connect(path) as db:  # a reservation without its job: the job's trigger will fail on it
            db.execute(
                "INSERT INTO quota_ledger (job_id, guild_id, user_id, period, state, created_at)"
                " VALUES ('orphan', 1, 99, 'other', 'reserved', '2026-11-21T00:00:00+00:00')"
            )
        names = ["job-1", "taken", "job-2", "orphan", "job-3"]
        # Made in one go, they commit in one batch.
        outcomes = await asyncio.gather(*(reserve(store, name, limit=10) for name in names), return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [bool, sqlite3.IntegrityError] * 2 + [bool]
        assert all(outcome is True for outcome in outcomes[::2])
        assert await store.get_job("orphan") is None  # its INSERT was undone with its trigger's
        assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 4


async def test_writes_return_once_committed_and_a_cancelled_caller_leaves_its_batch_whole(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_store(f"sqlite:///{path}") as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the store's batch waits for the write lock in its own BEGIN
            writes = [asyncio.create_task(reserve(store, f"job-{n}", limit=10)) for n in range(5)]
            await asyncio.sleep(0.2)
            assert not any(write.done() for write in writes)
            writes[2].cancel()
            blocker.execute("COMMIT")
        finally:
            blocker.close()
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(outcomes[2], asyncio.CancelledError)
        assert outcomes[:2] + outcomes[3:] == [True] * 4
        with sqlite3.connect(path) as db:  # committed, as another connection sees; job-2's batch had started
            assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (5,)
        await store.set_meta("after", "yes")  # a transaction of its own: the connection was left in none
        assert await store.get_meta("after") == "yes"


async def test_transactions_never_interleave_with_batched_writes(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/bot.sqlite3") as store:
        calls = []
        for n in range(20):
            calls.append(reserve(store, f"job-{n}", user=USER + n % 3, limit=100))
            # Two statements in one transaction: a batch begun between them would fail, and so would they.
            calls.append(store.forget_user(USER + n % 3, guild_id=GUILD, keep_window=DAY))
        outcomes = await asyncio.gather(*calls)
        assert all(outcomes[::2]) and outcomes[1::2] == [0] * 20
        assert (await store.ledger_totals())["reserved"] == 20
