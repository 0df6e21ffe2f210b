"""What only the SQLite store does: file URLs, folders, and the upgrade from its older schemas."""

from __future__ import annotations

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
