"""Checks shared by the commands, raising errors the tree turns into messages."""

from __future__ import annotations

import discord
from discord import app_commands

from core.errors import InvalidInput


def require_guild(interaction: discord.Interaction) -> int:
    """The commands spend a guild's quota: in a DM they explain that they are for servers."""
    if interaction.guild_id is None:
        raise InvalidInput("error.guild_only")
    return interaction.guild_id


class NotAllowed(app_commands.CheckFailure):
    """A check that failed with a message for the user (a catalogue key)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def require_manage_guild(interaction: discord.Interaction) -> bool:
    """Checked in code too: a server may have widened who sees the settings commands."""
    if interaction.guild_id is None:
        raise NotAllowed("error.guild_only")
    if not interaction.permissions.manage_guild:
        raise NotAllowed("error.not_an_admin")
    return True
