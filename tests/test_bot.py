"""Start-up: `python bot.py` stops with one clear line on bad settings, and registers commands by itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from bot import build_bot
from core.config import load_settings
from storage import open_store
from tests.e2e.harness import outcome, running_harness
from tests.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]


def run_bot(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # An empty working folder: no .env to pick up; only the variables given here.
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py")],
        cwd=tmp_path,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "t"}, "AI302_API_KEY"),
        ({"DISCORD_TOKEN": "t", "AI302_API_KEY": "k", "DAILY_QUOTA": "lots"}, "DAILY_QUOTA"),
        ({"DISCORD_TOKEN": "t", "AI302_API_KEY": "k", "DEV_GUILD_ID": "abc"}, "DEV_GUILD_ID"),
    ],
)
def test_bad_settings_stop_the_start_with_one_line(tmp_path: Path, env: dict[str, str], named: str) -> None:
    result = run_bot(tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_settings_come_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-dotenv\nAI302_API_KEY=from-dotenv\nMAX_CONCURRENT_JOBS=0\n")
    result = run_bot(tmp_path, {})
    assert result.returncode == 2 and "MAX_CONCURRENT_JOBS" in result.stderr
    assert "from-dotenv" not in result.stderr


def test_a_database_that_refuses_us_stops_the_start_with_one_line(
    tmp_path: Path, postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    wrong = postgres_url.replace(quote(postgres_cluster.password, safe=""), "not-the-password-4321")
    result = run_bot(tmp_path, {"DISCORD_TOKEN": "t", "AI302_API_KEY": "k", "DATABASE_URL": wrong})
    assert result.returncode == 1, result.stderr
    assert "password authentication failed" in result.stderr and "check DATABASE_URL" in result.stderr
    assert "not-the-password-4321" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_metrics_port_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_bot(tmp_path, {"DISCORD_TOKEN": "t", "AI302_API_KEY": "k", "METRICS_PORT": str(port)})
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0], result.stderr
    assert "check METRICS_PORT and METRICS_HOST" in errors[0]
    assert "Traceback" not in result.stderr


async def test_the_bot_draws_with_a_postgresql_database(tmp_path: Path, postgres_url: str) -> None:
    async with running_harness(tmp_path, env_for=lambda fake: {"DATABASE_URL": postgres_url}) as harness:
        message = await outcome(await harness.draw())
        assert message.attachments
        assert (await harness.check_ledger())["committed"] == 1


async def test_dev_guild_gets_the_commands_and_nothing_is_global(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env_for=lambda fake: {"DEV_GUILD_ID": str(fake.guild.id)}) as harness:
        names = {command["name"] for command in harness.discord.synced_commands(harness.discord.guild)}
        assert names == {"draw", "character", "quota", "history", "settings", "forget-me"}
        assert harness.discord.synced_commands() == []
        message = await outcome(await harness.draw())
        assert message.attachments


def test_debug_logging_keeps_interaction_tokens_out() -> None:
    import logging

    from bot import QUIET_LOGGERS, configure_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {name: logging.getLogger(name).level for name in QUIET_LOGGERS})
    try:
        configure_logging("DEBUG")
        assert root.level == logging.DEBUG
        assert all(logging.getLogger(name).getEffectiveLevel() == logging.INFO for name in QUIET_LOGGERS)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


async def test_the_bot_runs_jobs_with_the_documented_default_limits(tmp_path: Path) -> None:
    settings = load_settings(
        {"DISCORD_TOKEN": "t", "AI302_API_KEY": "k", "DATABASE_URL": f"sqlite:///{tmp_path}/bot.sqlite3"}
    )
    async with aiohttp.ClientSession() as session, open_store(settings.database_url.reveal()) as store:
        limits = build_bot(settings, session, store).jobs.limits
    assert (limits.max_per_user, limits.shutdown_grace, limits.max_concurrent, limits.max_queue) == (2, 30, 4, 100)
