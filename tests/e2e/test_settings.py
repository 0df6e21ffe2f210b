"""Per-server policy through the fake Discord: every setting changes behaviour at once, and is logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord
import pytest

from core.policy import GuildPolicy
from tests.e2e.harness import BotHarness, is_status, outcome, running_harness
from tests.fakes.discord import FakeChannel, FakeMessage, FakeUser, InteractionRecord, RequestRecord
from tests.fakes.doubao_server import FakeResponse

ADMIN = discord.Permissions(manage_guild=True).value
MODERATOR = discord.Permissions(manage_messages=True).value


def member(harness: BotHarness, name: str, *, permissions: int | None = None, roles=()) -> FakeUser:
    user = harness.discord.add_user(name)
    harness.discord.add_member(harness.discord.guild, user, permissions=permissions, roles=roles)
    return user


async def configure(harness: BotHarness, admin: FakeUser, command: str, **options: object) -> FakeMessage:
    answer = await outcome(await harness.discord.invoke(f"settings {command}", user=admin, options=options))
    assert answer.ephemeral
    return answer


def mod_log(harness: BotHarness, channel: FakeChannel) -> list[FakeMessage]:
    return harness.discord.channel_messages(channel)


def embed_text(message: FakeMessage) -> str:
    return str(message.embeds)


async def setup_mod_log(harness: BotHarness, admin: FakeUser) -> FakeChannel:
    channel = harness.discord.add_channel(name="mod-log")
    await configure(harness, admin, "moderation log-channel", channel=channel)
    return channel


async def test_members_without_manage_server_cannot_change_settings(harness: BotHarness) -> None:
    settings = next(c for c in harness.discord.synced_commands() if c["name"] == "settings")
    assert settings["default_member_permissions"] == str(ADMIN)
    harness.discord.open_command("settings")  # the server widened who may use /settings
    alice = member(harness, "alice")
    answer = await outcome(await harness.discord.invoke("settings quota default", user=alice, limit=0))
    assert answer.ephemeral and "Manage Server" in answer.content
    assert (await outcome(await harness.draw(alice))).attachments  # the default quota still applies
    moderator = member(harness, "mod", permissions=MODERATOR)
    answer = await outcome(await harness.discord.invoke("settings features character", user=moderator, enabled=False))
    assert "Manage Server" in answer.content
    assert (await harness.bot.policy.get(harness.discord.guild.id)).character_enabled


async def test_every_settings_subgroup_keeps_its_place_and_is_for_admins_only(harness: BotHarness) -> None:
    settings = next(c for c in harness.discord.synced_commands() if c["name"] == "settings")
    subcommands = {option["name"]: [sub["name"] for sub in option.get("options", [])] for option in settings["options"]}
    assert list(subcommands) == ["channels", "quota", "features", "blocklist", "moderation", "show", "language"]
    assert subcommands["moderation"] == ["ban", "unban", "log-channel", "approval", "trust", "untrust", "forget"]
    harness.discord.open_command("settings")
    alice = member(harness, "alice")
    tries = {
        "show": {},
        "language": {"language": "zh-CN"},
        "channels clear": {},
        "quota cooldown": {"seconds": 60},
        "features upscale": {"enabled": False},
        "blocklist builtin": {"enabled": False},
        "moderation forget": {"user_id": str(alice.id)},
    }
    for command, options in tries.items():
        answer = await outcome(await harness.discord.invoke(f"settings {command}", user=alice, options=options))
        assert answer.ephemeral and "Manage Server" in answer.content, command
    assert await harness.bot.policy.get(harness.discord.guild.id) == GuildPolicy()


@pytest.mark.both_databases
async def test_channels_setting(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    art = harness.discord.add_channel(name="art")
    await configure(harness, admin, "channels add", channel=art)
    refused = await outcome(await harness.draw(alice))
    assert refused.ephemeral and f"<#{art.id}>" in refused.content and harness.api.requests == []
    assert (await outcome(await harness.discord.invoke("draw", user=alice, channel=art, prompt="p"))).attachments
    await configure(harness, admin, "channels clear")
    assert (await outcome(await harness.draw(alice))).attachments


@pytest.mark.both_databases
async def test_quota_settings_default_roles_personal_grant_reset(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"MAX_JOBS_PER_USER": "10"}) as harness:
        admin = member(harness, "admin", permissions=ADMIN)
        artists = harness.discord.add_role(name="artists")
        vips = harness.discord.add_role(name="vips")
        alice = member(harness, "alice", roles=[artists, vips])
        bob = member(harness, "bob")

        await configure(harness, admin, "quota default", limit=1)
        await configure(harness, admin, "quota role", role=artists, limit=2)
        await configure(harness, admin, "quota role", role=vips, limit=3)
        quota = await outcome(await harness.discord.invoke("quota", user=alice))
        assert "of **3**" in quota.content and f"<@&{vips.id}>" in quota.content  # the highest of her roles
        quota = await outcome(await harness.discord.invoke("quota", user=bob))
        assert "of **1**" in quota.content and "server's default" in quota.content

        assert (await outcome(await harness.draw(bob))).attachments
        refused = await outcome(await harness.draw(bob))
        assert refused.ephemeral and "used all 1" in refused.content

        await configure(harness, admin, "quota grant", user=bob, amount=2)
        assert (await outcome(await harness.draw(bob))).attachments
        shown = await configure(harness, admin, "quota show", user=bob)
        assert "**2** of **3**" in shown.content and "+2 granted" in shown.content

        await configure(harness, admin, "quota set", user=bob, limit=5)
        quota = await outcome(await harness.discord.invoke("quota", user=bob))
        assert "of **7**" in quota.content and "personal limit" in quota.content  # 5 personal + 2 granted
        await configure(harness, admin, "quota reset", user=bob)
        quota = await outcome(await harness.discord.invoke("quota", user=bob))
        assert "**7** left" in quota.content
        await harness.check_ledger()


@pytest.mark.both_databases
async def test_cooldown_setting(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    await configure(harness, admin, "quota cooldown", seconds=600)
    assert (await outcome(await harness.draw(alice))).attachments
    refused = await outcome(await harness.draw(alice))
    assert refused.ephemeral and "Please wait" in refused.content
    assert len(harness.api.requests) == 1
    await configure(harness, admin, "quota cooldown", seconds=0)
    assert (await outcome(await harness.draw(alice))).attachments


async def test_feature_settings(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    await configure(harness, admin, "features character", enabled=False)
    reference = harness.discord.attachment("face.png")
    refused = await outcome(await harness.discord.invoke("character", user=alice, prompt="p", reference=reference))
    assert refused.ephemeral and "/character is turned off" in refused.content
    await configure(harness, admin, "features upscale", enabled=False)
    refused = await outcome(await harness.draw(alice, upscale=True))
    assert "Upscaling is turned off" in refused.content
    await configure(harness, admin, "features max-steps", steps=10)
    refused = await outcome(await harness.draw(alice, steps=11))
    assert "at most 10 steps" in refused.content
    assert harness.api.requests == []

    await configure(harness, admin, "features max-size", pixels=512)
    await configure(harness, admin, "features watermark", enabled=True, text="Our Server", position=2)
    message = await outcome(await harness.draw(alice, size="16:9", steps=10))
    sent = harness.api.requests[-1].json
    assert (sent["width"], sent["height"]) == (512, 288)
    assert sent["logo_info"] == {
        "add_logo": True,
        "position": 2,
        "language": 0,
        "opacity": 0.3,
        "logo_text_content": "Our Server",
    }
    assert "512×288" in str(message.embeds)


@pytest.mark.both_databases
async def test_blocklist_catches_evasions_and_is_logged(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    log_channel = await setup_mod_log(harness, admin)
    for prompt in ("NSFW poster", "ｎｓｆｗ poster", "n s f w poster", "n\u200bs\u200bf\u200bw poster"):
        refused = await outcome(await harness.draw(alice, prompt=prompt))
        assert refused.ephemeral and "can't be used in this server" in refused.content, prompt
    assert harness.api.requests == []
    assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 0}

    def refusals() -> list[FakeMessage]:
        return [m for m in mod_log(harness, log_channel) if "Request refused" in embed_text(m)]

    # The mod log is written after the member is answered.
    await harness.discord.wait_for_channel_message(log_channel, lambda _m: len(refusals()) >= 4, timeout=5)
    assert (
        len(refusals()) == 4 and "nsfw" in embed_text(refusals()[0]) and f"<@{alice.id}>" in embed_text(refusals()[0])
    )

    await configure(harness, admin, "blocklist add", pattern="Clowns")
    await configure(harness, admin, "blocklist add", pattern=r"sp[i1]ders?", regex=True)
    assert "can't be used" in (await outcome(await harness.draw(alice, prompt="two c l o w n s"))).content
    assert "can't be used" in (await outcome(await harness.draw(alice, prompt="a SP1DER"))).content
    listed = await configure(harness, admin, "blocklist list")
    assert "`clowns`" in listed.content and "sp[i1]ders?" in listed.content
    bad = await configure(harness, admin, "blocklist add", pattern="([", regex=True)
    assert "can't be used" in bad.content

    await configure(harness, admin, "blocklist builtin", enabled=False)
    await configure(harness, admin, "blocklist remove", pattern="clowns")
    assert (await outcome(await harness.draw(alice, prompt="nsfw clowns"))).attachments


@pytest.mark.both_databases
async def test_ban_and_unban(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    await configure(harness, admin, "moderation ban", user=alice, reason="spam")
    refused = await outcome(await harness.draw(alice))
    assert refused.ephemeral and "can't generate images in this server" in refused.content
    await configure(harness, admin, "moderation unban", user=alice)
    assert (await outcome(await harness.draw(alice))).attachments
    again = await configure(harness, admin, "moderation unban", user=alice)
    assert "is not banned" in again.content


@pytest.mark.both_databases
async def test_mod_log_records_jobs_refusals_and_changes(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    log_channel = await setup_mod_log(harness, admin)
    await configure(harness, admin, "quota default", limit=9)
    result = await outcome(await harness.draw(alice, prompt="a lighthouse"))
    harness.api.default_response = FakeResponse.business_error(50411)
    await outcome(await harness.draw(alice, prompt="refused by the API"))
    await harness.check_ledger()
    # Entries are written after the admin is answered and after the job settles: wait for each.
    for expected in ("9 generations a day", "a lighthouse", "refused by the API"):
        await harness.discord.wait_for_channel_message(log_channel, lambda m, e=expected: e in embed_text(m), timeout=5)
    entries = [embed_text(message) for message in mod_log(harness, log_channel)]
    changes = [entry for entry in entries if "Settings changed" in entry]
    assert any("9 generations a day" in entry and f"<@{admin.id}>" in entry for entry in changes)
    done = next(entry for entry in entries if "a lighthouse" in entry)
    assert f"<@{alice.id}>" in done and str(result.id) in done and "'Cost', 'value': '1'" in done
    assert "seed=" in done and "done" in done
    failed = next(entry for entry in entries if "refused by the API" in entry)
    assert "content policy" in failed and "'Cost', 'value': '0'" in failed
    assert all(not message.pinged for message in mod_log(harness, log_channel))


async def approval_request(harness: BotHarness, log_channel: FakeChannel) -> FakeMessage:
    return await harness.discord.wait_for_channel_message(
        log_channel, lambda m: any(c.startswith("approval:") for c in m.custom_ids), timeout=5
    )


async def pending(record: InteractionRecord) -> FakeMessage:
    await record.wait_for(lambda r: r.message is not None and r.message.content.startswith("🛡️"), 5, "pending")
    assert record.message is not None
    return record.message


@pytest.mark.both_databases
async def test_approval_approve_and_reject(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    moderator = member(harness, "mod", permissions=MODERATOR)
    log_channel = await setup_mod_log(harness, admin)
    await configure(harness, admin, "moderation approval", mode="all")

    record = await harness.draw(alice, prompt="a castle")
    assert "Waiting for a moderator" in (await pending(record)).content
    request = await approval_request(harness, log_channel)
    assert "a castle" in embed_text(request) and harness.api.requests == []
    stranger = await outcome(await harness.discord.click(request, request.custom_ids[0], user=alice))
    assert stranger.ephemeral and "Only moderators" in stranger.content
    await outcome(await harness.decide(request, "approve", moderator))
    assert (await outcome(record)).attachments
    assert "Approved by" in request.content and not request.components

    record = await harness.draw(alice, prompt="a dungeon")
    await pending(record)
    request = await approval_request(harness, log_channel)
    await outcome(await harness.decide(request, "reject", moderator, "too dark"))
    told = await outcome(record)
    assert "rejected" in told.content and "too dark" in told.content and "not counted" in told.content
    assert "Rejected by" in request.content
    assert [r.json["prompt"] for r in harness.api.requests] == ["a castle"]
    assert await harness.check_ledger() == {"reserved": 0, "committed": 1, "refunded": 1}


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_request_decided_before_the_bot_has_its_id_is_still_marked(harness: BotHarness, decision: str) -> None:
    """Discord shows the request (and its buttons) before the bot has read Discord's answer to posting it."""
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    moderator = member(harness, "mod", permissions=MODERATOR)
    log_channel = await setup_mod_log(harness, admin)
    await configure(harness, admin, "moderation approval", mode="all")
    posting = harness.discord.hold_next(
        lambda r: r.method == "POST" and r.path == f"/channels/{log_channel.id}/messages" and "approval:" in r.text()
    )

    record = await harness.draw(alice, prompt="a castle")
    await asyncio.wait_for(posting.reached.wait(), 5)
    request = await approval_request(harness, log_channel)
    assert "done" in (await outcome(await harness.decide(request, decision, moderator, "no"))).content.lower()
    assert not request.components and ("Approved by" if decision == "approve" else "Rejected by") in request.content
    posting.release()

    final = await outcome(record)
    assert bool(final.attachments) is (decision == "approve")
    assert "Waiting for a moderator" not in harness.discord.all_request_text()  # the decision came first
    committed = int(decision == "approve")
    assert await harness.check_ledger() == {"reserved": 0, "committed": committed, "refunded": 1 - committed}


class SlowChannel:
    """While on, the fake Discord answers every request to `channel` with 429 and a Retry-After of `seconds`
    (as Discord does to a busy channel): whatever the bot does there takes `seconds` longer."""

    def __init__(self, harness: BotHarness, channel: FakeChannel, seconds: float = 3.5) -> None:
        self.clock = harness.discord.clock
        self.path = f"/channels/{channel.id}/"
        self.seconds = seconds
        self.until = 0.0
        self.held: list[RequestRecord] = []
        harness.discord.rate_limit_next(self, retry_after=seconds, times=10**6)

    def __call__(self, request: RequestRecord) -> bool:
        slow = self.path in request.path and request.timestamp < self.until
        if slow:
            self.held.append(request)
        return slow

    def slow_down(self) -> int:
        """From now on, for `seconds` (the bot's retries come after that and go through); returns how many
        requests were held so far."""
        self.until = self.clock() + self.seconds
        return len(self.held)


async def acknowledged_in_time(record: InteractionRecord) -> None:
    """Discord's limit is 3 s; the fake refuses a later answer (10062), so it would never come."""
    await record.wait_for_ack(timeout=5)
    assert record.ack_delay is not None and record.ack_delay < 3.0, record.ack_delay


async def test_a_slow_mod_log_never_delays_an_answer_past_discords_3_seconds(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    moderator = member(harness, "mod", permissions=MODERATOR)
    log_channel = await setup_mod_log(harness, admin)
    await configure(harness, admin, "moderation approval", mode="all")
    slow = SlowChannel(harness, log_channel)

    approved = await harness.draw(alice, prompt="a castle")
    request = await approval_request(harness, log_channel)
    held = slow.slow_down()
    click = await harness.discord.click(request, request.custom_ids[0], user=moderator)
    assert request.custom_ids[0].startswith("approval:approve:")
    await acknowledged_in_time(click)
    assert "Done" in (await outcome(click, timeout=10)).content and "Approved by" in request.content
    assert (await outcome(approved, timeout=10)).attachments
    assert len(slow.held) > held  # the mod log was slow indeed

    rejected = await harness.draw(alice, prompt="a dungeon")
    request = await approval_request(harness, log_channel)
    slow.slow_down()
    click = await harness.discord.click(request, request.custom_ids[1], user=moderator)
    assert request.custom_ids[1].startswith("approval:reject:")
    await acknowledged_in_time(click)
    assert click.modal is not None
    held = slow.slow_down()
    submitted = await harness.discord.submit_modal(click.modal["custom_id"], {"reason": "no"}, user=moderator)
    await acknowledged_in_time(submitted)
    assert "Done" in (await outcome(submitted, timeout=10)).content and "Rejected by" in request.content
    assert "rejected" in (await outcome(rejected)).content
    assert len(slow.held) > held

    held = slow.slow_down()
    refused = await harness.draw(alice, prompt="nsfw poster")
    await acknowledged_in_time(refused)
    assert refused.response_type == 4 and "can't be used in this server" in (await outcome(refused)).content
    await harness.discord.wait_for_channel_message(log_channel, lambda m: "Request refused" in str(m.embeds), 10)
    assert len(slow.held) > held
    assert await harness.check_ledger() == {"reserved": 0, "committed": 1, "refunded": 1}


async def test_untrusted_mode_lets_trusted_roles_through(harness: BotHarness) -> None:
    admin = member(harness, "admin", permissions=ADMIN)
    trusted = harness.discord.add_role(name="trusted")
    await setup_mod_log(harness, admin)
    await configure(harness, admin, "moderation approval", mode="untrusted")
    await configure(harness, admin, "moderation trust", role=trusted)
    assert (await outcome(await harness.draw(member(harness, "t", roles=[trusted])))).attachments
    await pending(await harness.draw(member(harness, "u")))


async def test_approval_needs_a_mod_log(harness: BotHarness) -> None:
    admin = member(harness, "admin", permissions=ADMIN)
    answer = await configure(harness, admin, "moderation approval", mode="all")
    assert "needs a mod-log channel" in answer.content
    assert (await harness.bot.policy.get(harness.discord.guild.id)).approval_mode.value == "off"


@pytest.mark.both_databases
async def test_pending_request_survives_a_restart_and_expires_with_a_refund(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"APPROVAL_SWEEP_SECONDS": "0.1"}) as harness:
        admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
        moderator = member(harness, "mod", permissions=MODERATOR)
        log_channel = await setup_mod_log(harness, admin)
        await configure(harness, admin, "moderation approval", mode="all")
        first = await harness.draw(alice, prompt="approved after a restart")
        await pending(first)
        first_request = await approval_request(harness, log_channel)
        second = await harness.draw(member(harness, "bob"), prompt="expires")
        await pending(second)

        await harness.restart()
        approve = next(c for c in first_request.custom_ids if c.startswith("approval:approve:"))
        await outcome(await harness.discord.click(first_request, approve, user=moderator))
        assert (await outcome(first)).attachments

        job_id = next(
            job.id for job in await harness.bot.jobs.recent(guild_id=harness.discord.guild.id, user_id=second.user.id)
        )
        assert harness.store is not None
        await harness.store.update_job(job_id, approval_expires_at="2000-01-01T00:00:00.000000+00:00")
        told = await outcome(second)
        assert "No moderator decided" in told.content
        assert await harness.check_ledger() == {"reserved": 0, "committed": 1, "refunded": 1}


@pytest.mark.both_databases
async def test_forget_me_deletes_history_but_keeps_the_quota(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"DAILY_QUOTA": "2"}) as harness:
        alice = member(harness, "alice")
        for _ in range(2):
            await outcome(await harness.draw(alice))
        await harness.check_ledger()
        answer = await outcome(await harness.discord.invoke("forget-me", user=alice))
        assert answer.ephemeral and "2 of your past generations" in answer.content
        history = await outcome(await harness.discord.invoke("history", user=alice))
        assert "haven't generated" in history.content
        refused = await outcome(await harness.draw(alice))
        assert "used all 2" in refused.content


async def test_admin_forgets_a_member_who_left(harness: BotHarness) -> None:
    admin, alice = member(harness, "admin", permissions=ADMIN), member(harness, "alice")
    await outcome(await harness.draw(alice))
    await harness.check_ledger()
    answer = await configure(harness, admin, "moderation forget", user_id=str(alice.id))
    assert "Deleted 1" in answer.content
    assert await harness.bot.jobs.recent(guild_id=harness.discord.guild.id, user_id=alice.id) == []
    assert not is_status(answer)


async def test_a_long_refusal_is_cut_to_discords_limit(harness: BotHarness) -> None:
    await harness.bot.policy.update(harness.discord.guild.id, allowed_channels=tuple(range(10**17, 10**17 + 150)))
    refused = await outcome(await harness.draw(member(harness, "alice")))
    assert refused.ephemeral and len(refused.content) <= 2000 and refused.content.endswith("…")


async def test_missing_channel_permissions_are_said_before_anything_is_spent(harness: BotHarness) -> None:
    quiet = harness.discord.add_channel(name="quiet")
    harness.discord.set_overwrite(
        quiet, harness.discord.bot_member, deny=discord.Permissions(embed_links=True, attach_files=True).value
    )
    refused = await outcome(await harness.discord.invoke("draw", channel=quiet, prompt="a cat"))
    assert refused.ephemeral and "embed_links, attach_files" in refused.content
    assert harness.api.requests == []


async def test_a_log_channel_the_bot_cannot_write_in_is_refused(harness: BotHarness) -> None:
    admin = member(harness, "admin", permissions=ADMIN)
    hidden = harness.discord.add_channel(name="hidden")
    harness.discord.set_overwrite(
        hidden, harness.discord.bot_member, deny=discord.Permissions(send_messages=True).value
    )
    answer = await configure(harness, admin, "moderation log-channel", channel=hidden)
    assert "I can't post in" in answer.content
    assert (await harness.bot.policy.get(harness.discord.guild.id)).mod_log_channel_id is None
    visible = harness.discord.add_channel(name="visible")
    assert "Mod log channel" in (await configure(harness, admin, "moderation log-channel", channel=visible)).content
