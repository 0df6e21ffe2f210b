"""The bot's metrics end to end: Discord's 429s, answered by the fake Discord to the real discord.py client."""

from __future__ import annotations

from tests.e2e.harness import BotHarness, outcome


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
