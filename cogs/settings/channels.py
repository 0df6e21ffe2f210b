"""/settings channels: generate everywhere, or only in the listed channels."""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.settings._common import SettingsCommands
from core.policy import adding, removing


class ChannelCommands(SettingsCommands):
    channels = app_commands.Group(name="channels", description="Where members may generate")

    @channels.command(name="add", description="Allow generation in a channel (then only listed channels allow it)")
    @app_commands.describe(channel="The channel to allow")
    async def channels_add(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self._update(interaction, allowed_channels=adding(channel.id))
        await self._done(interaction, "settings.channel_added", channel=channel.mention)

    @channels.command(name="remove", description="Stop allowing generation in a listed channel")
    @app_commands.describe(channel="The channel to remove")
    async def channels_remove(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self._update(interaction, allowed_channels=removing(channel.id))
        await self._done(interaction, "settings.channel_removed", channel=channel.mention)

    @channels.command(name="clear", description="Allow generation in every channel again")
    async def channels_clear(self, interaction: discord.Interaction) -> None:
        await self._update(interaction, allowed_channels=())
        await self._done(interaction, "settings.channels_cleared")
