"""Nothing the bot sends pings anyone: every message carries allowed_mentions, and the bot-wide default is none.

Discord treats a message without `allowed_mentions` as "ping whatever the text mentions". The bot sets
`AllowedMentions.none()` as its default and passes it again wherever it echoes what members wrote (prompts,
reasons, /history), so that neither alone is a single point of failure; each is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import discord
import pytest

from tests.e2e.harness import BotHarness, outcome
from tests.fakes.discord import FakeMessage, FakeUser, InteractionRecord, Mentions, RequestRecord

ADMIN = discord.Permissions(manage_guild=True).value
MODERATOR = discord.Permissions(manage_messages=True).value
CHANNEL_MESSAGE, UPDATE_MESSAGE = 4, 7


def member(harness: BotHarness, name: str, *, permissions: int | None = None) -> FakeUser:
    user = harness.discord.add_user(name)
    harness.discord.add_member(harness.discord.guild, user, permissions=permissions)
    return user


def message_bodies(harness: BotHarness) -> Iterator[tuple[RequestRecord, dict[str, Any]]]:
    """Every message body the bot sent: channel posts and edits, interaction responses, followups and edits."""
    for request in harness.discord.requests:
        body = request.json
        if request.route and request.route.endswith("/callback"):
            body = (
                body.get("data")
                if isinstance(body, dict) and body.get("type") in (CHANNEL_MESSAGE, UPDATE_MESSAGE)
                else None
            )
        if isinstance(body, dict) and ("content" in body or "embeds" in body):
            yield request, body


def button(message: FakeMessage, prefix: str) -> str:
    return next(custom_id for custom_id in message.custom_ids if custom_id.startswith(prefix))


async def everything_that_echoes(harness: BotHarness, pings: str) -> list[InteractionRecord]:
    """A drawing, its buttons, /history, /quota, settings, a blocklist refusal, a rejection and an approval,
    with mentions in every text a member gave."""
    discord_ = harness.discord
    admin = member(harness, "admin", permissions=ADMIN)
    moderator = member(harness, "mod", permissions=MODERATOR)
    alice, bob = member(harness, "alice"), member(harness, "bob")

    async def configure(command: str, **options: object) -> None:
        assert (await outcome(await discord_.invoke(f"settings {command}", user=admin, options=options))).ephemeral

    log_channel = discord_.add_channel(name="mod-log")
    await configure("moderation log-channel", channel=log_channel)
    await configure("blocklist add", pattern="forbidden")

    result = await outcome(await harness.draw(alice, prompt=f"{pings} a fox"))
    assert result.attachments
    records = [
        await discord_.click(result, button(result, "job:details:"), user=alice),
        await discord_.click(result, button(result, "job:delete:"), user=bob),  # refused: not bob's
        await discord_.invoke("history", user=alice),
        await discord_.invoke("quota", user=alice),
        await harness.draw(alice, prompt=f"{pings} forbidden"),
    ]
    for record in records:
        await outcome(record)

    await configure("moderation approval", mode="all")
    for decision in ("reject", "approve"):
        record = await harness.draw(alice, prompt=f"{pings} to {decision}")
        request = await discord_.wait_for_channel_message(
            log_channel, lambda m: any(c.startswith("approval:") for c in m.custom_ids), timeout=5
        )
        click = await harness.decide(request, decision, moderator, pings)
        await outcome(click)
        records += [click, record]
        await outcome(record)
        await click.wait_for(lambda _click, request=request: not request.components, 5, "the request marked")

    await outcome(await discord_.click(result, button(result, "job:delete:"), user=alice))
    # The mod log is written in the background: wait for its last entries (the refusal and the approved job).
    await discord_.wait_for_channel_message(log_channel, lambda m: "Request refused" in str(m.embeds), timeout=5)
    await discord_.wait_for_channel_message(log_channel, lambda m: "to approve" in str(m.embeds), timeout=5)
    await harness.check_ledger()
    return records


@pytest.mark.parametrize("bot_default", [True, False], ids=["bot-default", "without-the-bot-default"])
async def test_nothing_the_bot_sends_pings_anyone(harness: BotHarness, bot_default: bool) -> None:
    role = harness.discord.add_role(name="everyone-we-know", mentionable=True)
    target = member(harness, "target")
    pings = f"@everyone @here <@{target.id}> <@&{role.id}>"
    assert harness.bot is not None
    if bot_default:
        assert harness.bot.allowed_mentions is not None
        assert harness.bot.allowed_mentions.to_dict() == {"parse": []}
    else:
        # Where the bot echoes what members wrote, it says "no pings" itself, not only through its default.
        harness.bot.allowed_mentions = None

    await everything_that_echoes(harness, pings)

    bodies = list(message_bodies(harness))
    assert len(bodies) > 20
    if bot_default:
        for request, body in bodies:
            assert body.get("allowed_mentions") == {"parse": []}, (request.method, request.route, body)
    sent = [m for m in harness.discord.world.messages.values() if m.author is harness.discord.bot_user]
    history = [m for m in sent if "last generations" in m.content]
    assert history and f"@everyone @here {target.mention}" in history[-1].content  # /history echoes the prompts
    assert [(m.id, m.content, m.mentions) for m in sent if m.mentions] == []
    assert all(m.mentions == Mentions() for m in sent)
