"""Application commands: what the bot synced, Discord's extra rules for them, and invocation data."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from .models import FakeAttachment, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, Snowflakes
from .world import ADMINISTRATOR, World

log = logging.getLogger(__name__)

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
CHAT_INPUT = 1

_NAME = re.compile(r"^[-_'\w]{1,32}$")


class CommandStore:
    """The commands the bot registered, per scope (None = global); ids are stable per (type, name)."""

    def __init__(self, ids: Snowflakes, application_id: int) -> None:
        self._ids = ids
        self._application_id = application_id
        self._scopes: dict[int | None, list[dict[str, Any]]] = {}
        self._known_ids: dict[tuple[int | None, int, str], int] = {}
        # Commands a server admin opened to everyone (Server Settings > Integrations), per guild.
        self.opened: set[tuple[int, str]] = set()

    def list(self, guild_id: int | None) -> list[dict[str, Any]]:
        return list(self._scopes.get(guild_id, []))

    def _stored(self, guild_id: int | None, body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        kind = body.get("type") or CHAT_INPUT
        key = (guild_id, kind, body["name"])
        cmd_id = self._known_ids.setdefault(key, self._ids.next())
        perms = body.get("default_member_permissions")
        stored = {
            "id": str(cmd_id),
            "application_id": str(self._application_id),
            "version": previous["version"] if previous else str(self._ids.next()),
            "type": kind,
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": body.get("description") or "",
            "description_localizations": body.get("description_localizations"),
            "default_member_permissions": None if perms is None else str(perms),
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "nsfw": bool(body.get("nsfw", False)),
        }
        if body.get("options"):
            stored["options"] = body["options"]
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        if previous is not None and _definition(previous) != _definition(stored):
            stored["version"] = str(self._ids.next())
        return stored

    def put(self, guild_id: int | None, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the scope's commands (bulk overwrite)."""
        old = {(c["type"], c["name"]): c for c in self._scopes.get(guild_id, [])}
        stored = [self._stored(guild_id, b, old.get((b.get("type") or CHAT_INPUT, b["name"]))) for b in bodies]
        self._scopes[guild_id] = stored
        return stored

    def upsert(self, guild_id: int | None, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace one command; returns (command, created)."""
        current = self._scopes.setdefault(guild_id, [])
        kind = body.get("type") or CHAT_INPUT
        old = next((c for c in current if c["type"] == kind and c["name"] == body["name"]), None)
        stored = self._stored(guild_id, body, old)
        if old is not None:
            current[current.index(old)] = stored
        else:
            current.append(stored)
        return stored, old is None

    def get(self, guild_id: int | None, command_id: int) -> dict[str, Any] | None:
        return next((c for c in self._scopes.get(guild_id, []) if int(c["id"]) == command_id), None)

    def delete(self, guild_id: int | None, command_id: int) -> bool:
        found = self.get(guild_id, command_id)
        if found is not None:
            self._scopes[guild_id].remove(found)
        return found is not None

    def find(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        """A chat-input command by name: the guild's own first, then the global one."""
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for cmd in self._scopes.get(scope, []):
                if cmd["type"] == CHAT_INPUT and cmd["name"] == name:
                    return cmd
        return None

    def describe(self) -> str:
        return (
            "; ".join(
                f"{'global' if scope is None else f'guild {scope}'}: {sorted(c['name'] for c in cmds)}"
                for scope, cmds in self._scopes.items()
            )
            or "no commands were synced"
        )


def _definition(cmd: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cmd.items() if k not in ("id", "version", "application_id")}


# -- Discord's rules beyond the schema ---------------------------------------------------------


def command_problems(body: dict[str, Any], where: str = "") -> list[str]:
    """What Discord rejects in a command definition that the OpenAPI schema does not say."""
    problems: list[str] = []
    kind = body.get("type") or CHAT_INPUT
    name = body.get("name", "")
    if kind == CHAT_INPUT:
        if not _NAME.match(name) or name != name.lower():
            problems.append(f"{where}name {name!r} must be 1-32 lowercase letters, digits, '-' or '_'")
        if not body.get("description"):
            problems.append(f"{where}description of {name!r} is required for chat-input commands")
        problems += _options_problems(body.get("options") or [], f"{where}{name}.")
    elif body.get("description"):
        problems.append(f"{where}context-menu command {name!r} must have an empty description")
    return problems


def _options_problems(options: list[dict[str, Any]], where: str) -> list[str]:
    problems: list[str] = []
    names = [o.get("name") for o in options]
    for dup in {n for n in names if names.count(n) > 1}:
        problems.append(f"{where}options: duplicate option name {dup!r}")
    seen_optional = False
    for opt in options:
        name = opt.get("name", "")
        if not _NAME.match(name) or name != name.lower():
            problems.append(f"{where}{name}: option names must be 1-32 lowercase characters")
        if not opt.get("description"):
            problems.append(f"{where}{name}: option description is required")
        if opt.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
            problems += _options_problems(opt.get("options") or [], f"{where}{name}.")
            continue
        if opt.get("required"):
            if seen_optional:
                problems.append(f"{where}{name}: required options must come before optional ones")
        else:
            seen_optional = True
        if opt.get("choices") and opt.get("autocomplete"):
            problems.append(f"{where}{name}: choices and autocomplete are mutually exclusive")
    kinds = {o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options}
    if len(kinds) > 1:
        problems.append(f"{where}options: subcommands cannot be mixed with plain options")
    return problems


# -- invoking -----------------------------------------------------------------------------------

OptionValue = str | int | float | bool | FakeUser | FakeMember | FakeRole | FakeChannel | FakeAttachment


@dataclass
class CommandInvocation:
    """The ``data`` of an APPLICATION_COMMAND interaction and the command it targets."""

    command: dict[str, Any]
    data: dict[str, Any]
    qualified_name: str


def build_invocation(
    world: World,
    store: CommandStore,
    name: str,
    options: dict[str, OptionValue],
    *,
    channel: FakeChannel,
    user: FakeUser,
) -> CommandInvocation:
    """Turn ``invoke("settings channels add", channel=...)`` into interaction data, like Discord's client."""
    guild = world.guild_of(channel)
    words = name.strip().lstrip("/").split()
    if not words:
        raise AssertionError("invoke() needs a command name")
    command = store.find(words[0], None if guild is None else guild.id)
    if command is None:
        raise AssertionError(f"command /{words[0]} was not synced ({store.describe()})")
    opened = guild is not None and (guild.id, command["name"]) in store.opened
    _check_available(command, guild, world.permissions_in(user, channel), opened=opened)
    resolved: dict[str, dict[str, Any]] = {}
    builder = _OptionBuilder(world, channel, user, resolved)
    definitions = command.get("options") or []
    chain: list[dict[str, Any]] = []
    for word in words[1:]:
        sub = next((o for o in definitions if o.get("name") == word), None)
        if sub is None or sub.get("type") not in (SUB_COMMAND, SUB_COMMAND_GROUP):
            raise AssertionError(f"/{' '.join(words)}: {word!r} is not a subcommand of /{command['name']}")
        chain.append(sub)
        definitions = sub.get("options") or []
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in definitions):
        subs = [o["name"] for o in definitions]
        raise AssertionError(f"/{' '.join(words)} needs a subcommand, one of {subs}")
    leaf_options = builder.build(definitions, options, "/" + " ".join(words))
    for sub in reversed(chain):
        leaf_options = [{"type": sub["type"], "name": sub["name"], "options": leaf_options}]
    data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": CHAT_INPUT}
    if leaf_options:
        data["options"] = leaf_options
    if resolved:
        data["resolved"] = resolved
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    return CommandInvocation(command=command, data=data, qualified_name=" ".join(words))


def _check_available(
    command: dict[str, Any], guild: FakeGuild | None, permissions: int, *, opened: bool = False
) -> None:
    """Discord's client only offers a command where its contexts and default permissions allow."""
    contexts = command.get("contexts")
    if guild is None:
        in_dm = (1 in contexts) if contexts is not None else command.get("dm_permission", True) is not False
        if not in_dm or "guild_id" in command:
            raise AssertionError(f"/{command['name']} is not available in DMs (contexts={contexts})")
        return
    if contexts is not None and 0 not in contexts:
        raise AssertionError(f"/{command['name']} is not available in guilds (contexts={contexts})")
    needed = command.get("default_member_permissions")
    if (
        needed is not None
        and not opened
        and permissions & int(needed) != int(needed)
        and not permissions & ADMINISTRATOR
    ):
        raise AssertionError(
            f"/{command['name']} needs default_member_permissions={needed}; the user has {permissions}"
        )


class _OptionBuilder:
    """Converts test values to option payloads, filling ``resolved`` as Discord does."""

    def __init__(self, world: World, channel: FakeChannel, user: FakeUser, resolved: dict[str, dict[str, Any]]) -> None:
        self.world, self.channel, self.user, self.resolved = world, channel, user, resolved
        self.guild = world.guild_of(channel)

    def build(self, definitions: list[dict[str, Any]], values: dict[str, OptionValue], where: str) -> list[dict]:
        by_name = {d["name"]: d for d in definitions}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise AssertionError(f"{where} has no option(s) {unknown}; it has {sorted(by_name)}")
        missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
        if missing:
            raise AssertionError(f"{where}: required option(s) {missing} not given")
        out = []
        for definition in definitions:
            if definition["name"] in values:
                value = self._value(definition, values[definition["name"]], f"{where} {definition['name']}")
                out.append({"type": definition["type"], "name": definition["name"], "value": value})
        return out

    def _value(self, d: dict[str, Any], value: OptionValue, where: str) -> Any:
        kind = d["type"]
        if kind == STRING:
            if not isinstance(value, str):
                raise AssertionError(f"{where}: expected a str, got {value!r}")
            self._check_length(d, value, where)
            return self._check_choice(d, value, where)
        if kind in (INTEGER, NUMBER):
            ok = isinstance(value, int) if kind == INTEGER else isinstance(value, int | float)
            if not ok or isinstance(value, bool):
                raise AssertionError(f"{where}: expected {'an int' if kind == INTEGER else 'a number'}, got {value!r}")
            self._check_range(d, value, where)
            return self._check_choice(d, value, where)
        if kind == BOOLEAN:
            if not isinstance(value, bool):
                raise AssertionError(f"{where}: expected a bool, got {value!r}")
            return value
        if kind == USER or (kind == MENTIONABLE and isinstance(value, FakeUser | FakeMember)):
            return self._user(value, where)
        if kind == ROLE or (kind == MENTIONABLE and isinstance(value, FakeRole)):
            if not isinstance(value, FakeRole):
                raise AssertionError(f"{where}: expected a FakeRole, got {value!r}")
            self.resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind == CHANNEL:
            return self._channel(d, value, where)
        if kind == ATTACHMENT:
            if not isinstance(value, FakeAttachment):
                raise AssertionError(f"{where}: expected fake.attachment(...), got {value!r}")
            self.resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
            return str(value.id)
        raise AssertionError(f"{where}: option type {kind} is not supported by the fake")

    def _user(self, value: OptionValue, where: str) -> str:
        if isinstance(value, FakeMember):
            value = value.user
        if not isinstance(value, FakeUser):
            raise AssertionError(f"{where}: expected a FakeUser, got {value!r}")
        self.resolved.setdefault("users", {})[str(value.id)] = value.payload()
        if self.guild is not None and value.id in self.guild.members:
            member = self.guild.members[value.id]
            perms = self.world.channel_permissions(member, self.channel)
            self.resolved.setdefault("members", {})[str(value.id)] = member.payload(with_user=False, permissions=perms)
        return str(value.id)

    def _channel(self, d: dict[str, Any], value: OptionValue, where: str) -> str:
        if not isinstance(value, FakeChannel):
            raise AssertionError(f"{where}: expected a FakeChannel, got {value!r}")
        allowed = d.get("channel_types")
        if allowed and value.type not in allowed:
            raise AssertionError(f"{where}: channel type {value.type} not in {allowed}")
        data = {
            "id": str(value.id),
            "name": value.name,
            "type": value.type,
            "permissions": str(self.world.permissions_in(self.user, value)),
        }
        if value.parent_id is not None:
            data["parent_id"] = str(value.parent_id)
        self.resolved.setdefault("channels", {})[str(value.id)] = data
        return str(value.id)

    @staticmethod
    def _check_length(d: dict[str, Any], value: str, where: str) -> None:
        low, high = d.get("min_length", 0), d.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise AssertionError(f"{where}: length {len(value)} outside [{low}, {high}] (Discord's client refuses)")

    @staticmethod
    def _check_range(d: dict[str, Any], value: float, where: str) -> None:
        low, high = d.get("min_value"), d.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise AssertionError(f"{where}: {value} outside [{low}, {high}] (Discord's client refuses)")

    @staticmethod
    def _check_choice(d: dict[str, Any], value: Any, where: str) -> Any:
        choices = d.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise AssertionError(f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
        return value
