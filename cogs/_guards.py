"""Checks shared by the commands, raising errors the tree turns into messages."""

from __future__ import annotations

import discord

from core.errors import InvalidInput


def require_guild(interaction: discord.Interaction) -> int:
    """The commands spend a guild's quota: in a DM they explain that they are for servers."""
    if interaction.guild_id is None:
        raise InvalidInput("error.guild_only")
    return interaction.guild_id
