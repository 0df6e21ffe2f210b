"""Server policy and quota limits against a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.blocklist import BlockEntry
from core.config import Watermark
from core.params import CharacterParams, DrawParams
from core.policy import ApprovalMode, GuildPolicy, PolicyRefusal, PolicyService, Requester, decide
from core.quota import QuotaService
from storage import Store, open_store
from tests.storage.helpers import reserve

GUILD, CHANNEL, USER = 1, 2, 3
NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/bot.sqlite3") as opened:
        yield opened


@pytest.fixture
def policy(store: Store) -> PolicyService:
    return PolicyService(store)


def who(*roles: int, channel: int = CHANNEL) -> Requester:
    return Requester(GUILD, channel, USER, frozenset(roles))


async def admit(policy: PolicyService, params=None, requester: Requester | None = None, last=None, banned=False):
    """The server's policy as stored, applied to a request (the admission gate does the same)."""
    requester = requester or who()
    stored = await policy.get(requester.guild_id)
    params = params or DrawParams(prompt="a cat")
    return decide(stored, requester, params, banned=banned, last_request_at=last, now=NOW)


async def refusal(
    policy: PolicyService, params=None, requester: Requester | None = None, last=None, banned=False
) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        await admit(policy, params, requester, last, banned)
    return caught.value


def test_policy_round_trips_through_json() -> None:
    policy = GuildPolicy(
        allowed_channels=(1, 2),
        daily_quota=7,
        role_limits={10: 5, 11: 50},
        watermark=Watermark(enabled=True, text="ours", position=2),
        blocklist=(BlockEntry("cat"), BlockEntry("d[o0]g", is_regex=True)),
        approval_mode=ApprovalMode.UNTRUSTED,
        trusted_roles=(11,),
        language="zh-CN",
    )
    assert GuildPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert GuildPolicy.from_dict({"unknown_future_field": 1}) == GuildPolicy()


async def test_defaults_admit_everything_unchanged(policy: PolicyService) -> None:
    admission = await admit(policy)
    assert admission.params == DrawParams(prompt="a cat")
    assert not admission.needs_approval


async def test_changes_take_effect_at_once(policy: PolicyService) -> None:
    await policy.update(GUILD, character_enabled=False)
    assert (await refusal(policy, CharacterParams(prompt="p", reference_url="u"))).key == "error.character_disabled"
    await policy.update(GUILD, character_enabled=True)
    await admit(policy, CharacterParams(prompt="p", reference_url="u"))


async def test_banned_member_is_refused(policy: PolicyService, store: Store) -> None:
    async def banned() -> bool:
        return (await store.member_record(guild_id=GUILD, user_id=USER, window="2026-11-21")).banned

    await store.ban(guild_id=GUILD, user_id=USER, reason="spam", banned_by=9)
    assert (await refusal(policy, banned=await banned())).key == "error.banned"
    assert await store.unban(guild_id=GUILD, user_id=USER)
    await admit(policy, banned=await banned())


async def test_channels_refusal_names_the_allowed_ones(policy: PolicyService) -> None:
    await policy.update(GUILD, allowed_channels=(20, 21))
    refused = await refusal(policy)
    assert refused.key == "error.channel_not_allowed" and refused.params["channels"] == "<#20>, <#21>"
    await admit(policy, requester=who(channel=21))


async def test_feature_limits(policy: PolicyService) -> None:
    await policy.update(GUILD, upscale_enabled=False, max_steps=10)
    assert (await refusal(policy, DrawParams(prompt="p", upscale=True))).key == "error.upscale_disabled"
    refused = await refusal(policy, DrawParams(prompt="p", steps=11))
    assert (refused.key, refused.params) == ("error.too_many_steps", {"limit": 10})
    await admit(policy, DrawParams(prompt="p", steps=10))


async def test_sizes_are_fitted_to_the_servers_maximum(policy: PolicyService) -> None:
    await policy.update(GUILD, max_side=512)
    admission = await admit(policy, DrawParams(prompt="p", width=768, height=432))
    assert (admission.params.width, admission.params.height) == (512, 288)
    admission = await admit(policy, DrawParams(prompt="p", width=512, height=768))
    assert (admission.params.width, admission.params.height) == (336, 512)


async def test_server_watermark_is_applied(policy: PolicyService) -> None:
    mark = Watermark(enabled=True, text="server", position=1)
    await policy.update(GUILD, watermark=mark)
    admission = await admit(policy)
    assert admission.params.watermark == mark


@pytest.mark.parametrize("prompt", ["NSFW art", "ｎｓｆｗ art", "n s f w art", "n\u200bsfw art", "色 情"])
async def test_builtin_blocklist_catches_evasions_and_can_be_switched_off(policy: PolicyService, prompt: str) -> None:
    refused = await refusal(policy, DrawParams(prompt=prompt))
    assert refused.key == "error.prompt_blocked" and refused.logged
    await policy.update(GUILD, builtin_blocklist=False)
    await admit(policy, DrawParams(prompt=prompt))


async def test_custom_blocklist(policy: PolicyService) -> None:
    await policy.update(GUILD, blocklist=(BlockEntry("clown"), BlockEntry(r"sp[i1]der", is_regex=True)))
    assert (await refusal(policy, DrawParams(prompt="a CLOWN party"))).params["entry"] == "clown"
    assert (await refusal(policy, DrawParams(prompt="a SP1DER web"))).params["entry"] == r"sp[i1]der"
    await admit(policy, DrawParams(prompt="a cat"))


async def test_cooldown(policy: PolicyService) -> None:
    await policy.update(GUILD, cooldown_seconds=60)
    refused = await refusal(policy, last=NOW - timedelta(seconds=45))
    assert (refused.key, refused.params) == ("error.cooldown", {"seconds": 16})
    await admit(policy, last=NOW - timedelta(seconds=61))
    await admit(policy, last=None)


async def test_approval_modes(policy: PolicyService) -> None:
    await policy.update(GUILD, approval_mode=ApprovalMode.ALL, approval_timeout_minutes=5)
    admission = await admit(policy, requester=who(99))
    assert admission.needs_approval and admission.approval_timeout == timedelta(minutes=5)
    await policy.update(GUILD, approval_mode=ApprovalMode.UNTRUSTED, trusted_roles=(99,))
    assert not (await admit(policy, requester=who(99))).needs_approval
    assert (await admit(policy, requester=who(98))).needs_approval


async def test_quota_limit_sources(policy: PolicyService, store: Store) -> None:
    quota = QuotaService(store, daily_limit=20, clock=lambda: NOW)
    limit = await quota.limit_for(guild_id=GUILD, user_id=USER)
    assert (limit.total, limit.source) == (20, "default")
    await policy.update(GUILD, daily_quota=8)
    assert (await quota.limit_for(guild_id=GUILD, user_id=USER)).source == "server"
    await policy.update(GUILD, role_limits={10: 3, 11: 30, 12: 100})
    limit = await quota.limit_for(guild_id=GUILD, user_id=USER, role_ids=frozenset({10, 11}))
    assert (limit.total, limit.source, limit.role_id) == (30, "role", 11)  # the highest of their roles
    limit = await quota.limit_for(guild_id=GUILD, user_id=USER, role_ids=frozenset({10}))
    assert limit.total == 3  # a role can also restrict
    await store.set_user_limit(GUILD, USER, 2)
    limit = await quota.limit_for(guild_id=GUILD, user_id=USER, role_ids=frozenset({11}))
    assert (limit.total, limit.source) == (2, "user")
    await store.add_quota_grant(guild_id=GUILD, user_id=USER, window=quota.window().key, amount=5, granted_by=9)
    await store.add_quota_grant(guild_id=GUILD, user_id=USER, window="2026-11-20", amount=50, granted_by=9)
    limit = await quota.limit_for(guild_id=GUILD, user_id=USER)
    assert (limit.base, limit.granted, limit.total) == (2, 5, 7)
    await store.set_user_limit(GUILD, USER, None)
    assert (await quota.limit_for(guild_id=GUILD, user_id=USER)).source == "server"


async def test_a_quota_reset_gives_back_todays_use_as_a_grant(store: Store) -> None:
    quota = QuotaService(store, daily_limit=5, clock=lambda: NOW)
    assert await quota.reset(guild_id=GUILD, user_id=USER, reset_by=9) == 0  # nothing used: nothing granted
    assert await store.granted_quota(guild_id=GUILD, user_id=USER, window=quota.window().key) == 0
    for n in range(3):
        assert await reserve(store, f"job-{n}", user=USER, window=quota.window().key)
    assert await quota.reset(guild_id=GUILD, user_id=USER, reset_by=9) == 3
    status = await quota.status(guild_id=GUILD, user_id=USER)
    assert (status.used, status.limit, status.remaining) == (3, 8, 5)  # every charge kept, the day afresh


async def test_bans_go_through_the_policy_service(policy: PolicyService, store: Store) -> None:
    await policy.ban(guild_id=GUILD, user_id=USER, reason="spam", banned_by=9)
    ban = await store.get_ban(GUILD, USER)
    assert ban is not None and (ban.reason, ban.banned_by) == ("spam", 9)
    assert await policy.unban(guild_id=GUILD, user_id=USER)
    assert not await policy.unban(guild_id=GUILD, user_id=USER)
