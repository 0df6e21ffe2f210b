"""The SQLite store (aiosqlite), with schema migrations versioned by PRAGMA user_version."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence, Sized
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiosqlite

from storage._rows import (
    JOB_COLUMNS,
    finish_arguments,
    job_changes,
    job_from_row,
    job_values,
    utc_now,
)
from storage.base import ACTIVE_STATES, FINAL_STATES, LEASED_STATES, BanRow, Created, JobRow, MemberRecord

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# A write for the write connection's thread (`SQLiteStore._step`): a statement, and any reads its caller needs after
# it in the same transaction; returns what the caller gets back.
_Step = Callable[[sqlite3.Connection], Any]

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
    # v3: server policy, bans, per-user limits and grants; jobs may wait for a moderator ('pending'). SQLite
    # changes a CHECK constraint by rebuilding the table.
    """
    CREATE TABLE jobs_v3 (
        id                   TEXT PRIMARY KEY,
        guild_id             INTEGER NOT NULL,
        channel_id           INTEGER NOT NULL,
        user_id              INTEGER NOT NULL,
        command              TEXT NOT NULL,
        params               TEXT NOT NULL,
        language             TEXT NOT NULL,
        state                TEXT NOT NULL
            CHECK (state IN ('pending', 'queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        error                TEXT,
        note                 TEXT,
        application_id       INTEGER,
        interaction_token    TEXT,
        token_expires_at     TEXT,
        status_message_id    INTEGER,
        result_message_id    INTEGER,
        approval_message_id  INTEGER,
        approval_expires_at  TEXT,
        upload_limit         INTEGER NOT NULL,
        created_at           TEXT NOT NULL,
        updated_at           TEXT NOT NULL,
        finished_at          TEXT
    );
    INSERT INTO jobs_v3 (id, guild_id, channel_id, user_id, command, params, language, state, error,
                         application_id, interaction_token, token_expires_at, status_message_id,
                         result_message_id, upload_limit, created_at, updated_at, finished_at)
        SELECT id, guild_id, channel_id, user_id, command, params, language, state, error,
               application_id, interaction_token, token_expires_at, status_message_id,
               result_message_id, upload_limit, created_at, updated_at, finished_at FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
    CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, created_at);
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE TABLE guild_settings (
        guild_id    INTEGER PRIMARY KEY,
        settings    TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE user_limits (
        guild_id     INTEGER NOT NULL,
        user_id      INTEGER NOT NULL,
        daily_limit  INTEGER NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE quota_grants (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        period      TEXT NOT NULL,
        amount      INTEGER NOT NULL,
        granted_by  INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX quota_grants_user ON quota_grants (guild_id, user_id, period);
    CREATE TABLE bans (
        guild_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        reason      TEXT,
        banned_by   INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    """,
    # v4: the requester's daily limit travels with the job, so the image shows the same limit as /quota.
    """
    ALTER TABLE jobs ADD COLUMN quota_limit INTEGER;
    """,
    # v5: the queue lives in the jobs table (turns for the fair order) and running jobs are leased.
    """
    ALTER TABLE jobs ADD COLUMN turn INTEGER;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
    CREATE INDEX jobs_queue ON jobs (state, turn);
    CREATE INDEX jobs_by_requester ON jobs (user_id, state);
    """,
    # v6: the writes of a job's life are one statement each (so they commit in batches, `SQLiteStore._step`): the
    # reservation made with the job, the settling with its final state, and the queue's round moved by a claim
    # are done by these triggers, in the same statement.
    """
    ALTER TABLE jobs ADD COLUMN quota_period TEXT;
    DROP INDEX jobs_by_state;  -- jobs_queue (state, turn) serves the same look-ups, one index less to write
    CREATE TRIGGER jobs_reserve_quota AFTER INSERT ON jobs WHEN NEW.quota_period IS NOT NULL
    BEGIN
        INSERT INTO quota_ledger (job_id, guild_id, user_id, period, state, created_at)
        VALUES (NEW.id, NEW.guild_id, NEW.user_id, NEW.quota_period, 'reserved', NEW.created_at);
    END;
    CREATE TRIGGER jobs_settle_quota AFTER UPDATE OF state ON jobs
    WHEN NEW.state IN ('done', 'failed', 'cancelled') AND OLD.state NOT IN ('done', 'failed', 'cancelled')
    BEGIN
        UPDATE quota_ledger SET state = CASE NEW.state WHEN 'done' THEN 'committed' ELSE 'refunded' END,
                                settled_at = NEW.finished_at
        WHERE job_id = NEW.id AND state = 'reserved';
    END;
    CREATE TRIGGER jobs_advance_round AFTER UPDATE OF state ON jobs
    WHEN NEW.state = 'running' AND OLD.state = 'queued' AND NEW.turn IS NOT NULL
    BEGIN
        INSERT INTO meta (key, value) VALUES ('queue_round', NEW.turn)
        ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));
    END;
    """,
    # v7: a member's last request (every admission reads it) from an index, not from all their ledger rows.
    """
    CREATE INDEX quota_ledger_last_request ON quota_ledger (guild_id, user_id, created_at);
    """,
)

_SELECT_JOB = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
_ACTIVE = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
_IN_SERVICE = "'queued', 'running', 'delivering'"  # states whose turn still counts for the fair order
_LEASED = ", ".join(f"'{name}'" for name in LEASED_STATES)
ROUND_KEY = "queue_round"  # in meta: the turn of the job claimed last
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


# A new job with its reservation (the jobs_reserve_quota trigger), only while the member's quota and active jobs
# and the queue allow, with its turn when it is queued: one statement.
def _next_turn(user_id: str) -> str:
    """SQL for the turn of a job `user_id` (an expression) queues: the current round for a member with nothing in
    service, else one past their latest turn."""
    return (
        f"MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{ROUND_KEY}'), 0),"
        " COALESCE((SELECT MAX(mine.turn) + 1 FROM jobs AS mine INDEXED BY jobs_by_requester"
        f" WHERE mine.user_id = {user_id} AND mine.state IN ({_IN_SERVICE})), 0))"
    )


_TURN = f"CASE WHEN :state = 'queued' THEN {_next_turn(':user_id')} END"
_INSERT_JOB = f"""
    INSERT INTO jobs ({", ".join(JOB_COLUMNS)}, quota_period)
    SELECT {", ".join(_TURN if name == "turn" else f":{name}" for name in JOB_COLUMNS)}, :window
    WHERE (SELECT COUNT(*) FROM quota_ledger
           WHERE guild_id = :guild_id AND user_id = :user_id AND period = :window
             AND state IN ('reserved', 'committed')) < :reserve_limit
      AND (:max_per_user IS NULL
           OR (SELECT COUNT(*) FROM jobs WHERE user_id = :user_id AND state IN ({_ACTIVE})) < :max_per_user)
      AND (:max_queue IS NULL OR :state != 'queued'
           OR (SELECT COUNT(*) FROM jobs WHERE state = 'queued') < :max_queue)
"""


class SQLiteStore:
    """One connection per process; writes that read-then-write run in BEGIN IMMEDIATE transactions."""

    multi_process: ClassVar[bool] = False

    def __init__(self, connection: aiosqlite.Connection, reader: aiosqlite.Connection | None = None) -> None:
        self._db = connection
        # Reads go through a connection (and thread) of their own, so that acknowledging a member never waits
        # behind the writes queued on the first one; WAL lets it read everything committed, while writes go on.
        self._reader = reader or connection
        # aiosqlite shares one connection between coroutines: a transaction must not interleave with another.
        self._write_lock = asyncio.Lock()
        # Writes waiting to commit together (`_step`), and the task that commits them.
        self._steps: list[tuple[_Step, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str], None]] = []

    @classmethod
    async def open(cls, path: Path | str) -> SQLiteStore:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        reader: aiosqlite.Connection | None = None
        try:
            await _use_wal(connection)
            await connection.execute("PRAGMA synchronous=NORMAL")
            store = cls(connection)
            await store._migrate()
            if str(path) != ":memory:":  # another connection to ":memory:" would be another database
                reader = await aiosqlite.connect(path, isolation_level=None, timeout=30)
                await reader.execute("PRAGMA query_only = ON")
                store._reader = reader
        except BaseException:
            await connection.close()
            if reader is not None:
                await reader.close()
            raise
        return store

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer
        if self._reader is not self._db:
            await self._reader.close()
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                # Inside the try: a cancellation while BEGIN is queued must still roll it back, or the shared
                # connection would be left in a transaction that every later write trips over.
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # no transaction was open
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _step(self, step: Callable[[sqlite3.Connection], _T]) -> _T:
        """Runs `step` on the write connection's thread; returns once it is committed. The steps that wait meanwhile
        commit together, in one trip to the thread and one transaction, rather than a trip each (the trips, more
        than SQLite, were what writes cost). A step that raises fails alone; one cancelled before its batch starts
        does not run."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._steps.append((step, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_steps())
        return await future

    async def _commit_steps(self) -> None:
        try:
            while self._steps:
                async with self._write_lock:  # after any `_transaction()` that asked first
                    batch = [(step, future) for step, future in self._steps if not future.done()]
                    self._steps.clear()
                    if batch:
                        await self._commit_batch(batch)
        finally:
            self._committer = None
            for _, future in self._steps:  # left only if this task was cancelled (the loop is closing)
                future.cancel()
            self._steps.clear()

    async def _commit_batch(self, batch: list[tuple[_Step, asyncio.Future[Any]]]) -> None:
        try:
            # aiosqlite has no public way to run a function on its connection's thread; `_execute` is what its own
            # methods use, and this is the one place the store uses it.
            outcomes = await self._db._execute(_run_batch, self._db._conn, [step for step, _ in batch])
        except Exception as error:  # nothing was committed: BEGIN or COMMIT failed, or SQLite ended the transaction
            outcomes = [(None, error)] * len(batch)
        except BaseException:  # this task was cancelled; the thread may still commit the batch
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), (result, error) in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller was cancelled while the batch ran; it was committed all the same
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    async def _migrate(self) -> None:
        # Processes opening one file together take turns: the version is read inside the write transaction.
        while True:
            async with self._transaction() as db:
                async with db.execute("PRAGMA user_version") as cursor:
                    row = await cursor.fetchone()
                version = row[0] if row else 0
                if version > len(MIGRATIONS):
                    raise RuntimeError(f"the database schema (v{version}) is newer than this bot (v{len(MIGRATIONS)})")
                if version == len(MIGRATIONS):
                    return
                log.info("migrating the database to schema v%d", version + 1)
                for statement in _statements(MIGRATIONS[version]):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {version + 1}")

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
        values = dict(zip(JOB_COLUMNS, job_values(job, created_at=utc_now()), strict=True))
        limits = {"window": window, "reserve_limit": limit, "max_per_user": max_per_user, "max_queue": max_queue}

        def insert(db: sqlite3.Connection) -> Created:
            if db.execute(_INSERT_JOB, values | limits).rowcount == 1:
                return Created.CREATED
            # Refused: say which limit, read right after in the same transaction, so nothing changed meanwhile.
            [(queued,)] = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchall()
            if max_queue is not None and job.state == "queued" and queued >= max_queue:
                return Created.QUEUE_FULL
            active = f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ({_ACTIVE})"
            if max_per_user is not None and db.execute(active, (job.user_id,)).fetchall()[0][0] >= max_per_user:
                return Created.TOO_MANY_JOBS
            return Created.QUOTA_EXHAUSTED

        return await self._step(insert)

    async def _value(self, query: str, *arguments: Any) -> Any:
        """The first column of the first row (one trip to SQLite's thread), or None."""
        rows = list(await self._reader.execute_fetchall(query, arguments))
        return rows[0][0] if rows else None

    async def _write(self, query: str, arguments: Sequence[Any] | dict[str, Any]) -> int:
        """One statement, atomic on its own (with its triggers); returns how many rows it changed."""
        return await self._step(lambda db: db.execute(query, arguments).rowcount)

    async def queue_job(
        self, job_id: str, *, expect: Iterable[str], owner: str | None = None, lease_until: str | None = None
    ) -> bool:
        expected = tuple(str(name) for name in expect)
        # A re-run keeps its turn (it goes first); an approved job gets one now.
        changed = await self._write(
            f"""
            UPDATE jobs SET state = 'queued', turn = COALESCE(turn, {_next_turn("jobs.user_id")}),
                            attempts = attempts + (state = 'running'), lease_owner = ?, lease_expires_at = ?,
                            updated_at = ?
            WHERE id = ? AND state IN ({_placeholders(expected)})
            """,
            (owner, lease_until, utc_now(), job_id, *expected),
        )
        return changed == 1

    async def claim_job(self, *, owner: str, lease_until: str, max_running: int) -> JobRow | None:
        query = f"""
            UPDATE jobs SET state = 'running', lease_owner = :owner, lease_expires_at = :lease, updated_at = :now
            WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY turn, rowid LIMIT 1)
              AND (SELECT COUNT(*) FROM jobs WHERE state = 'running') < :max_running
            RETURNING {", ".join(JOB_COLUMNS)}
        """
        arguments = {"owner": owner, "lease": lease_until, "now": utc_now(), "max_running": max_running}
        rows = await self._step(lambda db: db.execute(query, arguments).fetchall())
        return job_from_row(rows[0]) if rows else None

    async def queued_job_ids(self) -> list[str]:
        rows = await self._reader.execute_fetchall("SELECT id FROM jobs WHERE state = 'queued' ORDER BY turn, rowid")
        return [row[0] for row in rows]

    async def renew_leases(self, *, owner: str, lease_until: str, states: Iterable[str] = LEASED_STATES) -> list[str]:
        chosen = tuple(str(name) for name in states)
        query = (
            f"UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ? AND state IN ({_placeholders(chosen)})"
            " RETURNING id"
        )
        rows = await self._step(lambda db: db.execute(query, (lease_until, owner, *chosen)).fetchall())
        return [row[0] for row in rows]

    async def expired_leases(self, now: str) -> list[JobRow]:
        query = (
            f"{_SELECT_JOB} WHERE state IN ({_LEASED}) AND lease_expires_at IS NOT NULL"
            " AND lease_expires_at < ? ORDER BY created_at, rowid"
        )
        async with self._reader.execute(query, (now,)) as cursor:
            return [job_from_row(row) async for row in cursor]

    async def take_over(self, job_id: str, *, state: str, owner: str, lease_until: str, now: str) -> bool:
        changed = await self._write(
            "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? AND state = ? AND lease_expires_at < ?",
            (owner, lease_until, job_id, state, now),
        )
        return changed == 1

    def listen(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    async def publish(self, topic: str) -> None:
        for callback in self._listeners:  # one process: the listeners are all here
            callback(topic)

    async def update_job(
        self, job_id: str, *, expect: Iterable[str] | None = None, held_by: str | None = None, **changes: Any
    ) -> bool:
        encoded = job_changes(changes)
        assignments = [f"{name} = ?" for name in encoded] + ["updated_at = ?"]
        arguments: list[Any] = [*encoded.values(), utc_now()]
        where = "id = ?"
        arguments.append(job_id)
        if expect is not None:
            states = tuple(expect)
            where += f" AND state IN ({_placeholders(states)})"
            arguments.extend(states)
        if held_by is not None:
            where += " AND lease_owner = ?"
            arguments.append(held_by)
        return await self._write(f"UPDATE jobs SET {', '.join(assignments)} WHERE {where}", arguments) == 1

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
        held = "" if held_by is None else " AND lease_owner = ?"
        # The jobs_settle_quota trigger settles the reservation in the same statement (committed only for 'done').
        changed = await self._write(
            f"""
            UPDATE jobs SET state = ?, error = ?, note = COALESCE(?, note),
                            result_message_id = COALESCE(?, result_message_id),
                            interaction_token = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
            WHERE id = ? AND state IN ({_placeholders(expected)}){held}
            """,
            (str(state), error, note, result_message_id, finished_at, finished_at, job_id, *expected)
            + (() if held_by is None else (held_by,)),
        )
        return changed == 1

    async def get_job(self, job_id: str) -> JobRow | None:
        rows = list(await self._reader.execute_fetchall(f"{_SELECT_JOB} WHERE id = ?", (job_id,)))
        return job_from_row(rows[0]) if rows else None

    async def active_jobs(self) -> list[JobRow]:
        active = ", ".join(f"'{name}'" for name in ACTIVE_STATES)
        query = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE state IN ({active}) ORDER BY created_at, rowid"
        async with self._reader.execute(query) as cursor:
            return [job_from_row(row) async for row in cursor]

    async def recent_jobs(self, *, guild_id: int, user_id: int, limit: int) -> list[JobRow]:
        query = (
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE guild_id = ? AND user_id = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        )
        async with self._reader.execute(query, (guild_id, user_id, limit)) as cursor:
            return [job_from_row(row) async for row in cursor]

    async def last_request_at(self, *, guild_id: int, user_id: int) -> str | None:
        query = "SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = ? AND user_id = ?"
        async with self._reader.execute(query, (guild_id, user_id)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def member_record(self, *, guild_id: int, user_id: int, window: str) -> MemberRecord:
        query = f"""
            SELECT (SELECT settings FROM guild_settings WHERE guild_id = :guild),
                   EXISTS (SELECT 1 FROM bans WHERE guild_id = :guild AND user_id = :user),
                   (SELECT daily_limit FROM user_limits WHERE guild_id = :guild AND user_id = :user),
                   (SELECT COALESCE(SUM(amount), 0) FROM quota_grants
                    WHERE guild_id = :guild AND user_id = :user AND period = :window),
                   (SELECT COUNT(*) FROM quota_ledger
                    WHERE guild_id = :guild AND user_id = :user AND period = :window
                      AND state IN ('reserved', 'committed')),
                   (SELECT MAX(created_at) FROM quota_ledger WHERE guild_id = :guild AND user_id = :user),
                   (SELECT COUNT(*) FROM jobs WHERE user_id = :user AND state IN ({_ACTIVE})),
                   (SELECT COUNT(*) FROM jobs WHERE state = 'queued')
        """
        [row] = await self._reader.execute_fetchall(query, {"guild": guild_id, "user": user_id, "window": window})
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
        query = """
            SELECT COUNT(*) FROM quota_ledger
            WHERE guild_id = ? AND user_id = ? AND period = ? AND state IN ('reserved', 'committed')
        """
        return int(await self._value(query, guild_id, user_id, window) or 0)

    async def ledger_totals(self) -> dict[str, int]:
        totals = {"reserved": 0, "committed": 0, "refunded": 0}
        async with self._reader.execute("SELECT state, COUNT(*) FROM quota_ledger GROUP BY state") as cursor:
            async for state, count in cursor:
                totals[state] = count
        return totals

    async def job_counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIVE_STATES + FINAL_STATES, 0)
        async with self._reader.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state") as cursor:
            async for state, count in cursor:
                counts[state] = count
        return counts

    async def expired_pending_jobs(self, now: str) -> list[JobRow]:
        query = (
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
            " WHERE state = 'pending' AND approval_expires_at IS NOT NULL AND approval_expires_at < ?"
            " ORDER BY created_at"
        )
        async with self._reader.execute(query, (now,)) as cursor:
            return [job_from_row(row) async for row in cursor]

    # -- server policy --------------------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        async with self._reader.execute("SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def save_guild_settings(self, guild_id: int, settings: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                (guild_id, json.dumps(settings, sort_keys=True), utc_now()),
            )

    async def get_user_limit(self, guild_id: int, user_id: int) -> int | None:
        query = "SELECT daily_limit FROM user_limits WHERE guild_id = ? AND user_id = ?"
        async with self._reader.execute(query, (guild_id, user_id)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else None

    async def set_user_limit(self, guild_id: int, user_id: int, limit: int | None) -> None:
        async with self._transaction() as db:
            if limit is None:
                await db.execute("DELETE FROM user_limits WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            else:
                await db.execute(
                    "INSERT INTO user_limits (guild_id, user_id, daily_limit) VALUES (?, ?, ?)"
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET daily_limit = excluded.daily_limit",
                    (guild_id, user_id, limit),
                )

    async def add_quota_grant(self, *, guild_id: int, user_id: int, window: str, amount: int, granted_by: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO quota_grants (guild_id, user_id, period, amount, granted_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (guild_id, user_id, window, amount, granted_by, utc_now()),
            )

    async def granted_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        query = "SELECT COALESCE(SUM(amount), 0) FROM quota_grants WHERE guild_id = ? AND user_id = ? AND period = ?"
        async with self._reader.execute(query, (guild_id, user_id, window)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def ban(self, *, guild_id: int, user_id: int, reason: str | None, banned_by: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO bans (guild_id, user_id, reason, banned_by, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,"
                " banned_by = excluded.banned_by, created_at = excluded.created_at",
                (guild_id, user_id, reason, banned_by, utc_now()),
            )

    async def unban(self, *, guild_id: int, user_id: int) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            return cursor.rowcount == 1

    async def get_ban(self, guild_id: int, user_id: int) -> BanRow | None:
        query = "SELECT guild_id, user_id, reason, banned_by, created_at FROM bans WHERE guild_id = ? AND user_id = ?"
        async with self._reader.execute(query, (guild_id, user_id)) as cursor:
            row = await cursor.fetchone()
        return BanRow(*row) if row else None

    async def forget_user(self, user_id: int, *, guild_id: int | None, keep_window: str) -> int:
        scope, arguments = (
            ("user_id = ?", [user_id])
            if guild_id is None
            else (
                "user_id = ? AND guild_id = ?",
                [user_id, guild_id],
            )
        )
        final = ", ".join(f"'{name}'" for name in FINAL_STATES)
        async with self._transaction() as db:
            await db.execute(
                f"DELETE FROM quota_ledger WHERE {scope} AND period != ? AND state != 'reserved'",
                [*arguments, keep_window],
            )
            cursor = await db.execute(f"DELETE FROM jobs WHERE {scope} AND state IN ({final})", arguments)
            return cursor.rowcount

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _placeholders(values: Sized) -> str:
    """One `?` for each of `values`, for an `IN (...)`."""
    return ", ".join("?" * len(values))


def _statements(script: str) -> list[str]:
    """The statements of a migration script; a trigger's body (with its own semicolons) stays whole."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"an incomplete statement in a migration: {pending.strip()[:60]!r}")
    return statements


def _run_batch(db: sqlite3.Connection, steps: list[_Step]) -> list[tuple[Any, Exception | None]]:
    """On the write connection's thread: the steps in one transaction, each its result or its error. A step that
    raises is rolled back to its savepoint and the others still commit; if SQLite itself ended the transaction (a
    full disk, say), none do and the batch raises."""
    db.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[Any, Exception | None]] = []
    try:
        for step in steps:
            db.execute("SAVEPOINT step")
            try:
                outcomes.append((step(db), None))
            except Exception as error:
                if not db.in_transaction:
                    raise
                db.execute("ROLLBACK TO step")
                outcomes.append((None, error))
            db.execute("RELEASE step")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


async def _use_wal(connection: aiosqlite.Connection, attempts: int = 100) -> None:
    """Switches the file to WAL (it stays so). Switching needs the file to itself, and SQLite does not wait for
    that as it waits for a write lock: processes opening a new file together retry for a while."""
    for attempt in range(attempts):
        try:
            [(mode,)] = await connection.execute_fetchall("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)
            continue
        if str(mode).lower() in ("wal", "memory") or attempt == attempts - 1:  # ":memory:" has no WAL
            return
        await asyncio.sleep(0.05)  # answered with the old mode: someone else holds the file
