"""/draw, /character and /quota through the real discord.py client, the fake Discord and the fake 302.ai."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.e2e.harness import API_KEY, BotHarness, image_attachment, outcome, running_harness
from tests.fakes.discord import FakeMessage, Mentions, RequestRecord
from tests.fakes.doubao_server import FakeResponse

MIB = 1024 * 1024


def embed_fields(message: FakeMessage) -> dict[str, str]:
    assert message.embeds, f"no embed on message {message.id}"
    return {field["name"]: field["value"] for field in message.embeds[0].get("fields", [])}


@pytest.mark.both_databases
async def test_draw_defers_at_once_then_posts_the_served_image(harness: BotHarness) -> None:
    alice = harness.discord.add_user("alice")
    record = await harness.draw(alice, prompt="a red fox", size="16:9", seed=1234, steps=20, upscale=True)
    await record.wait_for_ack()
    assert record.response_type == 5  # deferred "thinking"
    assert record.ack_delay is not None and record.ack_delay < 1.0
    message = await outcome(record)
    assert not message.ephemeral
    assert image_attachment(message) == harness.api.image_bytes(harness.api.served_images[-1])
    sent = harness.api.requests[-1]
    assert sent.path == "/doubao/drawing"
    assert (sent.json["width"], sent.json["height"], sent.json["seed"]) == (768, 432, 1234)
    assert (sent.json["ddim_steps"], sent.json["use_sr"], sent.json["model_version"]) == (
        20,
        True,
        "general_v2.1_L",
    )
    embed = message.embeds[0]
    assert embed["description"] == "a red fox"
    assert embed["image"]["url"] == f"attachment://{message.attachments[0].filename}"
    fields = embed_fields(message)
    assert fields["Requested by"] == f"<@{alice.id}>"
    assert fields["Size"] == "768×432"
    assert fields["Seed"] == "1234"
    assert fields["Left today"] == "4 of 5"
    assert not message.pinged
    assert await harness.ledger() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_random_seed_shown_is_the_seed_sent(harness: BotHarness) -> None:
    message = await outcome(await harness.draw())
    assert embed_fields(message)["Seed"] == str(harness.api.requests[-1].json["seed"])


async def test_draw_options_reach_the_api(harness: BotHarness) -> None:
    record = await harness.draw(model="general_v2.0", style="aesthetic", scale=7.5, rewrite_prompt=False)
    await outcome(record)
    sent = harness.api.requests[-1].json
    assert sent["model_version"] == "general_v2.0"
    assert sent["req_schedule_conf"] == "general_v20_9B_pe"
    assert sent["scale"] == 7.5 and sent["use_pre_llm"] is False and sent["use_sr"] is False


async def test_omitted_options_reach_the_api_as_the_documented_defaults(harness: BotHarness) -> None:
    await outcome(await harness.draw())
    sent = harness.api.requests[-1].json
    assert (sent["width"], sent["height"], sent["model_version"]) == (768, 768, "general_v2.1_L")
    assert (sent["scale"], sent["ddim_steps"], sent["use_pre_llm"], sent["use_sr"]) == (3.5, 25, True, False)
    assert "req_schedule_conf" not in sent  # no style: the API's own
    reference = harness.discord.attachment("face.jpg", content_type="image/jpeg", width=512, height=512)
    await outcome(await harness.discord.invoke("character", prompt="as an astronaut", reference=reference))
    sent = harness.api.requests[-1].json
    assert (sent["width"], sent["height"], sent["scale"], sent["ddim_steps"]) == (768, 768, 3.5, 9)
    assert (sent["ref_ip_weight"], sent["ref_id_weight"], sent["use_sr"]) == (0.7, 0.36, False)


@pytest.mark.both_databases
async def test_character_sends_the_reference_and_posts_the_image(harness: BotHarness) -> None:
    reference = harness.discord.attachment("face.jpg", content_type="image/jpeg", width=512, height=512)
    record = await harness.discord.invoke(
        "character", prompt="as an astronaut", reference=reference, subject_strength=0.5, face_strength=0.3
    )
    message = await outcome(record)
    sent = harness.api.requests[-1]
    assert sent.path == "/doubao/drawing/character"
    assert sent.json["image_urls"] == [reference.url]
    assert (sent.json["ref_ip_weight"], sent.json["ref_id_weight"], sent.json["ddim_steps"]) == (0.5, 0.3, 9)
    assert image_attachment(message) == harness.api.image_bytes(harness.api.served_images[-1])
    assert "Model" not in embed_fields(message)


async def test_synced_commands_carry_discords_own_constraints(harness: BotHarness) -> None:
    commands = {command["name"]: command for command in harness.discord.synced_commands()}
    assert set(commands) == {"draw", "character", "quota", "history", "settings", "forget-me"}
    draw = {option["name"]: option for option in commands["draw"]["options"]}
    assert draw["prompt"]["max_length"] == 800 and draw["prompt"]["required"]
    assert [choice["value"] for choice in draw["size"]["choices"]] == [
        "1:1",
        "4:3",
        "3:4",
        "16:9",
        "9:16",
        "3:2",
        "2:3",
    ]
    assert [choice["value"] for choice in draw["model"]["choices"]] == [
        "general_v2.1_L",
        "general_v2.0_L",
        "general_v2.0",
    ]
    assert [choice["value"] for choice in draw["style"]["choices"]] == ["standard", "aesthetic"]
    assert not any(draw[name].get("required") for name in ("size", "model", "style", "seed", "scale", "steps"))
    assert (draw["scale"]["min_value"], draw["scale"]["max_value"]) == (1, 10)
    assert (draw["steps"]["min_value"], draw["steps"]["max_value"]) == (1, 50)
    character = {option["name"]: option for option in commands["character"]["options"]}
    assert character["reference"]["type"] == 11 and character["reference"]["required"]
    assert (character["face_strength"]["min_value"], character["face_strength"]["max_value"]) == (0, 1)


async def assert_refused_for_free(harness: BotHarness, record, expected: str) -> None:
    await record.wait_for_ack()
    message = await outcome(record)
    assert record.response_type == 4  # answered at once, not deferred
    assert message.ephemeral
    assert expected in message.content
    assert harness.api.requests == []
    assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 0}


async def test_blank_prompt_is_refused_privately_for_free(harness: BotHarness) -> None:
    await assert_refused_for_free(harness, await harness.draw(prompt="   "), "can't be empty")


async def test_reference_that_is_not_an_image_is_refused(harness: BotHarness) -> None:
    notes = harness.discord.attachment(
        "notes.txt", content=b"hello", content_type="text/plain", width=None, height=None
    )
    record = await harness.discord.invoke("character", prompt="p", reference=notes)
    await assert_refused_for_free(harness, record, "PNG, JPEG or WEBP")


async def test_reference_over_the_size_limit_is_refused(harness: BotHarness) -> None:
    big = harness.discord.attachment("big.png", size=10 * MIB + 1)
    record = await harness.discord.invoke("character", prompt="p", reference=big)
    await assert_refused_for_free(harness, record, "10.0 MB")


async def test_commands_in_a_dm_say_they_are_for_servers(harness: BotHarness) -> None:
    record = await harness.discord.invoke("draw", guild=None, prompt="a cat")
    await assert_refused_for_free(harness, record, "servers only")
    record = await harness.discord.invoke("quota", guild=None)
    message = await outcome(record)
    assert "servers only" in message.content


@pytest.mark.both_databases
async def test_exhausted_quota_says_when_it_resets_and_costs_nothing(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"DAILY_QUOTA": "2"}) as harness:
        for _ in range(2):
            await outcome(await harness.draw())
        harness.api.reset_stats()
        record = await harness.draw()
        message = await outcome(record)
        assert message.ephemeral and record.response_type == 4
        assert "used all 2" in message.content and "<t:" in message.content
        assert harness.api.requests == []
        assert await harness.ledger() == {"reserved": 0, "committed": 2, "refunded": 0}


async def test_quota_command_shows_used_left_and_reset(harness: BotHarness) -> None:
    await outcome(await harness.draw())
    message = await outcome(await harness.discord.invoke("quota"))
    assert message.ephemeral
    assert "**1** of **5**" in message.content and "**4** left" in message.content
    assert "<t:" in message.content


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (FakeResponse.business_error(50411), "content policy"),
        (FakeResponse.business_error(50512), "content policy"),
        (FakeResponse.gateway_error(-10004, "Insufficient balance"), "credit"),
        (FakeResponse.gateway_error(-10001, "Missing key"), "credit"),
        (FakeResponse.http_status(503), "busy"),
        (FakeResponse.http_status(429, retry_after=0), "busy"),
        (FakeResponse.business_error(50430), "busy"),
        (FakeResponse.no_image(), "couldn't use"),
    ],
)
async def test_api_failure_refunds_and_tells_the_user(harness: BotHarness, response, says: str) -> None:
    harness.api.default_response = response
    record = await harness.draw()
    message = await outcome(record)
    assert says in message.content and "not counted" in message.content
    assert not message.attachments and not message.pinged
    assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 1}
    quota = await outcome(await harness.discord.invoke("quota"))
    assert "**5** left" in quota.content


async def test_timeout_refunds(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"API_TIMEOUT_SECONDS": "0.3", "API_MAX_ATTEMPTS": "1"}) as harness:
        harness.api.default_response = FakeResponse.hang()
        message = await outcome(await harness.draw())
        assert "busy" in message.content and "not counted" in message.content
        assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 1}


@pytest.mark.both_databases
async def test_download_failure_refunds(harness: BotHarness) -> None:
    harness.api.serve_file("gone", b"", status=404)
    harness.api.queue(FakeResponse.success_urls("gone"))
    message = await outcome(await harness.draw())
    assert "couldn't download" in message.content
    assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_upload_refused_by_discord_refunds_and_tells_the_user(tmp_path: Path) -> None:
    # The interaction token is gone, so the image goes to the channel, where Discord refuses the file (413).
    async with running_harness(tmp_path, token_ttl=0.5, upload_limit=100, attachment_size_limit=10 * MIB) as harness:
        harness.api.default_response = FakeResponse.delay(0.8, then=FakeResponse.success_urls())
        alice = harness.discord.add_user("alice")
        await harness.draw(alice)
        told = await harness.discord.wait_for_channel_message(
            harness.discord.general, lambda m: "couldn't post it" in m.content, timeout=5
        )
        assert told.pinged.users == {alice.id} and not told.pinged.everyone
        assert any(request.status == 413 for request in harness.discord.requests)
        assert await harness.ledger() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_image_over_the_channel_limit_is_made_to_fit(tmp_path: Path) -> None:
    async with running_harness(tmp_path, upload_limit=40_000) as harness:
        harness.api.new_image("large", size=(512, 512))
        harness.api.add_image("noisy", _noisy_png(400))
        harness.api.queue(FakeResponse.success_urls("noisy"))
        message = await outcome(await harness.draw())
        data = image_attachment(message)
        assert len(data) <= 40_000 and data[:2] == b"\xff\xd8"  # a JPEG
        assert await harness.ledger() == {"reserved": 0, "committed": 1, "refunded": 0}


def _noisy_png(side: int) -> bytes:
    import io
    import random

    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(3).randbytes(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_slow_api_still_delivers(tmp_path: Path) -> None:
    async with running_harness(tmp_path, ack_deadline=0.5) as harness:
        harness.api.default_response = FakeResponse.delay(1.0, then=FakeResponse.success_urls())
        record = await harness.draw()
        message = await outcome(record, timeout=5)
        assert record.ack_delay is not None and record.ack_delay < 0.5
        assert message.attachments
        assert await harness.ledger() == {"reserved": 0, "committed": 1, "refunded": 0}


def token_refusals(harness: BotHarness) -> list[RequestRecord]:
    return [request for request in harness.discord.requests if request.error_code == 50027]


async def test_a_token_discord_refuses_unexpectedly_sends_the_image_to_the_channel(tmp_path: Path) -> None:
    # The token dies after 0.5 s while discord.py expects it to live 15 minutes: Discord answers 50027.
    async with running_harness(tmp_path, token_ttl=0.5, honest_expiry=False) as harness:
        harness.api.default_response = FakeResponse.delay(0.8, then=FakeResponse.success_urls())
        alice = harness.discord.add_user("alice")
        harness.discord.add_member(harness.discord.guild, alice)
        record = await harness.draw(alice, prompt="hello @everyone")
        message = await harness.discord.wait_for_channel_message(
            harness.discord.general, lambda m: bool(m.attachments), timeout=5
        )
        assert token_refusals(harness)
        assert message.interaction_id is None
        assert f"<@{alice.id}>" in message.content
        assert message.pinged.users == {alice.id} and not message.pinged.everyone and not message.pinged.roles
        assert image_attachment(message) == harness.api.image_bytes(harness.api.served_images[-1])
        await record.wait_for(lambda r: r.original is not None and r.original.deleted, 5, "the status removed")
        assert await harness.ledger() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_a_token_near_its_end_is_not_used_the_answer_goes_to_the_channel(tmp_path: Path) -> None:
    # The token lives 30.5 s, and discord.py knows it. The bot keeps a safety margin of 30 s: after half a second it
    # writes to the channel, although Discord would still take the token (no 50027 is ever seen).
    async with running_harness(tmp_path, token_ttl=30.5) as harness:

        def answer(payload: dict[str, object]) -> FakeResponse:
            refused = "refused" in str(payload["prompt"])
            return FakeResponse.delay(1.5, then=FakeResponse.business_error(50411) if refused else None)

        harness.api.default_response = answer
        alice, bob = harness.discord.add_user("alice"), harness.discord.add_user("bob")
        for who in (alice, bob):
            harness.discord.add_member(harness.discord.guild, who)
        drawn = await harness.draw(alice, prompt="a lighthouse @everyone")
        refused = await harness.draw(bob, prompt="refused @everyone")
        general = harness.discord.general
        image = await harness.discord.wait_for_channel_message(general, lambda m: bool(m.attachments), timeout=10)
        told = await harness.discord.wait_for_channel_message(general, lambda m: "content policy" in m.content)
        assert image.interaction_id is None and image.pinged == Mentions(users=frozenset({alice.id}))
        assert told.interaction_id is None and told.pinged == Mentions(users=frozenset({bob.id}))
        for record in (drawn, refused):  # the status messages, left saying "generating", are removed
            await record.wait_for(lambda r: r.original is not None and r.original.deleted, 5, "the status removed")
        assert token_refusals(harness) == []
        assert await harness.check_ledger() == {"reserved": 0, "committed": 1, "refunded": 1}


async def test_mentions_in_prompts_ping_nobody(harness: BotHarness) -> None:
    bob = harness.discord.add_user("bob")
    role = harness.discord.add_role(name="mods", mentionable=True)
    prompt = f"@everyone @here <@{bob.id}> <@&{role.id}> draw us"
    message = await outcome(await harness.draw(prompt=prompt))
    assert message.embeds[0]["description"] == prompt
    assert not message.pinged
    assert message.allowed_mentions == {"parse": []} or message.allowed_mentions.get("parse") == []
    for sent in harness.discord.requests:
        body = sent.json or {}
        if "content" in body or "embeds" in body:
            assert body.get("allowed_mentions", {}).get("parse") == [], sent.path


@pytest.mark.both_databases
async def test_twenty_concurrent_requests_from_ten_users_all_complete(harness: BotHarness) -> None:
    users = [harness.discord.add_user(f"user{n}") for n in range(10)]
    harness.api.default_response = lambda _payload: FakeResponse.delay(0.1, then=FakeResponse.success_urls())
    records = await asyncio.gather(*(harness.draw(users[n % 10], prompt=f"picture {n}") for n in range(20)))
    messages = await asyncio.gather(*(outcome(record) for record in records))
    assert all(message.attachments for message in messages)
    assert all(record.ack_delay is not None and record.ack_delay < 3.0 for record in records)
    assert len({image_attachment(message) for message in messages}) == 20
    assert harness.api.max_in_flight <= harness.settings.max_concurrent_jobs
    assert await harness.ledger() == {"reserved": 0, "committed": 20, "refunded": 0}


@pytest.mark.both_databases
async def test_secrets_reach_neither_discord_nor_the_logs(harness: BotHarness, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    harness.api.queue(FakeResponse.gateway_error(-10001, f"bad key {API_KEY}"))
    await outcome(await harness.draw())
    await outcome(await harness.draw())
    sent_to_discord = harness.discord.all_request_text()
    assert API_KEY not in sent_to_discord
    assert API_KEY not in caplog.text and harness.discord.bot_token not in caplog.text
    assert API_KEY not in repr(harness.bot.jobs.__dict__) and API_KEY not in repr(harness.settings)
    password = urlsplit(harness.settings.database_url.reveal()).password  # PostgreSQL's
    if password:
        assert unquote(password) not in caplog.text and password not in caplog.text
        assert unquote(password) not in sent_to_discord and password not in repr(harness.settings)


@pytest.mark.both_databases
async def test_restart_keeps_quotas_and_does_not_resync(harness: BotHarness) -> None:
    for _ in range(2):
        await outcome(await harness.draw())
    assert (await harness.ledger())["committed"] == 2
    assert len(harness.discord.command_syncs) == 1
    await harness.restart()
    message = await outcome(await harness.discord.invoke("quota"))
    assert "**2** of **5**" in message.content
    assert len(harness.discord.command_syncs) == 1
    assert await harness.ledger() == {"reserved": 0, "committed": 2, "refunded": 0}


async def test_when_discord_refuses_the_edit_the_user_is_told_in_the_channel(harness: BotHarness) -> None:
    alice = harness.discord.add_user("alice")
    harness.discord.add_member(harness.discord.guild, alice)
    harness.api.default_response = FakeResponse.business_error(50411)
    # Every edit of the status message is rate limited until discord.py gives up.
    harness.discord.rate_limit_next(lambda request: request.method == "PATCH", retry_after=0.01, times=100)
    await harness.draw(alice)
    told = await harness.discord.wait_for_channel_message(
        harness.discord.general, lambda m: "content policy" in m.content, timeout=10
    )
    assert told.content.startswith(f"<@{alice.id}>") and told.pinged.users == {alice.id}
    assert await harness.check_ledger() == {"reserved": 0, "committed": 0, "refunded": 1}
