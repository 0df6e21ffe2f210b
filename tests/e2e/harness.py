"""The whole bot, wired as `bot.py` does, against the fake Discord and fake 302.ai, on a real SQLite file or, with
E2E_DATABASE_URL set (tests/e2e/conftest.py sets it per test), on that PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bot import DoubaoBot, build_bot
from core.config import Settings, load_settings
from storage import Store, open_store
from tests.fakes.discord import FakeDiscord, FakeMessage, FakeUser, InteractionRecord
from tests.fakes.doubao_server import FakeDoubao

API_KEY = "sk-e2e-secret-api-key-0123456789abcdef"
DATABASE_URL_VARIABLE = "E2E_DATABASE_URL"  # the database of the in-process bot; unset: a SQLite file


class BotHarness:
    """Starts, stops and restarts the real bot on the same database; the fakes outlive restarts.

    `database`: a SQLite file, or a database URL (postgresql://...)."""

    def __init__(
        self,
        discord: FakeDiscord,
        api: FakeDoubao,
        database: Path | str,
        env: dict[str, str],
        wrap_store: Callable[[Store], Store] | None = None,
    ) -> None:
        self.discord = discord
        self.wrap_store = wrap_store
        self.api = api
        self.database = database
        self.settings: Settings = load_settings(
            {
                "DISCORD_TOKEN": discord.bot_token,
                "AI302_API_KEY": API_KEY,
                "AI302_BASE_URL": api.base_url,
                "DATABASE_URL": f"sqlite:///{database}" if isinstance(database, Path) else database,
                "DAILY_QUOTA": "5",
                "API_TIMEOUT_SECONDS": "5",
                "API_MAX_ATTEMPTS": "2",
                "API_RETRY_BACKOFF_SECONDS": "0.01",
                "SHUTDOWN_GRACE_SECONDS": "2",
                "STATUS_EDIT_INTERVAL_SECONDS": "0.05",
            }
            | env
        )
        self.bot: DoubaoBot | None = None
        self.store: Store | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> DoubaoBot:
        assert self._stack is None, "already running"
        stack = contextlib.AsyncExitStack()
        try:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            self.store = await stack.enter_async_context(open_store(self.settings.database_url.reveal()))
            if self.wrap_store is not None:
                self.store = self.wrap_store(self.store)
            self.bot = build_bot(self.settings, session, self.store)
            await stack.enter_async_context(self.discord.running(self.bot))
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self.bot

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        self.bot = None
        self.store = None

    async def restart(self) -> DoubaoBot:
        await self.stop()
        return await self.start()

    async def draw(self, user: FakeUser | None = None, **options: Any) -> InteractionRecord:
        options.setdefault("prompt", "a red fox in the snow")
        return await self.discord.invoke("draw", user=user, **options)

    async def decide(
        self, request: FakeMessage, decision: str, moderator: FakeUser, reason: str = ""
    ) -> InteractionRecord:
        """A moderator's Approve or Reject (`decision`) on an approval request in the mod log, a rejection's
        `reason` given in its modal; the interaction that answers the moderator."""
        button = next(c for c in request.custom_ids if c.startswith(f"approval:{decision}:"))
        click = await self.discord.click(request, button, user=moderator)
        if decision == "approve":
            return click
        await click.wait_for_ack()
        assert click.modal is not None
        return await self.discord.submit_modal(click.modal["custom_id"], {"reason": reason}, user=moderator)

    async def check_ledger(self) -> dict[str, int]:
        """Nothing left reserved, and every charge is a posted image."""
        totals = await self.ledger()
        assert self.store is not None
        counts = await self.store.job_counts()
        assert totals["reserved"] == 0, totals
        assert totals["committed"] == counts["done"], (totals, counts)
        return totals

    async def ledger(self, timeout: float = 5.0) -> dict[str, int]:  # noqa: ASYNC109
        """The ledger totals once no reservation is left open (jobs settle just after their last message)."""
        assert self.store is not None
        return await settled_ledger(self.store, timeout)


async def settled_ledger(store: Store, timeout: float = 5.0) -> dict[str, int]:  # noqa: ASYNC109
    """The store's ledger totals once no reservation is left open, or as they are after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    totals = await store.ledger_totals()
    while totals["reserved"] and loop.time() < deadline:
        await asyncio.sleep(0.01)  # the store has no change notification to wait on
        totals = await store.ledger_totals()
    return totals


@contextlib.asynccontextmanager
async def running_harness(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    env_for: Callable[[FakeDiscord], dict[str, str]] | None = None,
    wrap_store: Callable[[Store], Store] | None = None,
    **discord_options: Any,
) -> AsyncIterator[BotHarness]:
    """A started bot; `env` adds settings, `env_for` settings that name things in the fake Discord, `wrap_store`
    puts something (a call counter) between the bot and its store. The database is E2E_DATABASE_URL's when set,
    else a SQLite file in `tmp_path`."""
    async with FakeDoubao(api_key=API_KEY) as api:
        discord = FakeDiscord(**discord_options)
        await discord.start()
        settings = (env or {}) | (env_for(discord) if env_for else {})
        database = os.environ.get(DATABASE_URL_VARIABLE) or tmp_path / "data" / "bot.sqlite3"
        harness = BotHarness(discord, api, database, settings, wrap_store)
        try:
            await harness.start()
            await discord.wait_for_commands_synced()
            yield harness
        finally:
            await harness.stop()
            await discord.close()
        discord.assert_no_violations()


STATUS_PREFIXES = ("⏳", "🎨", "🛡️")


def is_status(message: FakeMessage) -> bool:
    """A job's status line (queued, generating) rather than its outcome."""
    return message.content.startswith(STATUS_PREFIXES)


async def outcome(record: InteractionRecord, timeout: float = 10.0) -> FakeMessage:  # noqa: ASYNC109
    """The interaction's message once it shows how things ended: an image, a refusal or an error."""

    def ended(current: InteractionRecord) -> bool:
        message = current.message
        return message is not None and not message.loading and not is_status(message)

    await record.wait_for(ended, timeout, "an outcome")
    assert record.message is not None
    return record.message


def image_attachment(message: FakeMessage) -> bytes:
    assert message.attachments, f"no attachment on message {message.id}: {message.content!r}"
    return message.attachments[0].bytes
