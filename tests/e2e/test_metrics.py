"""The bot's metrics end to end: Discord's 429s counted by the real discord.py client, and `python bot.py` with
METRICS_PORT serving /healthz and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import BotHarness, outcome
from tests.e2e.process import bot_process


def rate_limits(harness: BotHarness, scope: str) -> float | None:
    assert harness.bot is not None
    return harness.bot.metrics.registry.get_sample_value("doubao_discord_rate_limits_total", {"scope": scope})


async def test_discord_429s_on_interaction_webhooks_are_counted(harness: BotHarness) -> None:
    assert rate_limits(harness, "user") == 0
    harness.discord.rate_limit_next("PATCH /webhooks/*", retry_after=0.01)  # the status message's next edit
    message = await outcome(await harness.draw())
    assert message.attachments  # discord.py waited and retried
    assert rate_limits(harness, "user") == 1
    assert rate_limits(harness, "global") == 0


async def test_discord_429s_on_rest_calls_are_counted_by_scope(harness: BotHarness) -> None:
    assert harness.bot is not None
    harness.discord.rate_limit_next("GET /channels/{channel_id}", retry_after=0.01, global_=True)
    channel = await harness.bot.fetch_channel(harness.discord.general.id)
    assert channel.id == harness.discord.general.id
    assert rate_limits(harness, "global") == 1
    assert rate_limits(harness, "user") == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_bot_started_with_metrics_port_serves_healthz_and_metrics(tmp_path: Path) -> None:
    port = free_port()
    async with bot_process(tmp_path, env={"METRICS_PORT": str(port)}) as bot, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        await bot.start()
        await bot.discord.wait_for_commands_synced()

        async def get(path: str) -> tuple[int, str]:
            async with http.get(base + path) as response:
                return response.status, await response.text()

        status, body = await get("/healthz")
        for _ in range(100):  # READY is in; the bot may still be finishing its start
            if status == 200:
                break
            await asyncio.sleep(0.05)
            status, body = await get("/healthz")
        assert (status, body) == (200, '{"status": "ok", "discord": true, "store": true}'), bot.log()

        message = await outcome(await bot.discord.invoke("draw", prompt="a red fox in the snow"), timeout=20)
        assert message.attachments
        for _ in range(100):  # the job is settled just after its image is posted
            status, text = await get("/metrics")
            assert status == 200
            found = samples(text)
            if found["doubao_jobs", (("state", "done"),)] == 1:
                break
            await asyncio.sleep(0.05)
        assert found["doubao_jobs", (("state", "done"),)] == 1
        assert found["doubao_queue_depth", ()] == 0
        assert found["doubao_api_latency_seconds_count", (("endpoint", "draw"), ("outcome", "ok"))] == 1
        assert found["doubao_discord_rate_limits_total", (("scope", "user"),)] == 0

        assert await bot.terminate() == 0
        try:
            await get("/healthz")
        except aiohttp.ClientConnectionError:
            pass  # the server stopped with the bot
        else:
            raise AssertionError("the metrics server outlived the bot")
