"""Jobs through the fake Discord: live status, cancel, limits, fairness, result buttons before and after a restart."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import discord
import pytest

from tests.e2e.harness import BotHarness, image_attachment, is_status, outcome, running_harness
from tests.fakes.discord import FakeMessage, FakeUser, InteractionRecord
from tests.fakes.doubao_server import FakeResponse

SLOW = {"MAX_CONCURRENT_JOBS": "1", "MAX_JOBS_PER_USER": "10", "DAILY_QUOTA": "20"}


def slow_api(harness: BotHarness, seconds: float = 0.3) -> None:
    harness.api.default_response = lambda _payload: FakeResponse.delay(seconds, then=FakeResponse.success_urls())


def member(harness: BotHarness, name: str, *, manage_messages: bool = False) -> FakeUser:
    user = harness.discord.add_user(name)
    permissions = discord.Permissions(manage_messages=True).value if manage_messages else None
    harness.discord.add_member(harness.discord.guild, user, permissions=permissions)
    return user


async def status_line(record: InteractionRecord, starts: str, timeout: float = 5.0) -> FakeMessage:  # noqa: ASYNC109
    await record.wait_for(lambda r: r.message is not None and r.message.content.startswith(starts), timeout, starts)
    assert record.message is not None
    return record.message


@pytest.mark.both_databases
async def test_status_shows_position_then_generating_then_the_image(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env=SLOW) as harness:
        slow_api(harness)
        first = await harness.draw(member(harness, "first"))
        await status_line(first, "🎨")  # running before the next arrives (on PostgreSQL, they could swap places)
        second = await harness.draw(member(harness, "second"))
        await second.wait_for(lambda r: r.message is not None and "position 1" in r.message.content, 5, "position 1")
        queued = await status_line(second, "⏳")
        assert any(custom_id.startswith("job:cancel:") for custom_id in queued.custom_ids)
        await status_line(second, "🎨")
        result = await outcome(second)
        assert result.attachments and not is_status(result)
        assert {custom_id.split(":")[1] for custom_id in result.custom_ids} == {
            "reroll",
            "vary",
            "ref",
            "details",
            "delete",
        }
        seen = [edit["content"] for edit in result.edits]
        assert any(content.startswith("⏳") for content in seen) and any(content.startswith("🎨") for content in seen)
        assert (await outcome(first)).attachments
        await harness.check_ledger()


@pytest.mark.sqlite_only(
    reason="four requests sent within a millisecond are queued in the order sent only on"
    " SQLite's single connection; on PostgreSQL they are admitted at the same time"
)
async def test_positions_move_and_edits_are_throttled(tmp_path: Path) -> None:
    env = SLOW | {"STATUS_EDIT_INTERVAL_SECONDS": "0.4"}
    async with running_harness(tmp_path, env=env) as harness:
        slow_api(harness, 0.3)
        records = [await harness.draw(member(harness, f"user{n}")) for n in range(4)]
        last = records[-1]
        await outcome(last, timeout=15)
        message = last.message
        assert message is not None
        # Status edits keep the interval; the image itself (the last edit) does not wait for it.
        times = [edit["edited_at"] for edit in message.edits if edit["edited_at"] is not None]
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
        assert gaps and min(gaps) >= 0.35, gaps
        positions = [edit["content"] for edit in message.edits if edit["content"].startswith("⏳")]
        # The fourth request waits behind three (or four, for the moment before the first job starts).
        numbers = [int(position.split("position ")[1].split(".")[0]) for position in positions]
        assert numbers[0] in (3, 4) and numbers == sorted(numbers, reverse=True) and len(numbers) >= 2, positions
        await harness.check_ledger()


async def test_the_image_is_posted_while_the_throttle_would_still_forbid_an_edit(tmp_path: Path) -> None:
    # A status edit may come once a minute; the image must not wait for that minute.
    env = SLOW | {"STATUS_EDIT_INTERVAL_SECONDS": "60"}
    async with running_harness(tmp_path, env=env) as harness:
        slow_api(harness, 0.5)
        record = await harness.draw(member(harness, "alice"))
        result = await outcome(record, timeout=10)
        assert result.attachments and not is_status(result)
        # A status edit was made (the one allowed this minute), and the image came after it all the same.
        assert any(edit["content"][:1] in ("⏳", "🎨") for edit in result.edits), result.edits
        await harness.check_ledger()


async def test_a_slow_discord_does_not_hold_the_api_slot(tmp_path: Path) -> None:
    # One API slot; posting the first image is slow (a rate-limited Discord): the second job is generated meanwhile.
    async with running_harness(tmp_path, env=SLOW) as harness:
        first = await harness.draw(member(harness, "first"), prompt="first")
        # Every edit of the first job's message is answered "429, retry after 3 s" for a while.
        await first.wait_for_ack()
        harness.discord.rate_limit_next(
            lambda request: (
                request.method == "PATCH"
                and f"/webhooks/{harness.discord.application_id}/{first.token}/" in request.path
            ),
            retry_after=3.0,
            times=3,
        )
        second = await harness.draw(member(harness, "second"), prompt="second")
        await asyncio.sleep(1.5)
        assert [request.json["prompt"] for request in harness.api.requests] == ["first", "second"]
        assert not (first.message and first.message.attachments)  # the first image is still on its way
        assert (await outcome(first, timeout=10)).attachments and (await outcome(second, timeout=10)).attachments
        await harness.check_ledger()


@pytest.mark.both_databases
async def test_cancel_by_the_requester_refunds(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env=SLOW) as harness:
        slow_api(harness, 1.5)  # the second job stays queued while it is cancelled
        await status_line(await harness.draw(member(harness, "first"), prompt="first"), "🎨")
        alice = member(harness, "alice")
        record = await harness.draw(alice, prompt="second")
        queued = await status_line(record, "⏳")
        cancel = next(custom_id for custom_id in queued.custom_ids if custom_id.startswith("job:cancel:"))
        stranger = member(harness, "stranger")
        refused = await outcome(await harness.discord.click(queued, cancel, user=stranger))
        assert refused.ephemeral and "Only the person" in refused.content
        click = await harness.discord.click(queued, cancel, user=alice)
        await click.wait_for_ack()
        cancelled = await status_line(record, "✖️")
        assert "not counted" in cancelled.content and not cancelled.components
        await harness.check_ledger()
        assert [request.json["prompt"] for request in harness.api.requests] == ["first"]
        assert (await harness.ledger())["refunded"] == 1


async def test_a_moderator_can_cancel(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env=SLOW) as harness:
        slow_api(harness, 1.5)  # the second job stays queued while it is cancelled
        await harness.draw(member(harness, "first"))
        record = await harness.draw(member(harness, "alice"))
        queued = await status_line(record, "⏳")
        cancel = next(custom_id for custom_id in queued.custom_ids if custom_id.startswith("job:cancel:"))
        await harness.discord.click(queued, cancel, user=member(harness, "mod", manage_messages=True))
        await status_line(record, "✖️")
        await harness.check_ledger()


@pytest.mark.both_databases
async def test_queue_full_and_per_user_cap_are_refused_for_free(tmp_path: Path) -> None:
    env = {"MAX_CONCURRENT_JOBS": "1", "MAX_QUEUE": "1", "MAX_JOBS_PER_USER": "1"}
    async with running_harness(tmp_path, env=env) as harness:
        slow_api(harness, 0.5)
        alice, bob, carol = (member(harness, name) for name in ("alice", "bob", "carol"))
        running = await harness.draw(alice)
        await status_line(running, "🎨")
        again = await outcome(await harness.draw(alice))
        assert again.ephemeral and "already have 1" in again.content
        await status_line(await harness.draw(bob), "⏳")
        full = await outcome(await harness.draw(carol))
        assert full.ephemeral and "queue is full" in full.content
        await harness.bot.jobs.wait_idle()
        totals = await harness.check_ledger()
        assert totals == {"reserved": 0, "committed": 2, "refunded": 0}


async def test_by_default_a_member_has_at_most_two_jobs_at_once(harness: BotHarness) -> None:
    slow_api(harness, 1.0)
    alice = member(harness, "alice")
    first, second = await harness.draw(alice), await harness.draw(alice)
    await status_line(first, "🎨")
    await status_line(second, "🎨")
    refused = await outcome(await harness.draw(alice))
    assert refused.ephemeral and "already have 2" in refused.content
    assert (await outcome(first)).attachments and (await outcome(second)).attachments
    assert await harness.check_ledger() == {"reserved": 0, "committed": 2, "refunded": 0}


async def test_b_is_served_before_as_third(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env=SLOW) as harness:
        slow_api(harness, 0.05)
        alice, bob = member(harness, "alice"), member(harness, "bob")
        records = [await harness.draw(alice, prompt=f"A{n}") for n in range(6)]
        records.append(await harness.draw(bob, prompt="B0"))
        await asyncio.gather(*(outcome(record, timeout=15) for record in records))
        order = [request.json["prompt"] for request in harness.api.requests]
        assert order.index("B0") < order.index("A2"), order
        await harness.check_ledger()


async def finished_result(harness: BotHarness, user: FakeUser, **options: object) -> FakeMessage:
    message = await outcome(await harness.draw(user, **options))
    assert message.attachments, message.content
    await harness.check_ledger()
    return message


def button(message: FakeMessage, action: str) -> str:
    return next(custom_id for custom_id in message.custom_ids if custom_id.startswith(f"job:{action}:"))


async def exercise_result_buttons(harness: BotHarness, message: FakeMessage, alice: FakeUser) -> None:
    """Re-roll, Details, Vary, Use as reference and Delete on a posted result."""
    first_request = harness.api.requests[-1].json
    bob = member(harness, f"bob{len(harness.api.requests)}")

    reroll = await harness.discord.click(message, button(message, "reroll"), user=bob)
    rerolled = await outcome(reroll)
    assert rerolled.attachments and rerolled.id != message.id
    sent = harness.api.requests[-1].json
    assert sent["prompt"] == first_request["prompt"] and sent["width"] == first_request["width"]
    assert sent["seed"] != first_request["seed"]
    assert f"<@{bob.id}>" in str(rerolled.embeds)  # charged to and credited to the clicker

    details = await outcome(await harness.discord.click(message, button(message, "details"), user=bob))
    assert details.ephemeral
    assert details.embeds[0]["description"] == first_request["prompt"]
    assert str(first_request["seed"]) in str(details.embeds[0]["fields"])

    vary = await harness.discord.click(message, button(message, "vary"), user=alice)
    await vary.wait_for_ack()
    assert vary.response_type == 9  # a modal
    assert vary.modal is not None
    submitted = await harness.discord.submit_modal(vary.modal["custom_id"], {"prompt": "a blue fox"}, user=alice)
    varied = await outcome(submitted)
    assert varied.attachments
    sent = harness.api.requests[-1].json
    assert (sent["prompt"], sent["seed"]) == ("a blue fox", first_request["seed"])

    reference = await harness.discord.click(message, button(message, "ref"), user=alice)
    await reference.wait_for_ack()
    assert reference.modal is not None
    submitted = await harness.discord.submit_modal(reference.modal["custom_id"], {"prompt": "as a knight"}, user=alice)
    assert (await outcome(submitted)).attachments
    sent = harness.api.requests[-1]
    assert sent.path == "/doubao/drawing/character" and sent.json["image_urls"] == [message.attachments[0].url]

    refused = await outcome(await harness.discord.click(message, button(message, "delete"), user=bob))
    assert refused.ephemeral and "Only the person" in refused.content and not message.deleted
    deleted = await outcome(await harness.discord.click(message, button(message, "delete"), user=alice))
    assert deleted.ephemeral and message.deleted
    await harness.check_ledger()


async def test_result_buttons(harness: BotHarness) -> None:
    alice = member(harness, "alice")
    message = await finished_result(harness, alice, prompt="a red fox", size="3:2")
    await exercise_result_buttons(harness, message, alice)


@pytest.mark.both_databases
async def test_result_buttons_after_a_restart(harness: BotHarness) -> None:
    alice = member(harness, "alice")
    message = await finished_result(harness, alice, prompt="a red fox", size="3:2")
    await harness.restart()
    await exercise_result_buttons(harness, message, alice)


@pytest.mark.both_databases
async def test_history_lists_the_last_ten_with_links(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env={"DAILY_QUOTA": "20", "MAX_JOBS_PER_USER": "20"}) as harness:
        alice = member(harness, "alice")
        messages = [await finished_result(harness, alice, prompt=f"picture {n}") for n in range(11)]
        harness.api.default_response = FakeResponse.business_error(50411)
        await outcome(await harness.draw(alice, prompt="refused one"))
        history = await outcome(await harness.discord.invoke("history", user=alice))
        assert history.ephemeral
        lines = history.content.splitlines()[1:]
        assert len(lines) == 10
        assert "failed" in lines[0] and "refused one" in lines[0]
        assert "done" in lines[1] and "picture 10" in lines[1] and str(messages[10].id) in lines[1]
        assert all("picture 0" not in line for line in lines)
        empty = await outcome(await harness.discord.invoke("history", user=member(harness, "new")))
        assert "haven't generated" in empty.content


async def test_buttons_on_a_message_whose_job_is_unknown(harness: BotHarness) -> None:
    alice = member(harness, "alice")
    message = await finished_result(harness, alice)
    forged = message.custom_ids[0].rsplit(":", 1)[0] + ":" + "0" * 32
    message.components[0]["components"][0]["custom_id"] = forged
    answer = await outcome(await harness.discord.click(message, forged, user=alice))
    assert answer.ephemeral and "can't find" in answer.content


async def test_image_reaches_discord_byte_for_byte_after_a_queue(tmp_path: Path) -> None:
    async with running_harness(tmp_path, env=SLOW) as harness:
        slow_api(harness, 0.05)
        records = [await harness.draw(member(harness, f"u{n}")) for n in range(3)]
        messages = [await outcome(record) for record in records]
        served = [harness.api.image_bytes(name) for name in harness.api.served_images]
        assert sorted(image_attachment(message) for message in messages) == sorted(served)
        await harness.check_ledger()


async def test_two_members_varying_one_result_each_get_their_own(harness: BotHarness) -> None:
    alice, bob = member(harness, "alice"), member(harness, "bob")
    message = await finished_result(harness, alice, prompt="a red fox")
    vary_alice = await harness.discord.click(message, button(message, "vary"), user=alice)
    reference_bob = await harness.discord.click(message, button(message, "ref"), user=bob)
    await vary_alice.wait_for_ack()
    await reference_bob.wait_for_ack()
    assert vary_alice.modal["custom_id"] != reference_bob.modal["custom_id"]
    first = await harness.discord.submit_modal(vary_alice.modal["custom_id"], {"prompt": "a blue fox"}, user=alice)
    second = await harness.discord.submit_modal(reference_bob.modal["custom_id"], {"prompt": "a knight"}, user=bob)
    await outcome(first)
    await outcome(second)
    by_prompt = {request.json["prompt"]: request.path for request in harness.api.requests}
    assert by_prompt["a blue fox"] == "/doubao/drawing" and by_prompt["a knight"] == "/doubao/drawing/character"
    await harness.check_ledger()
