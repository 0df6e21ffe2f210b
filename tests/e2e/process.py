"""The bot as a separate process against the fakes: start it, kill it (a crash) or stop it (SIGTERM).

Several can share the fakes and a database, each running its own shards (SHARD_IDS/SHARD_COUNT in `env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.config import load_settings
from storage import Store, open_store
from tests.e2e.harness import API_KEY
from tests.fakes.discord import FakeDiscord
from tests.fakes.doubao_server import FakeDoubao

ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    """One bot process; `database_url` defaults to a SQLite file in `workdir`, its working folder."""

    def __init__(
        self,
        discord: FakeDiscord,
        api: FakeDoubao,
        workdir: Path,
        env: dict[str, str],
        *,
        database_url: str | None = None,
    ) -> None:
        self.discord = discord
        self.api = api
        self.workdir = workdir
        self.database_url = database_url or f"sqlite:///{workdir / 'bot.sqlite3'}"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "FAKE_DISCORD_API": discord.api_base,
            "FAKE_DISCORD_GATEWAY": discord.gateway_url,
            "DISCORD_TOKEN": discord.bot_token,
            "AI302_API_KEY": API_KEY,
            "AI302_BASE_URL": api.base_url,
            "DATABASE_URL": self.database_url,
            "API_TIMEOUT_SECONDS": "30",
            "STATUS_EDIT_INTERVAL_SECONDS": "0.05",
            "LOG_LEVEL": "DEBUG",
        } | env
        self.database_url = self.env["DATABASE_URL"]
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def shards(self) -> tuple[list[int], int]:
        """The shard ids this process runs, and the bot's shard count (the fake's recommendation when unset)."""
        settings = load_settings(self.env)
        count = settings.shard_count or self.discord.shard_count
        return list(settings.shard_ids or range(count)), count

    async def start(self) -> None:
        """Starts the process and waits until its shards' gateway sessions are READY."""
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        since = self.discord.gateway.identify_count
        log = (self.workdir / f"bot-{self.starts}.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.e2e.bot_process", cwd=self.workdir, env=self.env, stdout=log, stderr=log
        )
        log.close()
        shard_ids, shard_count = self.shards
        waiter = asyncio.create_task(self.discord.wait_for_shards(shard_ids, shard_count, since=since, timeout=20))
        exited = asyncio.create_task(self.process.wait())
        done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            waiter.cancel()
            raise AssertionError(f"the bot exited with {exited.result()}:\n{self.log()}")
        exited.cancel()
        waiter.result()

    def log(self) -> str:
        return (self.workdir / f"bot-{self.starts}.log").read_text(errors="replace")

    async def kill(self) -> None:
        """A crash: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, timeout: float = 20) -> int:  # noqa: ASYNC109
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[Store]:
        async with open_store(self.database_url) as store:
            yield store

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()


@contextlib.asynccontextmanager
async def bot_process(
    tmp_path: Path, env: dict[str, str] | None = None, **discord_options: Any
) -> AsyncIterator[BotProcess]:
    """The fakes and a bot process aimed at them (not started); `discord_options` go to FakeDiscord."""
    async with FakeDoubao(api_key=API_KEY) as api:
        discord = FakeDiscord(**discord_options)
        await discord.start()
        runner = BotProcess(discord, api, tmp_path, env or {})
        try:
            yield runner
        finally:
            await runner.close()
            await discord.close()
        discord.assert_no_violations()
