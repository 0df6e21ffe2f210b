"""What one /draw costs the bot: a few store calls, most of them after the acknowledgement."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import discord

from storage import Store
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


class HoldingStore(CountingStore):
    """Holds the admission read of one member until released: that member's request stays unacknowledged."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.held_user_id: int | None = None
        self.release = asyncio.Event()

    async def member_record(self, **kwargs: Any) -> Any:
        if kwargs["user_id"] == self.held_user_id:
            await self.release.wait()
        return await self.__getattr__("member_record")(**kwargs)


async def test_a_new_job_is_created_only_once_no_other_request_waits_for_its_acknowledgement(
    tmp_path: Path,
) -> None:
    def holding(store: Store) -> Store:
        return HoldingStore(store)  # type: ignore[return-value]  # a transparent proxy of the Store protocol

    async with running_harness(tmp_path, wrap_store=holding) as harness:
        store = harness.store
        assert isinstance(store, HoldingStore)
        bob = harness.discord.add_user("bob")
        harness.discord.add_member(harness.discord.guild, bob)
        alice = harness.discord.add_user("alice")
        harness.discord.add_member(harness.discord.guild, alice)
        store.held_user_id = bob.id
        bobs = await harness.draw(bob, prompt="bob's fox")  # waits for its admission: not acknowledged
        alices = await harness.draw(alice, prompt="alice's fox")
        await alices.wait_for_ack()
        await asyncio.sleep(0.2)  # time enough for alice's job to be created, were it not waiting
        assert "create_job" not in store.names() and not bobs.acknowledged
        store.release.set()
        await bobs.wait_for_ack()
        bob_acknowledged_at = bobs.callbacks[0][0]
        assert store.names(until=bob_acknowledged_at).count("create_job") == 0
        for record in (alices, bobs):
            assert (await outcome(record)).attachments
        await harness.check_ledger()
