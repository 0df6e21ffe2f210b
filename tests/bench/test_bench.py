"""The benchmark works end to end (its figures are not checked here: tests check correctness, it measures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import open_store
from storage.base import JobRow
from tests.bench import run
from tests.bench.integrity import check
from tests.fakes.discord import FakeDiscord


def test_quick_run_measures_everything_and_finds_every_job_settled_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run.main(["--quick", "--set", "STATUS_EDIT_INTERVAL_SECONDS=0.05", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for figure in (
        "start → ready",
        "ack p99, burst",
        "overhead p50",
        "throughput",
        "event-loop stall",
        "idle RSS",
        "bot CPU per burst request",
    ):
        assert figure in out
    assert "store overspend" in out and "PROBLEM" not in out
    assert out.startswith("machine: ") and "CPUs" in out.splitlines()[0]


async def test_a_charge_without_a_posted_image_is_a_problem(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    async with open_store(f"sqlite:///{database}") as store:
        job = JobRow(id="j1", guild_id=1, channel_id=1, user_id=1, command="draw", params={}, language="en")
        assert await store.create_job(job, window="2000-01-01", limit=1)
        assert await store.finish_job("j1", "done")
    problems = check(database, FakeDiscord(spec_path=None), records=[]).problems
    assert "1 charged but 0 images posted" in problems
    assert "1 job(s) no request of the benchmark asked for" in problems
