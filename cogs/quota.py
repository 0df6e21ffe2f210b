"""/quota: how many generations the caller has left today."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._guards import require_guild
from cogs._replies import reply, text

if TYPE_CHECKING:
    from bot import DoubaoBot


class Quota(commands.Cog):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="Show how many generations you have left today")
    async def quota(self, interaction: discord.Interaction) -> None:
        guild_id = require_guild(interaction)
        status = await self.bot.quota.status(guild_id=guild_id, user_id=interaction.user.id)
        await reply(
            interaction,
            text(
                interaction,
                "quota.status",
                used=status.used,
                limit=status.limit,
                remaining=status.remaining,
                resets=status.resets_at,
            ),
        )


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Quota(bot))
