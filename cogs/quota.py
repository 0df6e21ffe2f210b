"""/quota: how many generations the caller has left today, and where their limit comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._render import quota_text
from cogs._replies import reply
from cogs._submit import requester_of

if TYPE_CHECKING:
    from bot import DoubaoBot


class Quota(commands.Cog):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="Show how many generations you have left today")
    async def quota(self, interaction: discord.Interaction) -> None:
        who = requester_of(interaction)
        status = await self.bot.quota.status(guild_id=who.guild_id, user_id=who.user_id, role_ids=who.role_ids)
        await reply(interaction, quota_text(interaction, status, "quota.status"))


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Quota(bot))
