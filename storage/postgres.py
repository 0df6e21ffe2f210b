"""The PostgreSQL store (asyncpg), for one or several processes sharing a database; migrations are versioned in a
schema_version table. Method for method it follows storage/sqlite.py: add a method to both."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, ClassVar

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
from storage.base import (
    ACTIVE_STATES,
    FINAL_STATES,
    LEASED_STATES,
    BanRow,
    Created,
    JobRow,
    MemberRecord,
    StoreUnavailable,
)
from storage.urls import postgres_connect_args, redact_url

log = logging.getLogger(__name__)

Connection = asyncpg.pool.PoolConnectionProxy  # what the pool hands out

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
    # v3: the queue lives in the jobs table (turns for the fair order) and running jobs are leased (SQLite's v5).
    """
    ALTER TABLE jobs ADD COLUMN turn BIGINT;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT COLLATE "C";
    CREATE INDEX jobs_queue ON jobs (turn, seq) WHERE state = 'queued';
    CREATE INDEX jobs_by_requester ON jobs (user_id, state);
    """,
    # v4: the quota window a job's reservation counts in (SQLite's v6, where a trigger reserves from it).
    """
    ALTER TABLE jobs ADD COLUMN quota_period TEXT COLLATE "C";
    """,
    # v5: a member's last request (every admission reads it) from an index (SQLite's v7).
    """
    CREATE INDEX quota_ledger_last_request ON quota_ledger (guild_id, user_id, created_at);
    """,
)

_SELECT_JOB = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
_ACTIVE = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
_IN_SERVICE = "'queued', 'running', 'delivering'"  # states whose turn still counts for the fair order
_LEASED = ", ".join(f"'{name}'" for name in LEASED_STATES)
ROUND_KEY = "queue_round"  # in meta: the turn of the job claimed last
NOTIFY_CHANNEL = "doubao_bot"


def _advisory_key(*parts: object) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock. Two names sharing a key only wait for each other."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK = _advisory_key("doubao-bot", "migrations")
_CLAIM_LOCK = _advisory_key("doubao-bot", "claims")


def _member_lock(user_id: int) -> int:
    """One member's job creations take turns (quota, active jobs and turn are all per member)."""
    return _advisory_key("member", user_id)


def _affected(status: str) -> int:
    """The row count at the end of a command tag such as 'UPDATE 1' or 'INSERT 0 1'."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore:
    """A pool of connections. A member's reservations take turns on a transaction-level advisory lock, so the
    count-then-insert in create_job is exact across processes; finish_job's conditional UPDATE settles once."""

    multi_process: ClassVar[bool] = True

    def __init__(self, pool: asyncpg.Pool, listener: asyncpg.Connection) -> None:
        self._pool = pool
        self._listener = listener  # LISTENs on NOTIFY_CHANNEL; its own connection, outside the pool
        self._listeners: list[Callable[[str], None]] = []

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
            listener = await asyncpg.connect(
                server_settings={"application_name": "doubao-bot"}, **postgres_connect_args(database_url)
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL database {where}: {exc}") from None
        store = cls(pool, listener)
        try:
            await store._migrate()
            await listener.add_listener(NOTIFY_CHANNEL, store._notified)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._listener.close()
        await self._pool.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
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
                version = await _count(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
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

    async def create_job(
        self,
        job: JobRow,
        *,
        window: str,
        limit: int,
        max_per_user: int | None = None,
        max_queue: int | None = None,
    ) -> Created:
        created_at = utc_now()
        async with self._transaction() as db:
            # One member's requests, from any process, take turns here. The counts below are later statements, so
            # under READ COMMITTED they see every job and reservation committed before the lock was granted. The
            # queue's length is not under this lock: requests of different members at the same moment may pass
            # `max_queue` by a few.
            await db.execute("SELECT pg_advisory_xact_lock($1)", _member_lock(job.user_id))
            if (
                max_queue is not None
                and job.state == "queued"
                and await _count(db, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'") >= max_queue
            ):
                return Created.QUEUE_FULL
            if max_per_user is not None:
                active = f"SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND state IN ({_ACTIVE})"
                if await _count(db, active, job.user_id) >= max_per_user:
                    return Created.TOO_MANY_JOBS
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
                return Created.QUOTA_EXHAUSTED
            if job.state == "queued":
                job = replace(job, turn=await self._next_turn(db, job.user_id))
            placeholders = ", ".join(f"${n}" for n in range(1, len(JOB_COLUMNS) + 2))
            await db.execute(
                f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}, quota_period) VALUES ({placeholders})",
                *job_values(job, created_at=created_at),
                window,
            )
            return Created.CREATED

    async def _next_turn(self, db: Connection, user_id: int) -> int:
        """The current round for a member with nothing in service, else one past their latest turn (the caller
        holds the member's lock)."""
        current = int(await db.fetchval("SELECT value FROM meta WHERE key = $1", ROUND_KEY) or 0)
        latest = await db.fetchval(
            f"SELECT MAX(turn) FROM jobs WHERE user_id = $1 AND state IN ({_IN_SERVICE})", user_id
        )
        return current if latest is None else max(current, latest + 1)

    async def queue_job(
        self, job_id: str, *, expect: Iterable[str], owner: str | None = None, lease_until: str | None = None
    ) -> bool:
        expected = [str(name) for name in expect]
        async with self._transaction() as db:
            user_id = await db.fetchval("SELECT user_id FROM jobs WHERE id = $1", job_id)
            if user_id is None:
                return False
            await db.execute("SELECT pg_advisory_xact_lock($1)", _member_lock(user_id))
            row = await db.fetchrow("SELECT state, turn FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if row is None or row["state"] not in expected:
                return False
            turn = row["turn"] if row["turn"] is not None else await self._next_turn(db, user_id)
            await db.execute(
                "UPDATE jobs SET state = 'queued', turn = $1, attempts = attempts + $2, lease_owner = $3,"
                " lease_expires_at = $4, updated_at = $5 WHERE id = $6",
                turn,
                1 if row["state"] == "running" else 0,
                owner,
                lease_until,
                utc_now(),
                job_id,
            )
            return True

    async def claim_job(self, *, owner: str, lease_until: str, max_running: int) -> JobRow | None:
        async with self._transaction() as db:
            # Claims take turns, so the count of running jobs (the calls to 302.ai in flight) is exact across
            # processes. No SKIP LOCKED: a queued row is locked for a moment by a lease renewal too, and passing over
            # it would serve a later turn first. A row a cancel has just taken out of the queue is not returned (the
            # cancel's notice makes the dispatcher look again).
            await db.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            if await _count(db, "SELECT COUNT(*) FROM jobs WHERE state = 'running'") >= max_running:
                return None
            row = await db.fetchrow(f"{_SELECT_JOB} WHERE state = 'queued' ORDER BY turn, seq LIMIT 1 FOR UPDATE")
            if row is None:
                return None
            job = job_from_row(row)
            now = utc_now()
            await db.execute(
                "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, updated_at = $3"
                " WHERE id = $4",
                owner,
                lease_until,
                now,
                job.id,
            )
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE"
                " SET value = GREATEST(meta.value::bigint, excluded.value::bigint)::text",
                ROUND_KEY,
                str(job.turn or 0),
            )
            return replace(job, state="running", lease_owner=owner, lease_expires_at=lease_until, updated_at=now)

    async def queued_job_ids(self) -> list[str]:
        rows = await self._pool.fetch("SELECT id FROM jobs WHERE state = 'queued' ORDER BY turn, seq")
        return [row[0] for row in rows]

    async def renew_leases(self, *, owner: str, lease_until: str, states: Iterable[str] = LEASED_STATES) -> list[str]:
        rows = await self._pool.fetch(
            "UPDATE jobs SET lease_expires_at = $1 WHERE lease_owner = $2 AND state = ANY($3::text[]) RETURNING id",
            lease_until,
            owner,
            [str(name) for name in states],
        )
        return [row[0] for row in rows]

    async def expired_leases(self, now: str) -> list[JobRow]:
        query = (
            f"{_SELECT_JOB} WHERE state IN ({_LEASED}) AND lease_expires_at IS NOT NULL"
            " AND lease_expires_at < $1 ORDER BY created_at, seq"
        )
        return [job_from_row(row) for row in await self._pool.fetch(query, now)]

    async def take_over(self, job_id: str, *, state: str, owner: str, lease_until: str, now: str) -> bool:
        status = await self._pool.execute(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2"
            " WHERE id = $3 AND state = $4 AND lease_expires_at < $5",
            owner,
            lease_until,
            job_id,
            state,
            now,
        )
        return _affected(status) == 1

    def listen(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    async def publish(self, topic: str) -> None:
        await self._pool.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, topic)

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        for callback in self._listeners:
            callback(str(payload))

    async def update_job(
        self, job_id: str, *, expect: Iterable[str] | None = None, held_by: str | None = None, **changes: Any
    ) -> bool:
        encoded = job_changes(changes)
        arguments: list[Any] = [*encoded.values(), utc_now(), job_id]
        assignments = [f"{name} = ${n}" for n, name in enumerate(encoded, start=1)]
        assignments.append(f"updated_at = ${len(encoded) + 1}")
        where = f"id = ${len(arguments)}"
        if expect is not None:
            arguments.append(list(expect))
            where += f" AND state = ANY(${len(arguments)}::text[])"
        if held_by is not None:
            arguments.append(held_by)
            where += f" AND lease_owner = ${len(arguments)}"
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
        held_by: str | None = None,
    ) -> bool:
        expected = finish_arguments(state, expect)
        finished_at = utc_now()
        async with self._transaction() as db:
            # The row lock makes a concurrent finish wait, then see the new state and change nothing.
            status = await db.execute(
                """
                UPDATE jobs SET state = $1, error = $2, note = COALESCE($3, note),
                                result_message_id = COALESCE($4, result_message_id),
                                interaction_token = NULL, lease_expires_at = NULL, updated_at = $5, finished_at = $5
                WHERE id = $6 AND state = ANY($7::text[]) AND ($8::text IS NULL OR lease_owner = $8)
                """,
                str(state),
                error,
                note,
                result_message_id,
                finished_at,
                job_id,
                list(expected),
                held_by,
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
            f"""
            SELECT (SELECT settings FROM guild_settings WHERE guild_id = $1),
                   EXISTS (SELECT 1 FROM bans WHERE guild_id = $1 AND user_id = $2),
                   (SELECT daily_limit FROM user_limits WHERE guild_id = $1 AND user_id = $2),
                   (SELECT COALESCE(SUM(amount), 0) FROM quota_grants
                    WHERE guild_id = $1 AND user_id = $2 AND period = $3),
                   (SELECT COUNT(*) FROM quota_ledger
                    WHERE guild_id = $1 AND user_id = $2 AND period = $3
                      AND state IN ('reserved', 'committed')),
                   (SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = $1 AND user_id = $2),
                   (SELECT COUNT(*) FROM jobs WHERE user_id = $2 AND state IN ({_ACTIVE})),
                   (SELECT COUNT(*) FROM jobs WHERE state = 'queued')
            """,
            guild_id,
            user_id,
            window,
        )
        assert row is not None
        settings, banned, personal, granted, used, last, active, queued = row
        return MemberRecord(
            guild_settings=json.loads(settings) if settings else None,
            banned=bool(banned),
            personal_limit=personal,
            granted=int(granted),
            used=int(used),
            last_request_at=last,
            active_jobs=int(active),
            queued_jobs=int(queued),
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
        counts: dict[str, int] = dict.fromkeys(ACTIVE_STATES + FINAL_STATES, 0)
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


async def _count(db: Connection, query: str, *arguments: Any) -> int:
    return int(await db.fetchval(query, *arguments) or 0)
