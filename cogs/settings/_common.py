"""What the /settings subgroups share: the bot's services, saving a change, and confirming it to the admin and
the mod log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord.app_commands import Range
from discord.ext import commands

from cogs._replies import reply, text
from core.policy import GuildPolicy

if TYPE_CHECKING:
    from bot import DoubaoBot

MAX_LIMIT = 1000
Limit = Range[int, 0, MAX_LIMIT]


def on_off(interaction: discord.Interaction, value: bool) -> str:
    return text(interaction, "settings.on" if value else "settings.off")


class SettingsCommands(commands.Cog):
    """The base of each subgroup's commands; the `Settings` group cog (`cogs/settings/__init__.py`) puts them
    together. A `Cog` so that discord.py's decorators accept its methods as command callbacks."""

    bot: DoubaoBot

    async def _update(self, interaction: discord.Interaction, **changes: Any) -> GuildPolicy:
        assert interaction.guild_id is not None
        return await self.bot.policy.update(interaction.guild_id, **changes)

    async def _done(self, interaction: discord.Interaction, key: str, **params: Any) -> None:
        """Confirms to the admin and records who changed what in the mod log (in the server's language)."""
        assert interaction.guild_id is not None
        said = text(interaction, key, **params)  # already in the server's language (see Settings.interaction_check)
        await reply(interaction, said)
        self.bot.modlog.later(self.bot.modlog.change(interaction.guild_id, admin_id=interaction.user.id, what=said))
