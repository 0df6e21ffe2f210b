"""What every backend does the same way: job columns, timestamps, and turning rows into JobRow and back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from storage.base import ACTIVE_STATES, FINAL_STATES, JobRow

JOB_COLUMNS = tuple(field.name for field in fields(JobRow))
UPDATABLE_JOB_FIELDS = frozenset(JOB_COLUMNS) - {"id", "guild_id", "user_id", "command", "created_at", "updated_at"}


def utc_now() -> str:
    """ISO 8601 in UTC with milliseconds: one fixed format, so text order is time order in both backends."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def job_values(job: JobRow, *, created_at: str) -> tuple[Any, ...]:
    """The job's values in JOB_COLUMNS order, as stored (params as JSON text)."""
    values = {name: getattr(job, name) for name in JOB_COLUMNS}
    values.update(params=json.dumps(job.params), created_at=created_at, updated_at=created_at)
    return tuple(values[name] for name in JOB_COLUMNS)


def job_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Checks the fields update_job may set and encodes them as stored."""
    unknown = set(changes) - UPDATABLE_JOB_FIELDS
    if unknown:
        raise ValueError(f"cannot update job fields {sorted(unknown)}")
    return {name: json.dumps(value) if name == "params" else value for name, value in changes.items()}


def job_from_row(row: Iterable[Any]) -> JobRow:
    """A row selected as JOB_COLUMNS, in that order."""
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["params"] = json.loads(values["params"])
    return JobRow(**values)


def settle_state(final_state: str) -> str:
    """The ledger state a job's reservation ends in: only a posted image is charged."""
    return "committed" if final_state == "done" else "refunded"


def finish_arguments(state: str, expect: Iterable[str]) -> tuple[str, ...]:
    """Checks a finish_job call; returns the expected states."""
    if state not in FINAL_STATES:
        raise ValueError(f"{state!r} is not a final state")
    expected = tuple(str(name) for name in expect)
    if not set(expected) <= set(ACTIVE_STATES):
        raise ValueError(f"only active jobs can be finished, not {expected}")
    return expected
