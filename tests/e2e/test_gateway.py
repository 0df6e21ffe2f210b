"""Gateway events are handled as they are read, not after everything already buffered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest

from tests.e2e.harness import running_harness

BURST = 20


async def test_a_burst_of_buffered_interactions_is_not_read_all_before_any_is_handled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_harness(tmp_path) as harness:
        bot = harness.bot
        assert bot is not None
        order: list[str] = []
        arrived, check = bot.acknowledgements.arrived, bot.tree.interaction_check

        def noting_reads() -> None:  # called as discord.py dispatches an interaction it has read
            order.append("read")
            arrived()

        async def noting_handlers(interaction: discord.Interaction[Any]) -> bool:
            order.append("handled")
            return await check(interaction)

        monkeypatch.setattr(bot.acknowledgements, "arrived", noting_reads)
        monkeypatch.setattr(bot.tree, "interaction_check", noting_handlers)
        users = [harness.discord.add_user(f"member {n}") for n in range(BURST)]
        for user in users:
            harness.discord.add_member(harness.discord.guild, user)
        # The fake writes the frames one after another without the event loop turning: the bot finds them all
        # buffered when it next reads the gateway.
        records = [await harness.discord.invoke("quota", user=user) for user in users]
        for record in records:
            await record.wait_for_ack()
        assert order.count("read") == order.count("handled") == BURST
        # Read but not yet handled, at worst: 1 when each handler starts before the next event is read (without the
        # turn of the loop after each event, discord.py read all it had: 16 here, then the other 4).
        ahead, most_ahead = 0, 0
        for step in order:
            ahead += 1 if step == "read" else -1
            most_ahead = max(most_ahead, ahead)
        assert most_ahead <= 2, "".join(step[0] for step in order)
