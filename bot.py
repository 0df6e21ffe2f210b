"""Entry point: `python bot.py` loads the settings, opens the store and the HTTP session, and runs the bot."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from dotenv import load_dotenv

from cogs._gateway import yield_between_gateway_events
from cogs._job_events import DiscordJobEvents
from cogs._modlog import ModLog
from cogs._translator import CatalogueTranslator
from cogs._tree import BotTree
from core.admission import AdmissionGate
from core.config import ConfigError, Settings, load_settings
from core.doubao import DoubaoClient
from core.heap import collect_in_quiet_moments, freeze_long_lived_objects
from core.job import JobLimits
from core.jobs import JobService
from core.metrics import Metrics
from core.ops_server import OpsServerError, ops_server
from core.policy import PolicyService
from core.priority import AcknowledgementsFirst
from core.quota import QuotaService
from storage import Store, StoreUnavailable, open_store

log = logging.getLogger(__name__)

QUIET_LOGGERS = ("discord.http", "discord.webhook", "discord.gateway")
QUIET_BEFORE_FULL_COLLECTION = 1.0  # seconds without a request
EXTENSIONS = ("cogs.generate", "cogs.quota", "cogs.jobs", "cogs.settings", "cogs.privacy")


class DoubaoBot(commands.AutoShardedBot):
    """The Discord side: holds the services the cogs call, loads the cogs, keeps the commands in sync.

    Runs the shards of SHARD_IDS out of SHARD_COUNT, or, with neither set, all of Discord's recommended number.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        policy: PolicyService,
        quota: QuotaService,
        gate: AdmissionGate,
        jobs: JobService,
        metrics: Metrics | None = None,
    ) -> None:
        metrics = metrics or Metrics()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents(guilds=True),
            tree_cls=BotTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **_shard_options(settings),
            http_trace=metrics.discord_trace(),  # counts Discord's 429s (REST and interaction webhooks)
        )
        self.settings = settings
        self.store = store
        self.policy = policy
        self.quota = quota
        self.gate = gate
        self.jobs = jobs
        self.metrics = metrics
        self.modlog = ModLog(self)
        self.acknowledgements = AcknowledgementsFirst()

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        if event_name == "interaction":  # as the gateway event is read, before its handler runs
            self.acknowledgements.arrived()
        super().dispatch(event_name, *args, **kwargs)

    async def setup_hook(self) -> None:
        yield_between_gateway_events()
        await self.tree.set_translator(CatalogueTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.jobs.start(DiscordJobEvents(self, self.modlog, edit_interval=self.settings.status_edit_interval))
        if self.syncs_commands:
            await self.sync_commands()

    @property
    def syncs_commands(self) -> bool:
        """One process registers the slash commands: the one running shard 0 (or all shards)."""
        return self.settings.shard_ids is None or 0 in self.settings.shard_ids

    async def sync_commands(self) -> None:
        """Registers the slash commands, only when they differ from what was last registered."""
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        translator = self.tree.translator
        assert translator is not None
        payload = [
            await command.get_translated_payload(self.tree, translator)
            for command in self.tree.get_commands(guild=guild)
        ]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = f"commands:{self.application_id}:{guild.id if guild else 'global'}"
        if await self.store.get_meta(key) == digest:
            log.info("slash commands unchanged, not syncing")
            return
        synced = await self.tree.sync(guild=guild)
        await self.store.set_meta(key, digest)
        log.info("synced %d slash commands %s", len(synced), f"to guild {guild.id}" if guild else "globally")

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        """Lets running jobs finish (within the grace period) and settles the rest before disconnecting."""
        await self.jobs.shutdown()
        await super().close()


def _shard_options(settings: Settings) -> dict[str, Any]:
    """Only what is set: discord.py asks Discord for the recommended shard count when none is given."""
    options: dict[str, Any] = {}
    if settings.shard_count is not None:
        options["shard_count"] = settings.shard_count
    if settings.shard_ids is not None:
        options["shard_ids"] = list(settings.shard_ids)
    return options


def build_bot(settings: Settings, session: aiohttp.ClientSession, store: Store) -> DoubaoBot:
    """Wires the services together; the caller owns the session and the store."""
    metrics = Metrics()
    client = DoubaoClient(
        session,
        api_key=settings.ai302_api_key.reveal(),
        base_url=settings.ai302_base_url,
        timeout=settings.api_timeout,
        max_attempts=settings.api_max_attempts,
        backoff_base=settings.api_retry_backoff,
        metrics=metrics,
    )
    policy = PolicyService(store)
    quota = QuotaService(store, daily_limit=settings.daily_quota)
    jobs = JobService(
        store=store,
        quota=quota,
        client=client,
        session=session,
        extras=settings.api_extras,
        limits=JobLimits(
            max_concurrent=settings.max_concurrent_jobs,
            max_concurrent_here=settings.max_concurrent_jobs_per_process,
            max_per_user=settings.max_jobs_per_user,
            max_queue=settings.max_queue,
            shutdown_grace=settings.shutdown_grace,
            approval_sweep_interval=settings.approval_sweep_interval,
            lease_seconds=settings.lease_seconds,
        ),
        metrics=metrics,
    )
    gate = AdmissionGate(store, quota, jobs)
    return DoubaoBot(settings=settings, store=store, policy=policy, quota=quota, gate=gate, jobs=jobs, metrics=metrics)


async def run(settings: Settings) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_store(settings.database_url.reveal(), pool_size=settings.database_pool_size) as store,
        build_bot(settings, session, store) as bot,
        ops_server(settings, metrics=bot.metrics, store=store, ready=lambda: bot.is_ready() and not bot.is_closed()),
    ):
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _stop, bot, signal.Signals(signum).name)
        _background(_tune_garbage_collection(bot), "garbage-collection")
        await bot.start(settings.discord_token.reveal())


async def _tune_garbage_collection(bot: DoubaoBot) -> None:
    """For the whole process (a test's bots share their heap with the test run, so not there): freezes what start-up
    left, then runs the full passes when the bot is quiet."""
    await bot.wait_until_ready()  # start-up is done and the guilds are cached
    freeze_long_lived_objects()
    await collect_in_quiet_moments(lambda: bot.acknowledgements.quiet_for(QUIET_BEFORE_FULL_COLLECTION))


_background_tasks: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to tasks


def _background(work: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.get_running_loop().create_task(work, name=name)
    _background_tasks.add(task)
    task.add_done_callback(_finished)


def _stop(bot: DoubaoBot, signal_name: str) -> None:
    log.info("%s received: finishing running jobs, then stopping", signal_name)
    _background(bot.close(), "graceful-close")


def _finished(task: asyncio.Task[None]) -> None:
    _background_tasks.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s failed", task.get_name(), exc_info=error)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed (not on Windows): the same asyncio API, with the loop, sockets and timers
    in libuv; in a burst of interactions the bot spent about a tenth less CPU on each."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def configure_logging(level_name: str) -> None:
    level = getattr(logging, level_name)
    discord.utils.setup_logging(level=level, root=True)
    # At DEBUG these log request URLs and payloads, which carry interaction tokens.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def main() -> int:
    load_dotenv(".env")  # the working folder, as the README says (not the folder of this file)
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        run_event_loop(run(settings))
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN")
        return 1
    except StoreUnavailable as error:
        log.error("%s: check DATABASE_URL", error)
        return 1
    except OpsServerError as error:
        log.error("/metrics: %s: check METRICS_PORT and METRICS_HOST", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
