"""Self-tests of the fake Discord's sharding: one gateway session per shard, each guild's events to its shard."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from tests.fakes.discord import FakeDiscord, FakeGuild
from tests.fakes.discord.gateway import HELLO, IDENTIFY, INVALID_SHARD, shard_for


class ShardBot(commands.AutoShardedBot):
    """Says which shard an interaction came through; only the bot running shard 0 registers the command."""

    def __init__(self, **options: Any) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents(guilds=True), guild_ready_timeout=0.05, **options)
        self.seen: list[discord.Interaction] = []

        @self.tree.command(description="Which shard answers")
        async def where(interaction: discord.Interaction) -> None:
            self.seen.append(interaction)
            shard = None if interaction.guild is None else interaction.guild.shard_id
            await interaction.response.send_message(f"shard {shard}")

    async def setup_hook(self) -> None:
        if self.shard_ids is None or 0 in self.shard_ids:
            await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s wait between the shards of one process (the fake has no IDENTIFY rate limit)."""


def guild_ids(bot: discord.Client) -> set[int]:
    return {guild.id for guild in bot.guilds}


def on_shard(fake: FakeDiscord, shard_id: int, count: int = 2) -> set[int]:
    return {guild.id for guild in fake.world.guilds.values() if shard_for(guild.id, count) == shard_id}


@contextlib.asynccontextmanager
async def two_shard_processes(fake: FakeDiscord) -> AsyncIterator[tuple[ShardBot, ShardBot]]:
    """Shard 0 and shard 1 of 2 as two separate clients, as two processes would run them."""
    async with (
        fake.running(ShardBot(shard_ids=[0], shard_count=2)) as first,
        fake.running(ShardBot(shard_ids=[1], shard_count=2)) as second,
    ):
        await fake.wait_for_commands_synced()
        assert isinstance(first, ShardBot) and isinstance(second, ShardBot)
        yield first, second


def test_guilds_can_be_made_on_a_chosen_shard() -> None:
    fake = FakeDiscord(shard_count=3)
    made: list[FakeGuild] = []
    for _ in range(4):
        for shard_id in (2, 0, 1, 1):
            guild = fake.add_guild(shard=shard_id)
            assert shard_for(guild.id, 3) == shard_id
            made.append(guild)
    assert shard_for(fake.add_guild(shard=1, shard_count=4).id, 4) == 1
    ids = [guild.id for guild in made]
    assert ids == sorted(set(ids)), "snowflakes stay unique and increasing"
    assert fake.world.ids.next() > ids[-1]
    with pytest.raises(ValueError):
        fake.add_guild(shard=3)


async def test_each_shard_gets_its_own_guilds_and_their_interactions(fake_discord: FakeDiscord) -> None:
    zero, one = (
        fake_discord.add_guild("Zero", shard=0, shard_count=2),
        fake_discord.add_guild("One", shard=1, shard_count=2),
    )
    async with two_shard_processes(fake_discord) as (first, second):
        assert guild_ids(first) == on_shard(fake_discord, 0) and zero.id in guild_ids(first)
        assert guild_ids(second) == on_shard(fake_discord, 1) and one.id in guild_ids(second)
        ready = {
            shard_id: next(data for event, data in session.dispatched() if event == "READY")
            for shard_id in (0, 1)
            if (session := fake_discord.gateway.shard_session(shard_id, 2)) is not None
        }
        assert ready[0]["shard"] == [0, 2] and {int(g["id"]) for g in ready[0]["guilds"]} == on_shard(fake_discord, 0)
        assert ready[1]["shard"] == [1, 2] and {int(g["id"]) for g in ready[1]["guilds"]} == on_shard(fake_discord, 1)

        answer = await (await fake_discord.invoke("where", guild=one)).wait_for_message()
        assert answer.content == "shard 1" and len(second.seen) == 1 and not first.seen
        answer = await (await fake_discord.invoke("where", guild=zero)).wait_for_message()
        assert answer.content == "shard 0" and len(first.seen) == 1
        answer = await (await fake_discord.invoke("where", guild=None)).wait_for_message()  # DMs: shard 0
        assert answer.content == "shard None" and len(first.seen) == 2 and len(second.seen) == 1

        late = fake_discord.add_guild("Late", shard=1, shard_count=2)
        fake_discord.add_channel(late, "art")
        answer = await (await fake_discord.invoke("where", channel=late.channel("art"))).wait_for_message()
        assert answer.content == "shard 1"
        assert late.id in guild_ids(second) and late.id not in guild_ids(first)
        assert [c.name for c in second.get_guild(late.id).text_channels] == ["general", "art"]  # type: ignore[union-attr]
    assert len(fake_discord.command_syncs) == 1


async def test_a_shard_that_reconnects_replaces_only_its_own_session(fake_discord: FakeDiscord) -> None:
    one = fake_discord.add_guild("One", shard=1, shard_count=2)
    async with fake_discord.running(ShardBot(shard_ids=[0], shard_count=2)) as first:
        await fake_discord.wait_for_commands_synced()
        async with fake_discord.running(ShardBot(shard_ids=[1], shard_count=2)):
            pass
        zero_session = fake_discord.gateway.shard_session(0, 2)
        async with fake_discord.running(ShardBot(shard_ids=[1], shard_count=2)) as again:
            assert fake_discord.gateway.shard_session(0, 2) is zero_session
            assert len(fake_discord.gateway.sessions) == 2
            assert (await (await fake_discord.invoke("where", guild=one)).wait_for_message()).content == "shard 1"
            assert isinstance(again, ShardBot) and len(again.seen) == 1
        assert isinstance(first, ShardBot) and not first.seen
    assert fake_discord.gateway.identify_count == 3


async def test_events_for_a_shard_without_a_session_are_refused_clearly(fake_discord: FakeDiscord) -> None:
    one = fake_discord.add_guild("One", shard=1, shard_count=2)
    async with fake_discord.running(ShardBot(shard_ids=[0], shard_count=2)):
        await fake_discord.wait_for_commands_synced()
        with pytest.raises(AssertionError, match="no session receives it"):
            await fake_discord.invoke("where", guild=one)


async def test_one_process_runs_the_recommended_shards() -> None:
    async with FakeDiscord(shard_count=2) as fake:
        zero, one = fake.add_guild("Zero", shard=0), fake.add_guild("One", shard=1)
        async with fake.running(ShardBot()) as bot:
            await fake.wait_for_commands_synced()
            assert isinstance(bot, ShardBot) and bot.shard_count == 2 and set(bot.shards) == {0, 1}
            assert guild_ids(bot) == set(fake.world.guilds)
            assert (await (await fake.invoke("where", guild=one)).wait_for_message()).content == "shard 1"
            assert (await (await fake.invoke("where", guild=zero)).wait_for_message()).content == "shard 0"
            assert {session.key for session in fake.gateway.sessions.values()} == {(0, 2), (1, 2)}
        fake.assert_no_violations()


async def raw_session(fake: FakeDiscord, shard: list[int] | None) -> tuple[list[dict[str, Any]], int | None]:
    """IDENTIFY on a bare websocket; returns the dispatches up to the last GUILD_CREATE, and the close code."""
    identify: dict[str, Any] = {"token": fake.bot_token, "intents": 1, "properties": {}}
    if shard is not None:
        identify["shard"] = shard
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        assert (await ws.receive_json())["op"] == HELLO
        await ws.send_json({"op": IDENTIFY, "d": identify})
        while True:
            message = await ws.receive(timeout=5)
            if message.type is not aiohttp.WSMsgType.TEXT:
                return received, ws.close_code
            received.append(json.loads(message.data))
            guild_creates = sum(1 for payload in received if payload["t"] == "GUILD_CREATE")
            expected = len(received[0]["d"]["guilds"]) if received[0]["t"] == "READY" else -1
            if guild_creates == expected:
                return received, None


async def test_an_unsharded_session_gets_every_guild_and_a_bad_shard_is_refused(fake_discord: FakeDiscord) -> None:
    for shard_id in (0, 1, 1):
        fake_discord.add_guild(shard=shard_id, shard_count=2)
    everything, _ = await raw_session(fake_discord, None)
    assert {int(g["id"]) for g in everything[0]["d"]["guilds"]} == set(fake_discord.world.guilds)
    assert "shard" not in everything[0]["d"]
    only_one, _ = await raw_session(fake_discord, [1, 2])
    assert {int(g["id"]) for g in only_one[0]["d"]["guilds"]} == on_shard(fake_discord, 1)
    assert {int(p["d"]["id"]) for p in only_one[1:]} == on_shard(fake_discord, 1)
    for bad in ([2, 2], [0, 0], [-1, 2], "0,2"):
        received, code = await raw_session(fake_discord, bad)  # type: ignore[arg-type]
        assert (received, code) == ([], INVALID_SHARD)
    assert fake_discord.gateway.identify_count == 2
