"""The PostgreSQL store (asyncpg), for one or several processes sharing a database; migrations are versioned in a
schema_version table. Method for method it follows storage/sqlite.py: add a method to both."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage._rows import (
    JOB_COLUMNS,
    finish_arguments,
    job_changes,
    job_from_row,
    job_values,
    settle_state,
    utc_now,
)
from storage.base import ACTIVE_STATES, FINAL_STATES, BanRow, JobRow, MemberRecord, StoreUnavailable
from storage.urls import postgres_connect_args, redact_url

log = logging.getLogger(__name__)

# Each entry moves the schema one version up; never edit one that has shipped, append a new one. v1 is the schema
# SQLite reached at its v3, with the same tables and columns (v2 then follows SQLite's v4): snowflakes are BIGINT,
# timestamps and windows are ISO 8601 text in one fixed UTC format compared byte-wise (COLLATE "C", as SQLite does),
# JSON is text. `jobs.seq` is the insertion order that SQLite's rowid gives, to order jobs created in the same
# millisecond.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE quota_ledger (
        job_id      TEXT PRIMARY KEY,
        guild_id    BIGINT NOT NULL,
        user_id     BIGINT NOT NULL,
        period      TEXT COLLATE "C" NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
        created_at  TEXT COLLATE "C" NOT NULL,
        settled_at  TEXT COLLATE "C"
    );
    CREATE INDEX quota_ledger_user_window ON quota_ledger (guild_id, user_id, period, state);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE jobs (
        seq                  BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id                   TEXT PRIMARY KEY,
        guild_id             BIGINT NOT NULL,
        channel_id           BIGINT NOT NULL,
        user_id              BIGINT NOT NULL,
        command              TEXT NOT NULL,
        params               TEXT NOT NULL,
        language             TEXT NOT NULL,
        state                TEXT NOT NULL
            CHECK (state IN ('pending', 'queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        error                TEXT,
        note                 TEXT,
        application_id       BIGINT,
        interaction_token    TEXT,
        token_expires_at     TEXT COLLATE "C",
        status_message_id    BIGINT,
        result_message_id    BIGINT,
        approval_message_id  BIGINT,
        approval_expires_at  TEXT COLLATE "C",
        upload_limit         BIGINT NOT NULL,
        created_at           TEXT COLLATE "C" NOT NULL,
        updated_at           TEXT COLLATE "C" NOT NULL,
        finished_at          TEXT COLLATE "C"
    );
    CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, created_at);
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE TABLE guild_settings (
        guild_id    BIGINT PRIMARY KEY,
        settings    TEXT NOT NULL,
        updated_at  TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE user_limits (
        guild_id     BIGINT NOT NULL,
        user_id      BIGINT NOT NULL,
        daily_limit  BIGINT NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE quota_grants (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        guild_id    BIGINT NOT NULL,
        user_id     BIGINT NOT NULL,
        period      TEXT COLLATE "C" NOT NULL,
        amount      BIGINT NOT NULL,
        granted_by  BIGINT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX quota_grants_user ON quota_grants (guild_id, user_id, period);
    CREATE TABLE bans (
        guild_id    BIGINT NOT NULL,
        user_id     BIGINT NOT NULL,
        reason      TEXT,
        banned_by   BIGINT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    """,
    # v2: the requester's daily limit travels with the job, so the image shows the same limit as /quota.
    """
    ALTER TABLE jobs ADD COLUMN quota_limit BIGINT;
    """,
)


def _advisory_key(*parts: object) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock. Two names sharing a key only wait for each other."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK = _advisory_key("doubao-bot", "migrations")


def _affected(status: str) -> int:
    """The row count at the end of a command tag such as 'UPDATE 1' or 'INSERT 0 1'."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore:
    """A pool of connections. A member's reservations take turns on a transaction-level advisory lock, so the
    count-then-insert in create_job is exact across processes; finish_job's conditional UPDATE settles once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, database_url: str, *, pool_size: int = 10) -> PostgresStore:
        where = redact_url(database_url)
        log.info("opening the PostgreSQL database %s with a pool of %d connections", where, pool_size)
        try:
            pool = await asyncpg.create_pool(
                min_size=1,
                max_size=pool_size,
                server_settings={"application_name": "doubao-bot"},
                **postgres_connect_args(database_url),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL database {where}: {exc}") from None
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        # A cancellation inside rolls back; the pool resets (or drops) the connection before reusing it.
        async with self._pool.acquire() as connection, connection.transaction():
            yield connection

    async def _migrate(self) -> None:
        # Processes starting together take turns on one advisory lock; each migration commits with its version.
        while True:
            async with self._transaction() as db:
                await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                version = await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                if version > len(MIGRATIONS):
                    raise RuntimeError(f"the database schema (v{version}) is newer than this bot (v{len(MIGRATIONS)})")
                if version == len(MIGRATIONS):
                    return
                log.info("migrating the database to schema v%d", version + 1)
                await db.execute(MIGRATIONS[version])
                await db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", version + 1, utc_now()
                )

    # -- jobs and their quota ------------------------------------------------------------------

    async def create_job(self, job: JobRow, *, window: str, limit: int) -> bool:
        created_at = utc_now()
        async with self._transaction() as db:
            # One member's reservations, from any process, take turns here. The count below is a later statement,
            # so under READ COMMITTED its snapshot sees every reservation committed before the lock was granted.
            await db.execute("SELECT pg_advisory_xact_lock($1)", _advisory_key("quota", job.guild_id, job.user_id))
            status = await db.execute(
                """
                INSERT INTO quota_ledger (job_id, guild_id, user_id, period, state, created_at)
                SELECT $1::text, $2::bigint, $3::bigint, $4::text, 'reserved', $5::text
                WHERE (SELECT COUNT(*) FROM quota_ledger
                       WHERE guild_id = $2 AND user_id = $3 AND period = $4
                         AND state IN ('reserved', 'committed')) < $6
                """,
                job.id,
                job.guild_id,
                job.user_id,
                window,
                created_at,
                limit,
            )
            if _affected(status) != 1:
                return False
            placeholders = ", ".join(f"${n}" for n in range(1, len(JOB_COLUMNS) + 1))
            await db.execute(
                f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({placeholders})",
                *job_values(job, created_at=created_at),
            )
            return True

    async def update_job(self, job_id: str, *, expect: Iterable[str] | None = None, **changes: Any) -> bool:
        encoded = job_changes(changes)
        arguments: list[Any] = [*encoded.values(), utc_now(), job_id]
        assignments = [f"{name} = ${n}" for n, name in enumerate(encoded, start=1)]
        assignments.append(f"updated_at = ${len(encoded) + 1}")
        where = f"id = ${len(arguments)}"
        if expect is not None:
            arguments.append(list(expect))
            where += f" AND state = ANY(${len(arguments)}::text[])"
        status = await self._pool.execute(f"UPDATE jobs SET {', '.join(assignments)} WHERE {where}", *arguments)
        return _affected(status) == 1

    async def finish_job(
        self,
        job_id: str,
        state: str,
        *,
        error: str | None = None,
        note: str | None = None,
        result_message_id: int | None = None,
        expect: Iterable[str] = ACTIVE_STATES,
    ) -> bool:
        expected = finish_arguments(state, expect)
        finished_at = utc_now()
        async with self._transaction() as db:
            # The row lock makes a concurrent finish wait, then see the new state and change nothing.
            status = await db.execute(
                """
                UPDATE jobs SET state = $1, error = $2, note = COALESCE($3, note),
                                result_message_id = COALESCE($4, result_message_id),
                                interaction_token = NULL, updated_at = $5, finished_at = $5
                WHERE id = $6 AND state = ANY($7::text[])
                """,
                str(state),
                error,
                note,
                result_message_id,
                finished_at,
                job_id,
                list(expected),
            )
            if _affected(status) != 1:
                return False
            await db.execute(
                "UPDATE quota_ledger SET state = $1, settled_at = $2 WHERE job_id = $3 AND state = 'reserved'",
                settle_state(state),
                finished_at,
                job_id,
            )
            return True

    async def get_job(self, job_id: str) -> JobRow | None:
        row = await self._pool.fetchrow(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = $1", job_id)
        return job_from_row(row) if row else None

    async def active_jobs(self) -> list[JobRow]:
        active = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
        query = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE state IN ({active}) ORDER BY created_at, seq"
        return [job_from_row(row) for row in await self._pool.fetch(query)]

    async def recent_jobs(self, *, guild_id: int, user_id: int, limit: int) -> list[JobRow]:
        query = (
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE guild_id = $1 AND user_id = $2"
            " ORDER BY created_at DESC, seq DESC LIMIT $3"
        )
        return [job_from_row(row) for row in await self._pool.fetch(query, guild_id, user_id, limit)]

    async def last_request_at(self, *, guild_id: int, user_id: int) -> str | None:
        query = "SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = $1 AND user_id = $2"
        return await self._pool.fetchval(query, guild_id, user_id)

    async def member_record(self, *, guild_id: int, user_id: int, window: str) -> MemberRecord:
        row = await self._pool.fetchrow(
            """
            SELECT (SELECT settings FROM guild_settings WHERE guild_id = $1),
                   EXISTS (SELECT 1 FROM bans WHERE guild_id = $1 AND user_id = $2),
                   (SELECT daily_limit FROM user_limits WHERE guild_id = $1 AND user_id = $2),
                   (SELECT COALESCE(SUM(amount), 0) FROM quota_grants
                    WHERE guild_id = $1 AND user_id = $2 AND period = $3),
                   (SELECT COUNT(*) FROM quota_ledger
                    WHERE guild_id = $1 AND user_id = $2 AND period = $3
                      AND state IN ('reserved', 'committed')),
                   (SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = $1 AND user_id = $2)
            """,
            guild_id,
            user_id,
            window,
        )
        assert row is not None
        settings, banned, personal, granted, used, last = row
        return MemberRecord(
            guild_settings=json.loads(settings) if settings else None,
            banned=bool(banned),
            personal_limit=personal,
            granted=int(granted),
            used=int(used),
            last_request_at=last,
        )

    async def used_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        count = await self._pool.fetchval(
            """
            SELECT COUNT(*) FROM quota_ledger
            WHERE guild_id = $1 AND user_id = $2 AND period = $3 AND state IN ('reserved', 'committed')
            """,
            guild_id,
            user_id,
            window,
        )
        return int(count)

    async def ledger_totals(self) -> dict[str, int]:
        totals = {"reserved": 0, "committed": 0, "refunded": 0}
        for state, count in await self._pool.fetch("SELECT state, COUNT(*) FROM quota_ledger GROUP BY state"):
            totals[state] = count
        return totals

    async def job_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIVE_STATES + FINAL_STATES, 0)
        for state, count in await self._pool.fetch("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts[state] = count
        return counts

    async def expired_pending_jobs(self, now: str) -> list[JobRow]:
        query = (
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
            " WHERE state = 'pending' AND approval_expires_at IS NOT NULL AND approval_expires_at < $1"
            " ORDER BY created_at, seq"
        )
        return [job_from_row(row) for row in await self._pool.fetch(query, now)]

    # -- server policy --------------------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        value = await self._pool.fetchval("SELECT settings FROM guild_settings WHERE guild_id = $1", guild_id)
        return json.loads(value) if value is not None else None

    async def save_guild_settings(self, guild_id: int, settings: dict[str, Any]) -> None:
        await self._pool.execute(
            "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            guild_id,
            json.dumps(settings, sort_keys=True),
            utc_now(),
        )

    async def get_user_limit(self, guild_id: int, user_id: int) -> int | None:
        query = "SELECT daily_limit FROM user_limits WHERE guild_id = $1 AND user_id = $2"
        value = await self._pool.fetchval(query, guild_id, user_id)
        return int(value) if value is not None else None

    async def set_user_limit(self, guild_id: int, user_id: int, limit: int | None) -> None:
        if limit is None:
            await self._pool.execute("DELETE FROM user_limits WHERE guild_id = $1 AND user_id = $2", guild_id, user_id)
        else:
            await self._pool.execute(
                "INSERT INTO user_limits (guild_id, user_id, daily_limit) VALUES ($1, $2, $3)"
                " ON CONFLICT (guild_id, user_id) DO UPDATE SET daily_limit = excluded.daily_limit",
                guild_id,
                user_id,
                limit,
            )

    async def add_quota_grant(self, *, guild_id: int, user_id: int, window: str, amount: int, granted_by: int) -> None:
        await self._pool.execute(
            "INSERT INTO quota_grants (guild_id, user_id, period, amount, granted_by, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            guild_id,
            user_id,
            window,
            amount,
            granted_by,
            utc_now(),
        )

    async def granted_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        query = "SELECT COALESCE(SUM(amount), 0) FROM quota_grants WHERE guild_id = $1 AND user_id = $2 AND period = $3"
        return int(await self._pool.fetchval(query, guild_id, user_id, window))

    async def ban(self, *, guild_id: int, user_id: int, reason: str | None, banned_by: int) -> None:
        await self._pool.execute(
            "INSERT INTO bans (guild_id, user_id, reason, banned_by, created_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,"
            " banned_by = excluded.banned_by, created_at = excluded.created_at",
            guild_id,
            user_id,
            reason,
            banned_by,
            utc_now(),
        )

    async def unban(self, *, guild_id: int, user_id: int) -> bool:
        status = await self._pool.execute("DELETE FROM bans WHERE guild_id = $1 AND user_id = $2", guild_id, user_id)
        return _affected(status) == 1

    async def get_ban(self, guild_id: int, user_id: int) -> BanRow | None:
        query = "SELECT guild_id, user_id, reason, banned_by, created_at FROM bans WHERE guild_id = $1 AND user_id = $2"
        row = await self._pool.fetchrow(query, guild_id, user_id)
        return BanRow(*row) if row else None

    async def forget_user(self, user_id: int, *, guild_id: int | None, keep_window: str) -> int:
        scope, arguments = (
            ("user_id = $1", [user_id])
            if guild_id is None
            else (
                "user_id = $1 AND guild_id = $2",
                [user_id, guild_id],
            )
        )
        final = ", ".join(f"'{name}'" for name in FINAL_STATES)
        async with self._transaction() as db:
            await db.execute(
                f"DELETE FROM quota_ledger WHERE {scope} AND period != ${len(arguments) + 1} AND state != 'reserved'",
                *arguments,
                keep_window,
            )
            status = await db.execute(f"DELETE FROM jobs WHERE {scope} AND state IN ({final})", *arguments)
            return _affected(status)

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        return await self._pool.fetchval("SELECT value FROM meta WHERE key = $1", key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._pool.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )
