"""/settings: per-server policy managed from Discord. Visible to Manage Server by default, checked in code too.

Every change answers the admin privately and is written to the mod log in the server's language. Each subgroup's
commands live in their own module; the `Settings` cog puts them together into one command group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._guards import require_manage_guild
from cogs._replies import answer_in_server_language
from cogs.settings.blocklist import BlocklistCommands
from cogs.settings.channels import ChannelCommands
from cogs.settings.features import FeatureCommands
from cogs.settings.moderation import ModerationCommands
from cogs.settings.overview import OverviewCommands
from cogs.settings.quota import QuotaCommands

if TYPE_CHECKING:
    from bot import DoubaoBot


# discord.py gathers a cog's commands from its last base class to its first: listed in this order, /settings
# offers channels, quota, features, blocklist, moderation, then show and language, as it always has.
@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Settings(
    OverviewCommands,
    ModerationCommands,
    BlocklistCommands,
    FeatureCommands,
    QuotaCommands,
    ChannelCommands,
    commands.GroupCog,
    group_name="settings",
    group_description="Server settings for image generation",
):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[DoubaoBot]) -> bool:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        require_manage_guild(interaction)
        # Admin texts are in the server's language, like the mod log they are recorded in.
        assert interaction.guild_id is not None
        await answer_in_server_language(interaction)
        return True


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Settings(bot))
