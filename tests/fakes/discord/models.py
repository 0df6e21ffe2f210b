"""Records of the fake Discord's world: snowflakes, users, guilds, channels, roles, messages, requests."""

from __future__ import annotations

import datetime as dt
import logging
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1420070400000

EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

# Channel types used by the fake.
GUILD_TEXT = 0
DM = 1
GUILD_VOICE = 2
GUILD_CATEGORY = 4


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A valid PNG of one colour (stdlib only), for attachments that image code must be able to open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class Snowflakes:
    """Strictly increasing snowflakes carrying the current time, as Discord's do."""

    def __init__(self) -> None:
        self._last = 0
        self._dated = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return self._last

    def on_shard(self, shard_id: int, shard_count: int) -> int:
        """The next snowflake whose guild events go to shard ``shard_id`` of ``shard_count``: its millisecond
        (``id >> 22``) is moved up, by less than ``shard_count`` ms, to one with that remainder."""
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"shard {shard_id} does not exist among {shard_count}")
        candidate = self.next()
        millisecond = (candidate >> 22) + (shard_id - (candidate >> 22)) % shard_count
        if millisecond != candidate >> 22:
            self._last = candidate = millisecond << 22
        return candidate

    def dated(self, when: float) -> int:
        """A unique snowflake carrying the Unix time ``when``, which may be in the past.

        Its low bits start at 2**21, far above what ``next()`` reaches within one millisecond.
        """
        self._dated += 1
        return ((int(when * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 21) | (self._dated % (1 << 21))


@dataclass(eq=False)
class FakeUser:
    """A Discord user (the bot is one too)."""

    id: int
    name: str
    locale: str = "en-US"
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class FakeRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return "@everyone" if self.id == self.guild_id else f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    """A channel permission overwrite (type 0 = role, 1 = member)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(eq=False)
class FakeChannel:
    """A guild channel or a DM channel (guild_id None, recipient set)."""

    id: int
    name: str
    type: int = GUILD_TEXT
    guild_id: int | None = None
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    recipient: FakeUser | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self) -> dict[str, Any]:
        if self.type == DM:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.recipient.payload()],
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "nsfw": self.nsfw,
            "flags": 0,
        }
        if self.type == GUILD_TEXT:
            data.update(topic=self.topic, last_message_id=None, rate_limit_per_user=0)
        elif self.type == GUILD_VOICE:
            data.update(bitrate=64000, user_limit=0, rtc_region=None, last_message_id=None, rate_limit_per_user=0)
        return data


@dataclass(eq=False)
class FakeMember:
    """A user's membership of a guild (role ids exclude @everyone)."""

    guild_id: int
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=utcnow)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.role_ids],
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class FakeGuild:
    """A guild with its channels, roles and members."""

    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    features: list[str] = field(default_factory=list)
    premium_tier: int = 0
    channels: list[FakeChannel] = field(default_factory=list)
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=utcnow)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    def channel(self, name: str) -> FakeChannel:
        """The channel called ``name`` (AssertionError if there is none)."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise AssertionError(f"guild {self.name!r} has no channel {name!r}")

    def role(self, name: str) -> FakeRole:
        """The role called ``name`` (AssertionError if there is none)."""
        for role in self.roles.values():
            if role.name == name:
                return role
        raise AssertionError(f"guild {self.name!r} has no role {name!r}")

    def partial_payload(self) -> dict[str, Any]:
        """The ``guild`` object Discord puts in an interaction."""
        return {"id": str(self.id), "locale": self.locale, "features": list(self.features)}


@dataclass(eq=False)
class FakeAttachment:
    """A file: one a test registered (served by the fake) or one the bot uploaded."""

    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    reported_size: int | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.reported_size is None else self.reported_size

    @property
    def bytes(self) -> bytes:  # the raw bytes uploaded / served
        return self.data

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.description is not None:
            data["description"] = self.description
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            data.update(width=self.width, height=self.height)
        return data


@dataclass(frozen=True)
class Mentions:
    """Who a message mentions once ``allowed_mentions`` is applied."""

    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.everyone)


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def resolve_mentions(content: str, allowed: dict[str, Any] | None) -> Mentions:
    """Apply Discord's allowed_mentions rules to ``content`` (no allowed_mentions means parse all)."""
    users = {int(u) for u in _USER_MENTION.findall(content)}
    roles = {int(r) for r in _ROLE_MENTION.findall(content)}
    everyone = "@everyone" in content or "@here" in content
    if allowed is None:
        return Mentions(frozenset(users), frozenset(roles), everyone)
    parse = set(allowed.get("parse") or ())
    if "users" not in parse:
        users &= {int(u) for u in allowed.get("users") or ()}
    if "roles" not in parse:
        roles &= {int(r) for r in allowed.get("roles") or ()}
    return Mentions(frozenset(users), frozenset(roles), everyone and "everyone" in parse)


def walk_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components depth-first, with the children of rows, containers, sections and labels."""
    found: list[dict[str, Any]] = []
    for comp in components:
        found.append(comp)
        children = list(comp.get("components") or [])
        children += [comp[k] for k in ("accessory", "component") if isinstance(comp.get(k), dict)]
        found += walk_components(children)
    return found


@dataclass(eq=False)
class FakeMessage:
    """A message the bot posted (channel message, interaction response or followup); edited in place."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    attachments: list[FakeAttachment] = field(default_factory=list)
    tts: bool = False
    poll: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    type: int = 0
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    webhook_id: int | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    edited_at: dt.datetime | None = None
    deleted: bool = False
    mentions: Mentions = field(default_factory=Mentions)
    pinged: Mentions = field(default_factory=Mentions)
    edits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "is thinking..."."""
        return bool(self.flags & LOADING)

    def snapshot(self) -> dict[str, Any]:
        """The state of the message as plain data (kept in ``edits`` before each edit)."""
        return {
            "content": self.content,
            "embeds": self.embeds,
            "components": self.components,
            "flags": self.flags,
            "allowed_mentions": self.allowed_mentions,
            "attachments": [a.filename for a in self.attachments],
            "edited_at": self.edited_at,
        }

    def iter_components(self) -> list[dict[str, Any]]:
        """Every component, nested ones included (action rows, containers, sections)."""
        return walk_components(self.components)

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.iter_components() if c.get("custom_id") == custom_id), None)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.iter_components() if c.get("custom_id")]

    def payload(self, users: dict[int, FakeUser] | None = None) -> dict[str, Any]:
        """The message object as Discord returns it."""
        users = users or {}
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at),
            "tts": self.tts,
            "mention_everyone": self.mentions.everyone,
            "mentions": [users[u].payload() for u in sorted(self.mentions.users) if u in users],
            "mention_roles": [str(r) for r in sorted(self.mentions.roles)],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.poll is not None:
            data["poll"] = self.poll
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
        return data


@dataclass(eq=False)
class UploadedFile:
    """One ``files[n]`` part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass(eq=False)
class RequestRecord:
    """One HTTP request the bot sent to the fake, and what the fake answered."""

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: list[UploadedFile]
    raw_body: str
    timestamp: float
    status: int | None = None
    response: Any = None

    @property
    def error_code(self) -> int | None:
        if isinstance(self.response, dict) and self.status is not None and self.status >= 400:
            return self.response.get("code")
        return None

    def text(self) -> str:
        """Everything sent (no Authorization header), as one string."""
        parts = [f"{self.method} {self.path}"]
        parts += [f"{k}: {v}" for k, v in self.headers.items()]
        parts.append(self.raw_body)
        for f in self.files:
            parts.append(f"{f.field} {f.filename} {f.content_type}")
            parts.append(f.data.decode("latin-1"))
        return "\n".join(parts)


@dataclass(frozen=True)
class Violation:
    """Something the bot sent that Discord would reject.

    ``kind``: "schema" (OpenAPI request body), "form" (Discord's rules beyond the schema: command names,
    empty messages, allowed_mentions, embed size, callback type), or "unknown_route".
    """

    kind: str
    method: str
    path: str
    route: str | None
    message: str
    body: Any = None

    def __str__(self) -> str:
        return f"[{self.kind}] {self.method} {self.route or self.path}: {self.message}"


@dataclass(frozen=True)
class CommandSync:
    """One PUT of the bot's command set (global when guild_id is None)."""

    guild_id: int | None
    commands: list[dict[str, Any]]
    timestamp: float
