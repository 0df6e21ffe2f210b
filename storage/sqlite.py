"""The SQLite store (aiosqlite), with schema migrations versioned by PRAGMA user_version."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

# Each entry moves the schema one version up; never edit one that has shipped, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE quota_ledger (
        job_id      TEXT PRIMARY KEY,
        guild_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        period      TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
        created_at  TEXT NOT NULL,
        settled_at  TEXT
    );
    CREATE INDEX quota_ledger_user_window ON quota_ledger (guild_id, user_id, period, state);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SQLiteStore:
    """One connection per process; writes that read-then-write run in BEGIN IMMEDIATE transactions."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        # aiosqlite shares one connection between coroutines: a transaction must not interleave with another.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> SQLiteStore:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            store = cls(connection)
            await store._migrate()
        except BaseException:
            await connection.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database schema (v{version}) is newer than this bot (v{len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migrating the database to schema v%d", number)
            async with self._transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")

    async def reserve_quota(
        self, *, job_id: str, guild_id: int, user_id: int, window: str, limit: int
    ) -> bool:
        async with self._transaction() as db:
            async with db.execute("SELECT 1 FROM quota_ledger WHERE job_id = ?", (job_id,)) as cursor:
                if await cursor.fetchone():
                    return True
            cursor = await db.execute(
                """
                INSERT INTO quota_ledger (job_id, guild_id, user_id, period, state, created_at)
                SELECT ?, ?, ?, ?, 'reserved', ?
                WHERE (SELECT COUNT(*) FROM quota_ledger
                       WHERE guild_id = ? AND user_id = ? AND period = ?
                         AND state IN ('reserved', 'committed')) < ?
                """,
                (job_id, guild_id, user_id, window, _now(), guild_id, user_id, window, limit),
            )
            return cursor.rowcount == 1

    async def commit_quota(self, job_id: str) -> bool:
        return await self._settle(job_id, "committed")

    async def refund_quota(self, job_id: str) -> bool:
        return await self._settle(job_id, "refunded")

    async def _settle(self, job_id: str, state: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE quota_ledger SET state = ?, settled_at = ? WHERE job_id = ? AND state = 'reserved'",
                (state, _now(), job_id),
            )
            return cursor.rowcount == 1

    async def used_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        async with self._db.execute(
            """
            SELECT COUNT(*) FROM quota_ledger
            WHERE guild_id = ? AND user_id = ? AND period = ? AND state IN ('reserved', 'committed')
            """,
            (guild_id, user_id, window),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def ledger_totals(self) -> dict[str, int]:
        totals = {"reserved": 0, "committed": 0, "refunded": 0}
        async with self._db.execute("SELECT state, COUNT(*) FROM quota_ledger GROUP BY state") as cursor:
            async for state, count in cursor:
                totals[state] = count
        return totals

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
