"""/settings quota: the server's daily quota, role and personal limits, grants, resets and the cooldown."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import Range

from cogs._render import quota_text
from cogs._replies import reply
from cogs.settings._common import MAX_LIMIT, Limit, SettingsCommands


class QuotaCommands(SettingsCommands):
    quota = app_commands.Group(name="quota", description="Daily limits, grants and cooldown")

    @quota.command(name="default", description="The server's daily generations per member")
    @app_commands.describe(limit="Generations per member per day (0: none)")
    async def quota_default(self, interaction: discord.Interaction, limit: Limit) -> None:
        await self._update(interaction, daily_quota=limit)
        await self._done(interaction, "settings.quota_default", limit=limit)

    @quota.command(name="role", description="A daily limit for a role (members get their highest); omit to remove")
    @app_commands.describe(role="The role", limit="Generations per day for members with this role")
    async def quota_role(
        self, interaction: discord.Interaction, role: discord.Role, limit: Limit | None = None
    ) -> None:
        def edit(limits: dict[int, int]) -> dict[int, int]:
            others = {other: value for other, value in limits.items() if other != role.id}
            return others if limit is None else others | {role.id: limit}

        await self._update(interaction, role_limits=edit)
        if limit is None:
            await self._done(interaction, "settings.quota_role_removed", role=role.mention)
        else:
            await self._done(interaction, "settings.quota_role", role=role.mention, limit=limit)

    @quota.command(name="set", description="A personal daily limit for a member; omit the limit to remove it")
    @app_commands.describe(user="The member", limit="Generations per day for this member")
    async def quota_user(
        self, interaction: discord.Interaction, user: discord.User, limit: Limit | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.quota.set_personal_limit(guild_id=interaction.guild_id, user_id=user.id, limit=limit)
        if limit is None:
            await self._done(interaction, "settings.quota_user_removed", user=user.mention)
        else:
            await self._done(interaction, "settings.quota_user", user=user.mention, limit=limit)

    @quota.command(name="grant", description="Give a member extra generations for today")
    @app_commands.describe(user="The member", amount="Extra generations for today")
    async def quota_grant(
        self, interaction: discord.Interaction, user: discord.User, amount: Range[int, 1, MAX_LIMIT]
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.quota.grant(
            guild_id=interaction.guild_id, user_id=user.id, amount=amount, granted_by=interaction.user.id
        )
        await self._done(interaction, "settings.quota_granted", user=user.mention, amount=amount)

    @quota.command(name="reset", description="Give a member back what they used today")
    @app_commands.describe(user="The member")
    async def quota_reset(self, interaction: discord.Interaction, user: discord.User) -> None:
        assert interaction.guild_id is not None
        given_back = await self.bot.quota.reset(
            guild_id=interaction.guild_id, user_id=user.id, reset_by=interaction.user.id
        )
        await self._done(interaction, "settings.quota_reset", user=user.mention, amount=given_back)

    @quota.command(name="show", description="A member's limit today, where it comes from, and what is left")
    @app_commands.describe(user="The member")
    async def quota_show(self, interaction: discord.Interaction, user: discord.Member) -> None:
        assert interaction.guild_id is not None
        roles = frozenset(role.id for role in user.roles)
        status = await self.bot.quota.status(guild_id=interaction.guild_id, user_id=user.id, role_ids=roles)
        await reply(interaction, quota_text(interaction, status, "quota.status_of", who=user.mention))

    @quota.command(name="cooldown", description="Seconds a member must wait between requests (0: none)")
    @app_commands.describe(seconds="Seconds between two requests of one member")
    async def quota_cooldown(self, interaction: discord.Interaction, seconds: Range[int, 0, 86400]) -> None:
        await self._update(interaction, cooldown_seconds=seconds)
        await self._done(interaction, "settings.cooldown", seconds=seconds)
