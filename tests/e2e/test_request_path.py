"""What one /draw costs the bot: a few store calls, most of them after the acknowledgement."""

from __future__ import annotations

from pathlib import Path

import discord

from tests.e2e.harness import outcome, running_harness
from tests.e2e.store_calls import CountingStore, counting

ADMIN = discord.Permissions(manage_guild=True).value


async def test_a_draw_takes_at_most_ten_store_calls_and_three_before_the_defer(tmp_path: Path) -> None:
    async with running_harness(tmp_path, wrap_store=counting) as harness:
        store = harness.store
        assert isinstance(store, CountingStore)
        alice = harness.discord.add_user("alice")
        harness.discord.add_member(harness.discord.guild, alice)
        store.reset()
        record = await harness.draw(alice)
        assert (await outcome(record)).attachments
        await harness.check_ledger()
        # Not counted: the test's own reads, and `publish`, which one process with SQLite answers in memory.
        calls = [name for name in store.names() if name not in ("ledger_totals", "job_counts", "publish")]
        deferred_at = record.callbacks[0][0]
        before = store.names(until=deferred_at)
        assert len(before) <= 3, before
        assert len(calls) <= 10, calls


async def test_the_image_shows_the_limit_the_members_roles_give(tmp_path: Path) -> None:
    async with running_harness(tmp_path) as harness:
        admin = harness.discord.add_user("admin")
        harness.discord.add_member(harness.discord.guild, admin, permissions=ADMIN)
        artists = harness.discord.add_role(name="artists")
        alice = harness.discord.add_user("alice")
        harness.discord.add_member(harness.discord.guild, alice, roles=[artists])
        for command, options in (("quota default", {"limit": 1}), ("quota role", {"role": artists, "limit": 3})):
            await outcome(await harness.discord.invoke(f"settings {command}", user=admin, options=options))
        quota = await outcome(await harness.discord.invoke("quota", user=alice))
        assert "of **3**" in quota.content
        result = await outcome(await harness.draw(alice))
        shown = {field["name"]: field["value"] for field in result.embeds[0]["fields"]}
        assert shown["Left today"] == "2 of 3", shown
