"""/settings blocklist: words and regular expressions refused in prompts, and the built-in list."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import Range

from cogs._replies import reply, text
from cogs.settings._common import SettingsCommands, on_off
from core.blocklist import BUILTIN_TERMS, BlockEntry, InvalidPattern, validate
from core.errors import InvalidInput
from core.policy import adding, removing


class BlocklistCommands(SettingsCommands):
    blocklist = app_commands.Group(name="blocklist", description="Words and patterns refused in prompts")

    @blocklist.command(name="add", description="Refuse prompts with this word, phrase or regular expression")
    @app_commands.describe(
        pattern="A word, a phrase or a regular expression", regex="Treat the pattern as a regular expression"
    )
    async def blocklist_add(
        self, interaction: discord.Interaction, pattern: Range[str, 1, 200], regex: bool = False
    ) -> None:
        assert interaction.guild_id is not None
        entry = _entry(pattern, regex)
        await self._update(interaction, blocklist=adding(entry))
        await self._done(interaction, "settings.blocklist_added", pattern=entry.pattern)

    @blocklist.command(name="remove", description="Remove a word or pattern from the blocklist")
    @app_commands.describe(
        pattern="The word, phrase or regular expression to remove", regex="It is a regular expression"
    )
    async def blocklist_remove(
        self, interaction: discord.Interaction, pattern: Range[str, 1, 200], regex: bool = False
    ) -> None:
        assert interaction.guild_id is not None
        entry = _entry(pattern, regex)
        policy = await self.bot.policy.get(interaction.guild_id)
        if entry not in policy.blocklist:
            raise InvalidInput("error.pattern_not_listed", pattern=entry.pattern)
        await self._update(interaction, blocklist=removing(entry))
        await self._done(interaction, "settings.blocklist_removed", pattern=entry.pattern)

    @blocklist.command(name="list", description="Show this server's blocklist")
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        policy = await self.bot.policy.get(interaction.guild_id)
        marker = text(interaction, "settings.regex_marker")
        entries = [f"`{e.pattern}`" + (f" ({marker})" if e.is_regex else "") for e in policy.blocklist]
        builtin = on_off(interaction, policy.builtin_blocklist)
        summary = text(interaction, "settings.blocklist_list", builtin=builtin, count=len(BUILTIN_TERMS))
        await reply(interaction, summary + "\n" + ("\n".join(entries) or "-"))

    @blocklist.command(name="builtin", description="Use the small built-in list of refused words")
    @app_commands.describe(enabled="On or off")
    async def blocklist_builtin(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._update(interaction, builtin_blocklist=enabled)
        await self._done(interaction, "settings.blocklist_builtin", state=on_off(interaction, enabled))


def _entry(pattern: str, regex: bool) -> BlockEntry:
    """The entry as the blocklist stores it; an unusable pattern is the admin's input error."""
    try:
        return validate(BlockEntry(pattern, is_regex=regex))
    except InvalidPattern as error:
        raise InvalidInput("error.bad_pattern", problem=str(error)) from None
