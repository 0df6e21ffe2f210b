"""/settings moderation: bans, the mod-log channel, approval mode and trusted roles, forgetting a member."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from cogs.settings._common import SettingsCommands
from core.errors import InvalidInput
from core.policy import ApprovalMode, adding, removing

APPROVAL_CHOICES = [Choice(name=mode.value, value=mode.value) for mode in ApprovalMode]


class ModerationCommands(SettingsCommands):
    moderation = app_commands.Group(name="moderation", description="Bans, the mod log and approvals")

    @moderation.command(name="ban", description="Stop a member from generating in this server")
    @app_commands.describe(user="The member", reason="Why (shown in the mod log)")
    async def ban(
        self, interaction: discord.Interaction, user: discord.User, reason: Range[str, 0, 300] | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.policy.ban(
            guild_id=interaction.guild_id, user_id=user.id, reason=reason, banned_by=interaction.user.id
        )
        await self._done(interaction, "settings.banned", user=user.mention, reason=reason or "-")

    @moderation.command(name="unban", description="Let a banned member generate again")
    @app_commands.describe(user="The member")
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        assert interaction.guild_id is not None
        if not await self.bot.policy.unban(guild_id=interaction.guild_id, user_id=user.id):
            raise InvalidInput("error.not_banned", user=user.mention)
        await self._done(interaction, "settings.unbanned", user=user.mention)

    @moderation.command(name="log-channel", description="Where every job, refusal and change is logged (omit: off)")
    @app_commands.describe(channel="The mod-log channel; leave out to turn the mod log off")
    async def log_channel(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        assert interaction.guild_id is not None
        policy = await self.bot.policy.get(interaction.guild_id)
        if channel is None and policy.approval_mode is not ApprovalMode.OFF:
            raise InvalidInput("error.approval_needs_log")
        if channel is not None:
            mine = channel.permissions_for(channel.guild.me)
            if not (mine.view_channel and mine.send_messages and mine.embed_links):
                raise InvalidInput("error.log_channel_permissions", channel=channel.mention)
        await self._update(interaction, mod_log_channel_id=channel.id if channel else None)
        await self._done(interaction, "settings.log_channel", channel=channel.mention if channel else "-")

    @moderation.command(name="approval", description="Which requests wait for a moderator's approval")
    @app_commands.choices(mode=APPROVAL_CHOICES)
    @app_commands.describe(
        mode="off, all, or untrusted (members without a trusted role)",
        timeout_minutes="Minutes before a waiting request expires and is refunded",
    )
    async def approval(
        self, interaction: discord.Interaction, mode: str, timeout_minutes: Range[int, 1, 1440] | None = None
    ) -> None:
        assert interaction.guild_id is not None
        policy = await self.bot.policy.get(interaction.guild_id)
        chosen = ApprovalMode(mode)
        if chosen is not ApprovalMode.OFF and policy.mod_log_channel_id is None:
            raise InvalidInput("error.approval_needs_log")
        minutes = timeout_minutes or policy.approval_timeout_minutes
        await self._update(interaction, approval_mode=chosen, approval_timeout_minutes=minutes)
        await self._done(interaction, "settings.approval", mode=chosen.value, minutes=minutes)

    @moderation.command(name="trust", description="Members with this role skip approval in 'untrusted' mode")
    @app_commands.describe(role="The role whose members skip approval")
    async def trust(self, interaction: discord.Interaction, role: discord.Role) -> None:
        await self._update(interaction, trusted_roles=adding(role.id))
        await self._done(interaction, "settings.trusted", role=role.mention)

    @moderation.command(name="untrust", description="Remove a trusted role")
    @app_commands.describe(role="The role")
    async def untrust(self, interaction: discord.Interaction, role: discord.Role) -> None:
        await self._update(interaction, trusted_roles=removing(role.id))
        await self._done(interaction, "settings.untrusted", role=role.mention)

    @moderation.command(name="forget", description="Delete a member's generation history (e.g. one who left)")
    @app_commands.describe(user_id="The member's user id (it works for members who left)")
    async def forget(self, interaction: discord.Interaction, user_id: Range[str, 1, 20]) -> None:
        assert interaction.guild_id is not None
        if not user_id.isdigit():
            raise InvalidInput("error.bad_user_id")
        deleted = await self.bot.jobs.forget_user(int(user_id), guild_id=interaction.guild_id)
        await self._done(interaction, "settings.forgotten", user=f"<@{user_id}>", count=deleted)
