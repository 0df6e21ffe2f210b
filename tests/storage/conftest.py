"""The store suite runs once per backend: `backend` names a fresh, empty database of each kind."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from storage import Store, open_store
from storage.postgres import MIGRATIONS as POSTGRES_MIGRATIONS
from storage.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from storage.urls import postgres_connect_args, sqlite_path


@dataclass(frozen=True)
class Backend:
    """A fresh database and what the tests need to look behind the store's back."""

    name: str
    url: str
    migrations: tuple[str, ...]
    duplicate_error: type[Exception]

    async def schema_version(self) -> int:
        if self.name == "sqlite":
            with sqlite3.connect(sqlite_path(self.url)) as db:
                return db.execute("PRAGMA user_version").fetchone()[0]
        connection = await asyncpg.connect(**postgres_connect_args(self.url))
        try:
            versions = await connection.fetchval("SELECT array_agg(version ORDER BY version) FROM schema_version")
        finally:
            await connection.close()
        assert versions == list(range(1, len(versions) + 1)), "every version recorded once, in order"
        return len(versions)

    async def set_schema_version(self, version: int) -> None:
        """Marks the (empty) database as migrated to `version`, as a newer bot would have."""
        if self.name == "sqlite":
            path = sqlite_path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path) as db:
                db.execute(f"PRAGMA user_version = {version}")
            return
        connection = await asyncpg.connect(**postgres_connect_args(self.url))
        try:
            await connection.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
            await connection.execute("INSERT INTO schema_version SELECT generate_series(1, $1), 'now'", version)
        finally:
            await connection.close()

    async def query_plan(self, query: str) -> str:
        """How the database would run `query` (no parameters), as text. PostgreSQL is told to use an index where
        it can at all: on a near-empty table it would rightly prefer a sequential scan."""
        if self.name == "sqlite":
            with sqlite3.connect(sqlite_path(self.url)) as db:
                return "\n".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
        connection = await asyncpg.connect(**postgres_connect_args(self.url))
        try:
            await connection.execute("SET enable_seqscan = off")
            return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {query}"))
        finally:
            await connection.close()

    async def columns(self) -> dict[str, list[str]]:
        """Each table's columns, as the latest schema has them (bookkeeping tables left out)."""
        if self.name == "sqlite":
            with sqlite3.connect(sqlite_path(self.url)) as db:
                tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                return {
                    table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                    for table in tables
                    if table != "sqlite_sequence"
                }
        connection = await asyncpg.connect(**postgres_connect_args(self.url))
        try:
            rows = await connection.fetch(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name != 'schema_version' ORDER BY table_name, ordinal_position"
            )
        finally:
            await connection.close()
        columns: dict[str, list[str]] = {}
        for table, column in rows:
            columns.setdefault(table, []).append(column)
        return columns


def sqlite_backend(folder: Path) -> Backend:
    url = f"sqlite:///{folder}/nested/bot.sqlite3"
    return Backend("sqlite", url, SQLITE_MIGRATIONS, sqlite3.IntegrityError)


def postgres_backend(url: str) -> Backend:
    return Backend("postgresql", url, POSTGRES_MIGRATIONS, asyncpg.UniqueViolationError)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)
    return postgres_backend(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with open_store(backend.url) as opened:
        yield opened
