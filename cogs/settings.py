"""/settings: per-server policy managed from Discord. Visible to Manage Server by default, checked in code too.

Every change answers the admin privately and is written to the mod log in the server's language.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from cogs._guards import require_manage_guild
from cogs._render import quota_text
from cogs._replies import answer_in_server_language, language_of, reply, text
from core.blocklist import BUILTIN_TERMS, BlockEntry, InvalidPattern, validate
from core.config import WATERMARK_POSITIONS, Watermark
from core.errors import InvalidInput
from core.i18n import LANGUAGES, t
from core.params import SIDE_RANGE, STEPS_RANGE
from core.policy import ApprovalMode, GuildPolicy, adding, removing

if TYPE_CHECKING:
    from bot import DoubaoBot

MAX_LIMIT = 1000
Limit = Range[int, 0, MAX_LIMIT]
POSITION_CHOICES = [Choice(name=name, value=value) for name, value in WATERMARK_POSITIONS.items()]
APPROVAL_CHOICES = [Choice(name=mode.value, value=mode.value) for mode in ApprovalMode]
LANGUAGE_CHOICES = [Choice(name="auto", value="auto")] + [Choice(name=code, value=code) for code in LANGUAGES]


def on_off(interaction: discord.Interaction, value: bool) -> str:
    return text(interaction, "settings.on" if value else "settings.off")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Settings(commands.GroupCog, group_name="settings", group_description="Server settings for image generation"):
    channels = app_commands.Group(name="channels", description="Where members may generate")
    quota = app_commands.Group(name="quota", description="Daily limits, grants and cooldown")
    features = app_commands.Group(name="features", description="What members may ask for")
    blocklist = app_commands.Group(name="blocklist", description="Words and patterns refused in prompts")
    moderation = app_commands.Group(name="moderation", description="Bans, the mod log and approvals")

    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[DoubaoBot]) -> bool:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        require_manage_guild(interaction)
        # Admin texts are in the server's language, like the mod log they are recorded in.
        assert interaction.guild_id is not None
        await answer_in_server_language(interaction)
        return True

    async def _update(self, interaction: discord.Interaction, **changes: Any) -> GuildPolicy:
        assert interaction.guild_id is not None
        return await self.bot.policy.update(interaction.guild_id, **changes)

    async def _done(self, interaction: discord.Interaction, key: str, **params: Any) -> None:
        """Confirms to the admin and records who changed what in the mod log (in the server's language)."""
        assert interaction.guild_id is not None
        said = text(interaction, key, **params)  # already in the server's language (see interaction_check)
        await reply(interaction, said)
        self.bot.modlog.later(self.bot.modlog.change(interaction.guild_id, admin_id=interaction.user.id, what=said))

    # -- overview and language ------------------------------------------------------------------

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

    # -- channels -------------------------------------------------------------------------------

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

    # -- quotas ---------------------------------------------------------------------------------

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

    # -- features -------------------------------------------------------------------------------

    @features.command(name="character", description="Allow /character (it takes photos of people)")
    @app_commands.describe(enabled="On or off")
    async def features_character(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._update(interaction, character_enabled=enabled)
        await self._done(interaction, "settings.character", state=on_off(interaction, enabled))

    @features.command(name="upscale", description="Allow upscaling (it costs more)")
    @app_commands.describe(enabled="On or off")
    async def features_upscale(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._update(interaction, upscale_enabled=enabled)
        await self._done(interaction, "settings.upscale", state=on_off(interaction, enabled))

    @features.command(name="max-steps", description="The most sampling steps members may ask for")
    @app_commands.describe(steps="Most sampling steps (1-50)")
    async def features_max_steps(
        self, interaction: discord.Interaction, steps: Range[int, STEPS_RANGE[0], STEPS_RANGE[1]]
    ) -> None:
        await self._update(interaction, max_steps=steps)
        await self._done(interaction, "settings.max_steps", steps=steps)

    @features.command(name="max-size", description="The longest side of an image in pixels (sizes are scaled down)")
    @app_commands.describe(pixels="Longest side in pixels (256-768)")
    async def features_max_size(
        self, interaction: discord.Interaction, pixels: Range[int, SIDE_RANGE[0], SIDE_RANGE[1]]
    ) -> None:
        await self._update(interaction, max_side=pixels)
        await self._done(interaction, "settings.max_size", pixels=pixels)

    @features.command(name="watermark", description="The visible watermark on this server's images")
    @app_commands.choices(position=POSITION_CHOICES)
    @app_commands.rename(text_="text")
    @app_commands.describe(
        enabled="On or off", text_="Watermark text (up to 50 characters)", position="Corner of the image"
    )
    async def features_watermark(
        self,
        interaction: discord.Interaction,
        enabled: bool,
        text_: app_commands.Range[str, 0, 50] | None = None,
        position: int = 0,
    ) -> None:
        mark = Watermark(enabled=enabled, text=(text_ or "").strip(), position=position)
        await self._update(interaction, watermark=mark)
        await self._done(interaction, "settings.watermark", state=on_off(interaction, enabled), text=mark.text or "-")

    # -- blocklist ------------------------------------------------------------------------------

    @blocklist.command(name="add", description="Refuse prompts with this word, phrase or regular expression")
    @app_commands.describe(
        pattern="A word, a phrase or a regular expression", regex="Treat the pattern as a regular expression"
    )
    async def blocklist_add(
        self, interaction: discord.Interaction, pattern: Range[str, 1, 200], regex: bool = False
    ) -> None:
        assert interaction.guild_id is not None
        try:
            entry = validate(BlockEntry(pattern, is_regex=regex))
        except InvalidPattern as error:
            raise InvalidInput("error.bad_pattern", problem=str(error)) from None
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
        try:
            entry = validate(BlockEntry(pattern, is_regex=regex))
        except InvalidPattern as error:
            raise InvalidInput("error.bad_pattern", problem=str(error)) from None
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

    # -- moderation -----------------------------------------------------------------------------

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


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Settings(bot))
