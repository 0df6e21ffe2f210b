"""The SQLite store (aiosqlite), with schema migrations versioned by PRAGMA user_version."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from storage.base import ACTIVE_STATES, FINAL_STATES, JobRow

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
    """
    CREATE TABLE jobs (
        id                 TEXT PRIMARY KEY,
        guild_id           INTEGER NOT NULL,
        channel_id         INTEGER NOT NULL,
        user_id            INTEGER NOT NULL,
        command            TEXT NOT NULL,
        params             TEXT NOT NULL,
        language           TEXT NOT NULL,
        state              TEXT NOT NULL
            CHECK (state IN ('queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        error              TEXT,
        application_id     INTEGER,
        interaction_token  TEXT,
        token_expires_at   TEXT,
        status_message_id  INTEGER,
        result_message_id  INTEGER,
        upload_limit       INTEGER NOT NULL,
        created_at         TEXT NOT NULL,
        updated_at         TEXT NOT NULL,
        finished_at        TEXT
    );
    CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, created_at);
    CREATE INDEX jobs_by_state ON jobs (state);
    """,
)

_JOB_COLUMNS = tuple(field.name for field in fields(JobRow))
_UPDATABLE = frozenset(_JOB_COLUMNS) - {"id", "guild_id", "user_id", "command", "created_at", "updated_at"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _row_to_job(row: aiosqlite.Row) -> JobRow:
    values = dict(zip(_JOB_COLUMNS, row, strict=True))
    values["params"] = json.loads(values["params"])
    return JobRow(**values)


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
            raise RuntimeError(f"the database schema (v{version}) is newer than this bot (v{len(MIGRATIONS)})")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migrating the database to schema v%d", number)
            async with self._transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")

    # -- jobs and their quota ------------------------------------------------------------------

    async def create_job(self, job: JobRow, *, window: str, limit: int) -> bool:
        now = _now()
        async with self._transaction() as db:
            cursor = await db.execute(
                """
                INSERT INTO quota_ledger (job_id, guild_id, user_id, period, state, created_at)
                SELECT ?, ?, ?, ?, 'reserved', ?
                WHERE (SELECT COUNT(*) FROM quota_ledger
                       WHERE guild_id = ? AND user_id = ? AND period = ?
                         AND state IN ('reserved', 'committed')) < ?
                """,
                (job.id, job.guild_id, job.user_id, window, now, job.guild_id, job.user_id, window, limit),
            )
            if cursor.rowcount != 1:
                return False
            values = {name: getattr(job, name) for name in _JOB_COLUMNS}
            values.update(params=json.dumps(job.params), created_at=now, updated_at=now)
            placeholders = ", ".join("?" for _ in _JOB_COLUMNS)
            await db.execute(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({placeholders})",
                tuple(values[name] for name in _JOB_COLUMNS),
            )
            return True

    async def update_job(self, job_id: str, *, expect: Iterable[str] | None = None, **changes: Any) -> bool:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        assignments = [f"{name} = ?" for name in changes] + ["updated_at = ?"]
        arguments: list[Any] = [json.dumps(v) if k == "params" else v for k, v in changes.items()] + [_now()]
        where = "id = ?"
        arguments.append(job_id)
        if expect is not None:
            states = tuple(expect)
            where += f" AND state IN ({', '.join('?' for _ in states)})"
            arguments.extend(states)
        async with self._transaction() as db:
            cursor = await db.execute(f"UPDATE jobs SET {', '.join(assignments)} WHERE {where}", arguments)
            return cursor.rowcount == 1

    async def finish_job(
        self, job_id: str, state: str, *, error: str | None = None, result_message_id: int | None = None
    ) -> bool:
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        now = _now()
        active = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
        async with self._transaction() as db:
            cursor = await db.execute(
                f"""
                UPDATE jobs SET state = ?, error = ?, result_message_id = COALESCE(?, result_message_id),
                                interaction_token = NULL, updated_at = ?, finished_at = ?
                WHERE id = ? AND state IN ({active})
                """,
                (state, error, result_message_id, now, now, job_id),
            )
            if cursor.rowcount != 1:
                return False
            await db.execute(
                "UPDATE quota_ledger SET state = ?, settled_at = ? WHERE job_id = ? AND state = 'reserved'",
                ("committed" if state == "done" else "refunded", now, job_id),
            )
            return True

    async def get_job(self, job_id: str) -> JobRow | None:
        async with self._db.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _row_to_job(row) if row else None

    async def active_jobs(self) -> list[JobRow]:
        active = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
        query = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE state IN ({active}) ORDER BY created_at, rowid"
        async with self._db.execute(query) as cursor:
            return [_row_to_job(row) async for row in cursor]

    async def recent_jobs(self, *, guild_id: int, user_id: int, limit: int) -> list[JobRow]:
        query = (
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE guild_id = ? AND user_id = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        )
        async with self._db.execute(query, (guild_id, user_id, limit)) as cursor:
            return [_row_to_job(row) async for row in cursor]

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

    async def job_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIVE_STATES + FINAL_STATES, 0)
        async with self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state") as cursor:
            async for state, count in cursor:
                counts[state] = count
        return counts

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
