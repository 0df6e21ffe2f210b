"""The fake's world: users, guilds, channels, roles, members, messages, and permission arithmetic."""

from __future__ import annotations

import logging
from typing import Any

import discord

from .gateway import shard_for
from .models import (
    DM,
    GUILD_TEXT,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Overwrite,
    Snowflakes,
    iso,
)

log = logging.getLogger(__name__)

ALL_PERMISSIONS = discord.Permissions.all().value
ADMINISTRATOR = discord.Permissions(administrator=True).value
VIEW_CHANNEL = discord.Permissions(view_channel=True).value

DEFAULT_EVERYONE_PERMISSIONS = discord.Permissions(
    create_instant_invite=True,
    add_reactions=True,
    stream=True,
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    mention_everyone=True,
    use_external_emojis=True,
    connect=True,
    speak=True,
    use_voice_activation=True,
    change_nickname=True,
    use_application_commands=True,
    create_public_threads=True,
    send_messages_in_threads=True,
    use_external_stickers=True,
).value

DEFAULT_BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
    use_application_commands=True,
).value

DM_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
    use_external_emojis=True,
    use_application_commands=True,
).value

Target = FakeRole | FakeMember | FakeUser

_GATEWAY_ONLY_GUILD_FIELDS = frozenset(
    {
        "joined_at",
        "large",
        "unavailable",
        "member_count",
        "members",
        "channels",
        "threads",
        "presences",
        "voice_states",
        "stage_instances",
        "guild_scheduled_events",
        "soundboard_sounds",
        "lazy",
    }
)


class World:
    """Everything the fake knows about; ids come from one snowflake generator."""

    def __init__(self, *, bot_name: str, base_url: str) -> None:
        self.ids = Snowflakes()
        self.base_url = base_url
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.application_id = self.ids.next()
        self.bot = FakeUser(id=self.application_id, name=bot_name, bot=True)
        self.users[self.bot.id] = self.bot
        self.owner = self.add_user("owner")
        self.bot_permissions = DEFAULT_BOT_PERMISSIONS

    # -- building -------------------------------------------------------------------------------

    def add_user(
        self, name: str, *, locale: str = "en-US", bot: bool = False, global_name: str | None = None
    ) -> FakeUser:
        user = FakeUser(id=self.ids.next(), name=name, locale=locale, bot=bot, global_name=global_name)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        locale: str = "en-US",
        owner: FakeUser | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int | None = None,
        channels: tuple[str, ...] = ("general",),
        shard: int | None = None,
        shard_count: int | None = None,
    ) -> FakeGuild:
        """A guild; with ``shard`` (of ``shard_count``), one whose events go to that shard."""
        owner = owner or self.owner
        if shard is None:
            guild_id = self.ids.next()
        elif shard_count is None:
            raise ValueError("a guild on a chosen shard needs the shard count too")
        else:
            guild_id = self.ids.on_shard(shard, shard_count)
        guild = FakeGuild(id=guild_id, name=name, owner_id=owner.id, locale=locale)
        guild.roles[guild.id] = FakeRole(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=int(everyone_permissions)
        )
        self.guilds[guild.id] = guild
        self.add_member(guild, owner)
        bot_role = self.add_role(
            guild,
            self.bot.name,
            permissions=self.bot_permissions if bot_permissions is None else int(bot_permissions),
            managed=True,
            bot_id=self.bot.id,
        )
        self.add_member(guild, self.bot, roles=[bot_role])
        for channel_name in channels:
            self.add_channel(guild, channel_name)
        return guild

    def add_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        type: int = GUILD_TEXT,
        topic: str | None = None,
        nsfw: bool = False,
        parent: FakeChannel | None = None,
    ) -> FakeChannel:
        channel = FakeChannel(
            id=self.ids.next(),
            name=name,
            type=type,
            guild_id=guild.id,
            position=len(guild.channels),
            topic=topic,
            nsfw=nsfw,
            parent_id=None if parent is None else parent.id,
        )
        guild.channels.append(channel)
        self.channels[channel.id] = channel
        return channel

    def add_role(
        self,
        guild: FakeGuild,
        name: str,
        *,
        permissions: int | discord.Permissions = 0,
        color: int = 0,
        mentionable: bool = False,
        hoist: bool = False,
        managed: bool = False,
        bot_id: int | None = None,
    ) -> FakeRole:
        perms = permissions.value if isinstance(permissions, discord.Permissions) else int(permissions)
        role = FakeRole(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=perms,
            position=len(guild.roles),
            color=color,
            mentionable=mentionable,
            hoist=hoist,
            managed=managed,
            bot_id=bot_id,
        )
        guild.roles[role.id] = role
        return role

    def add_member(
        self,
        guild: FakeGuild,
        user: FakeUser,
        *,
        roles: list[FakeRole] | tuple[FakeRole, ...] = (),
        permissions: int | discord.Permissions | None = None,
        nick: str | None = None,
    ) -> FakeMember:
        role_ids = [r.id for r in roles if r.id != guild.id]
        if permissions is not None:
            role_ids.append(self.add_role(guild, f"{user.name} permissions", permissions=permissions).id)
        member = guild.members.get(user.id)
        if member is None:
            member = guild.members[user.id] = FakeMember(guild_id=guild.id, user=user, nick=nick)
        member.role_ids += [r for r in role_ids if r not in member.role_ids]
        return member

    def set_overwrite(self, channel: FakeChannel, target: Target, *, allow: int = 0, deny: int = 0) -> None:
        kind = 0 if isinstance(target, FakeRole) else 1
        channel.overwrites = [o for o in channel.overwrites if o.id != target.id]
        channel.overwrites.append(Overwrite(id=target.id, type=kind, allow=int(allow), deny=int(deny)))

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.type == DM and channel.recipient is user:
                return channel
        channel = FakeChannel(id=self.ids.next(), name=user.name, type=DM, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        description: str | None = None,
    ) -> FakeAttachment:
        att_id = self.ids.next()
        attachment = FakeAttachment(
            id=att_id,
            filename=filename,
            data=data,
            url=f"{self.base_url}/attachments/{att_id}/{filename}",
            content_type=content_type,
            width=width,
            height=height,
            reported_size=size,
            description=description,
        )
        self.attachments[att_id] = attachment
        return attachment

    # -- looking up -----------------------------------------------------------------------------

    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return None if channel.guild_id is None else self.guilds[channel.guild_id]

    def member(self, guild: FakeGuild, user: FakeUser) -> FakeMember:
        """The user's membership, joining the guild on the fly (Discord only lets members interact)."""
        member = guild.members.get(user.id)
        return member if member is not None else self.add_member(guild, user)

    # -- permissions (Discord's algorithm: base, then @everyone/role/member overwrites) ----------

    def base_permissions(self, guild: FakeGuild, member: FakeMember) -> int:
        if member.id == guild.owner_id:
            return ALL_PERMISSIONS
        perms = guild.everyone.permissions
        for role_id in member.role_ids:
            perms |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def channel_permissions(self, member: FakeMember, channel: FakeChannel) -> int:
        guild = self.guilds[member.guild_id]
        perms = self.base_permissions(guild, member)
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        by_id = {o.id: o for o in channel.overwrites}
        if (everyone := by_id.get(guild.id)) is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            if (o := by_id.get(role_id)) is not None:
                allow, deny = allow | o.allow, deny | o.deny
        perms = (perms & ~deny) | allow
        if (own := by_id.get(member.id)) is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        return perms if perms & VIEW_CHANNEL else 0

    def permissions_in(self, user: FakeUser, channel: FakeChannel) -> int:
        """What ``user`` may do in ``channel`` (DMs: Discord's fixed DM set)."""
        guild = self.guild_of(channel)
        if guild is None:
            return DM_PERMISSIONS
        return self.channel_permissions(self.member(guild, user), channel)

    # -- payloads -------------------------------------------------------------------------------

    def channel_payload_for(self, channel: FakeChannel, user: FakeUser) -> dict[str, Any]:
        """A channel as it appears in an interaction: with the invoker's permissions."""
        data = channel.payload()
        data["permissions"] = str(self.permissions_in(user, channel))
        return data

    def guild_create_payload(self, guild: FakeGuild) -> dict[str, Any]:
        """A full GUILD_CREATE (what discord.py needs to build its cache)."""
        first_text = next((c for c in guild.channels if c.type == GUILD_TEXT), None)
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "application_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "nsfw": False,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.locale,
            "features": list(guild.features),
            "system_channel_id": None if first_text is None else str(first_text.id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "home_header": None,
            "region": "deprecated",
            "widget_enabled": False,
            "widget_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "joined_at": iso(guild.created_at),
            "large": False,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [m.payload() for m in guild.members.values()],
            "channels": [c.payload() for c in guild.channels],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "incidents_data": None,
            "lazy": True,
        }

    def ready_events(
        self, *, session_id: str, shard: list[int] | None, resume_url: str
    ) -> list[tuple[str, dict[str, Any]]]:
        """READY (guilds unavailable, as Discord sends them) then one GUILD_CREATE per guild: the guilds of
        ``shard`` ([id, count]), or all of them for an unsharded session."""
        guilds = [g for g in self.guilds.values() if shard is None or shard_for(g.id, shard[1]) == shard[0]]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": resume_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
            "_trace": ["fake-discord"],
        }
        if shard is not None:
            ready["shard"] = shard
        events = [("READY", ready)]
        events += [("GUILD_CREATE", self.guild_create_payload(g)) for g in guilds]
        return events

    def members_chunk(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The GUILD_MEMBERS_CHUNK answering a REQUEST_GUILD_MEMBERS (op 8), in one chunk."""
        guild = self.guilds.get(int(request["guild_id"]))
        if guild is None:
            return None
        members = list(guild.members.values())
        if request.get("user_ids"):
            wanted = {int(u) for u in request["user_ids"]}
            members = [m for m in members if m.id in wanted]
        elif request.get("query"):
            members = [m for m in members if m.user.name.startswith(request["query"])]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if request.get("nonce"):
            chunk["nonce"] = request["nonce"]
        return chunk

    def guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        """A guild as GET /guilds/{id} returns it (no members or channels)."""
        data = self.guild_create_payload(guild)
        return {k: v for k, v in data.items() if k not in _GATEWAY_ONLY_GUILD_FIELDS}

    def application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.bot.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self.bot.payload(),
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.owner.payload(),
            "team": None,
            "flags": 0,
            "flags_new": "0",
            "tags": [],
            "role_connections_verification_url": None,
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}, "1": {}},
        }
