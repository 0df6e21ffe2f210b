"""/forget-me: a member removes their generation history from the bot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._replies import reply, text

if TYPE_CHECKING:
    from bot import DoubaoBot


class Privacy(commands.Cog):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot

    @app_commands.command(name="forget-me", description="Delete your generation history and usage records")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        # Everywhere, not just in this server: it is the member's own data. Today's usage stays so that
        # forgetting cannot be used to reset a quota.
        deleted = await self.bot.jobs.forget_user(interaction.user.id, guild_id=None)
        await reply(interaction, text(interaction, "privacy.forgotten", count=deleted))


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Privacy(bot))
