"""/settings show and /settings language: the server's settings at a glance, and its language."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice

from cogs._replies import answer_in_server_language, language_of, reply
from cogs.settings._common import SettingsCommands, on_off
from core.i18n import LANGUAGES, t

if TYPE_CHECKING:
    from bot import DoubaoBot

LANGUAGE_CHOICES = [Choice(name="auto", value="auto")] + [Choice(name=code, value=code) for code in LANGUAGES]


class OverviewCommands(SettingsCommands):
    @app_commands.command(name="show", description="Show this server's settings")
    async def show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        policy = await self.bot.policy.get(interaction.guild_id)
        language = language_of(interaction)
        channels = ", ".join(f"<#{c}>" for c in policy.allowed_channels) or t(language, "settings.everywhere")
        roles = ", ".join(f"<@&{r}>: {n}" for r, n in policy.role_limits.items()) or "-"
        trusted = ", ".join(f"<@&{r}>" for r in policy.trusted_roles) or "-"
        lines = [
            t(language, "settings.show.channels", channels=channels),
            t(language, "settings.show.quota", limit=policy.daily_quota or self.bot.settings.daily_quota, roles=roles),
            t(language, "settings.show.cooldown", seconds=policy.cooldown_seconds),
            t(
                language,
                "settings.show.features",
                character=on_off(interaction, policy.character_enabled),
                upscale=on_off(interaction, policy.upscale_enabled),
                steps=policy.max_steps,
                side=policy.max_side,
            ),
            t(
                language,
                "settings.show.blocklist",
                count=len(policy.blocklist),
                builtin=on_off(interaction, policy.builtin_blocklist),
            ),
            t(
                language,
                "settings.show.modlog",
                channel=f"<#{policy.mod_log_channel_id}>" if policy.mod_log_channel_id else "-",
            ),
            t(
                language,
                "settings.show.approval",
                mode=policy.approval_mode.value,
                trusted=trusted,
                minutes=policy.approval_timeout_minutes,
            ),
            t(language, "settings.show.language", language=policy.language or "auto"),
        ]
        await reply(interaction, "\n".join(lines))

    @app_commands.command(name="language", description="The language of the mod log and of server-wide texts")
    @app_commands.choices(language=LANGUAGE_CHOICES)
    @app_commands.describe(language="auto follows the server's Discord language")
    async def language(self, interaction: discord.Interaction[DoubaoBot], language: str) -> None:
        assert interaction.guild_id is not None
        await self._update(interaction, language=None if language == "auto" else language)
        await answer_in_server_language(interaction)
        await self._done(interaction, "settings.language_set", language=language)
