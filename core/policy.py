"""Per-server policy that admins manage from Discord: where, who, how much and what may be generated.

Stored as one JSON document per guild (scalars and short lists) plus rows for what grows (bans, personal
limits, grants). Read from the store on every request, so a change takes effect at once, in every process; only
the compiled blocklist is cached, keyed by the list itself, so a changed list is compiled afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from core.blocklist import BlockEntry, Blocklist
from core.config import Watermark
from core.errors import UserFacingError
from core.params import SIDE_RANGE, STEPS_RANGE, CharacterParams, Params, scale_to_fit
from storage.base import Store

log = logging.getLogger(__name__)


class ApprovalMode(StrEnum):
    OFF = "off"
    ALL = "all"
    UNTRUSTED = "untrusted"  # members without a trusted role


class PolicyRefusal(UserFacingError):
    """A request the server's policy refuses; `logged` ones go to the mod log (e.g. the blocklist)."""

    def __init__(self, key: str, *, logged: bool = False, **params: Any) -> None:
        super().__init__(key, **params)
        self.logged = logged


@dataclass(frozen=True)
class GuildPolicy:
    allowed_channels: tuple[int, ...] = ()  # empty: everywhere
    daily_quota: int | None = None  # None: the bot's DAILY_QUOTA
    role_limits: dict[int, int] = field(default_factory=dict)
    cooldown_seconds: int = 0
    character_enabled: bool = True
    upscale_enabled: bool = True
    max_steps: int = STEPS_RANGE[1]
    max_side: int = SIDE_RANGE[1]
    watermark: Watermark | None = None  # None: the bot's configured watermark
    blocklist: tuple[BlockEntry, ...] = ()
    builtin_blocklist: bool = True
    mod_log_channel_id: int | None = None
    approval_mode: ApprovalMode = ApprovalMode.OFF
    trusted_roles: tuple[int, ...] = ()
    approval_timeout_minutes: int = 60
    language: str | None = None  # None: the guild's Discord locale

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["role_limits"] = {str(role): limit for role, limit in self.role_limits.items()}
        data["approval_mode"] = self.approval_mode.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuildPolicy:
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        known["allowed_channels"] = tuple(known.get("allowed_channels", ()))
        known["trusted_roles"] = tuple(known.get("trusted_roles", ()))
        known["role_limits"] = {int(role): int(limit) for role, limit in known.get("role_limits", {}).items()}
        known["blocklist"] = tuple(BlockEntry(**entry) for entry in known.get("blocklist", ()))
        if known.get("watermark") is not None:
            known["watermark"] = Watermark(**known["watermark"])
        if "approval_mode" in known:
            known["approval_mode"] = ApprovalMode(known["approval_mode"])
        return cls(**known)

    @classmethod
    def from_settings(cls, data: dict[str, Any] | None) -> GuildPolicy:
        """The policy stored for a guild, or the defaults when it has none."""
        return cls.from_dict(data) if data else cls()

    def needs_approval(self, role_ids: frozenset[int]) -> bool:
        if self.approval_mode is ApprovalMode.ALL:
            return True
        if self.approval_mode is ApprovalMode.UNTRUSTED:
            return not role_ids & set(self.trusted_roles)
        return False


@dataclass(frozen=True)
class Admission:
    params: Params  # sizes fitted to the server's maximum, its watermark applied
    needs_approval: bool
    approval_timeout: timedelta


@dataclass(frozen=True)
class Requester:
    """Who asks, where: what the policy needs to know about a request's origin."""

    guild_id: int
    channel_id: int
    user_id: int
    role_ids: frozenset[int] = frozenset()


class PolicyService:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._writes = asyncio.Lock()

    async def get(self, guild_id: int) -> GuildPolicy:
        return GuildPolicy.from_settings(await self._store.get_guild_settings(guild_id))

    async def update(self, guild_id: int, **changes: Any) -> GuildPolicy:
        """Sets fields; a callable value is given the field's current value and returns the new one, so that
        read-modify-write changes (add a channel to a list) are not lost to a concurrent change."""
        async with self._writes:
            policy = await self.get(guild_id)
            values = {
                name: change(getattr(policy, name)) if callable(change) else change for name, change in changes.items()
            }
            policy = replace(policy, **values)
            await self._store.save_guild_settings(guild_id, policy.to_dict())
        return policy

    async def ban(self, *, guild_id: int, user_id: int, reason: str | None, banned_by: int) -> None:
        """Stops the member from generating in the guild (a ban already there is replaced)."""
        await self._store.ban(guild_id=guild_id, user_id=user_id, reason=reason, banned_by=banned_by)

    async def unban(self, *, guild_id: int, user_id: int) -> bool:
        """Lifts the member's ban; False when they were not banned."""
        return await self._store.unban(guild_id=guild_id, user_id=user_id)


def decide(
    policy: GuildPolicy,
    requester: Requester,
    params: Params,
    *,
    banned: bool,
    last_request_at: datetime | None,
    now: datetime,
) -> Admission:
    """Applies the server's rules to a request before anything is spent.

    Returns the params to use (sizes fitted to the server's maximum, its watermark) and whether a moderator
    must approve; raises PolicyRefusal otherwise.
    """
    if banned:
        raise PolicyRefusal("error.banned")
    if policy.allowed_channels and requester.channel_id not in policy.allowed_channels:
        channels = ", ".join(f"<#{channel}>" for channel in policy.allowed_channels)
        raise PolicyRefusal("error.channel_not_allowed", channels=channels)
    if isinstance(params, CharacterParams) and not policy.character_enabled:
        raise PolicyRefusal("error.character_disabled")
    if params.upscale and not policy.upscale_enabled:
        raise PolicyRefusal("error.upscale_disabled")
    if params.steps > policy.max_steps:
        raise PolicyRefusal("error.too_many_steps", limit=policy.max_steps)
    blocked = compiled_blocklist(policy.blocklist, policy.builtin_blocklist).first_match(params.prompt)
    if blocked is not None:
        log.info("prompt of user %s in guild %s blocked", requester.user_id, requester.guild_id)
        raise PolicyRefusal("error.prompt_blocked", logged=True, entry=blocked.pattern)
    if policy.cooldown_seconds and last_request_at is not None:
        wait = policy.cooldown_seconds - (now - last_request_at).total_seconds()
        if wait > 0:
            raise PolicyRefusal("error.cooldown", seconds=int(wait) + 1)
    width, height = scale_to_fit(params.width, params.height, policy.max_side)
    adjusted = replace(params, width=width, height=height)
    if policy.watermark is not None:
        adjusted = replace(adjusted, watermark=policy.watermark)
    return Admission(
        params=adjusted,
        needs_approval=policy.needs_approval(requester.role_ids),
        approval_timeout=timedelta(minutes=policy.approval_timeout_minutes),
    )


@lru_cache(maxsize=1024)
def compiled_blocklist(entries: tuple[BlockEntry, ...], include_builtin: bool) -> Blocklist:
    """A server's blocklist, compiled (and its regexes checked) once per distinct list, not on every request."""
    return Blocklist(entries, include_builtin=include_builtin)


def adding(item: Any) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """For `PolicyService.update`: the tuple with `item` at the end, once."""
    return lambda items: items if item in items else (*items, item)


def removing(item: Any) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    return lambda items: tuple(existing for existing in items if existing != item)
