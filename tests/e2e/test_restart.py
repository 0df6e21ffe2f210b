"""Crashes (SIGKILL) and graceful stops (SIGTERM) of the real bot process, and what the next start does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import is_status, outcome
from tests.e2e.process import BotProcess, bot_process
from tests.fakes.discord import FakeUser, InteractionRecord, RequestRecord
from tests.fakes.doubao_server import FakeResponse

ONE_AT_A_TIME = {"MAX_CONCURRENT_JOBS": "1", "MAX_JOBS_PER_USER": "5"}


async def ledger(bot: BotProcess) -> tuple[dict[str, int], dict[str, int]]:
    async with bot.store() as store:
        return await store.ledger_totals(), await store.job_counts()


async def wait_for_api_calls(bot: BotProcess, count: int) -> None:
    for _ in range(500):
        if len(bot.api.requests) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} API calls, saw {len(bot.api.requests)}")


def user(bot: BotProcess, name: str) -> FakeUser:
    new = bot.discord.add_user(name)
    bot.discord.add_member(bot.discord.guild, new)
    return new


async def draw(bot: BotProcess, who: FakeUser, prompt: str) -> InteractionRecord:
    return await bot.discord.invoke("draw", user=who, prompt=prompt)


async def test_crash_while_running_refunds_and_tells_once(tmp_path: Path) -> None:
    async with bot_process(tmp_path) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = FakeResponse.hang()
        record = await draw(bot, user(bot, "alice"), "interrupted")
        await wait_for_api_calls(bot, 1)
        await bot.kill()
        bot.api.default_response = None
        await bot.start()
        told = await outcome(record)
        assert "restarted before your image was finished" in told.content and not told.pinged
        await asyncio.sleep(0.3)  # give a wrong second run or a second message the time to show
        assert len(bot.api.requests) == 1
        assert [m for m in bot.discord.channel_messages(bot.discord.general) if m.id != told.id] == []
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 0, "refunded": 1}
        assert counts["failed"] == 1
        assert len(bot.discord.command_syncs) == 1  # the restart did not register the commands again


async def test_crash_while_queued_requeues_the_job_that_never_reached_the_api(tmp_path: Path) -> None:
    async with bot_process(tmp_path, ONE_AT_A_TIME) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = FakeResponse.hang()
        running = await draw(bot, user(bot, "alice"), "was running")
        await wait_for_api_calls(bot, 1)
        queued = await draw(bot, user(bot, "bob"), "was queued")
        await queued.wait_for(lambda r: r.message is not None and r.message.content.startswith("⏳"), 5)
        await bot.kill()
        bot.api.default_response = None
        await bot.start()
        result = await outcome(queued)
        assert result.attachments and not is_status(result)
        assert "restarted" in (await outcome(running)).content
        prompts = [request.json["prompt"] for request in bot.api.requests]
        assert prompts == ["was running", "was queued"]
        await asyncio.sleep(0.2)
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 1, "refunded": 1}
        assert totals["committed"] == counts["done"]


async def test_crash_while_delivering_is_settled_from_what_discord_shows(tmp_path: Path) -> None:
    async with bot_process(tmp_path) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        # The upload of the result is answered "429, retry in 30 s": the bot sits in the delivering state.
        bot.discord.rate_limit_next(lambda request: bool(request.files), retry_after=30)
        record = await draw(bot, user(bot, "alice"), "never posted")
        await wait_for_api_calls(bot, 1)
        for _ in range(500):
            if any(request.files for request in bot.discord.requests):
                break
            await asyncio.sleep(0.01)
        await bot.kill()
        await bot.start()
        told = await outcome(record)
        assert "restarted" in told.content and not told.attachments
        totals, _ = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 0, "refunded": 1}


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class StuckAfterTheImage:
    """A rate-limit rule for the fake Discord: once the bot has sent an image, everything else it asks waits
    30 s (429), so it cannot get any further; `release()` lifts it for the next start."""

    def __init__(self) -> None:
        self.image_sent = False
        self.active = True

    def __call__(self, request: RequestRecord) -> bool:
        if not self.active:
            return False
        if self.image_sent:
            return True
        self.image_sent = bool(request.files)
        return False

    def release(self) -> None:
        self.active = False


async def test_another_jobs_image_in_the_channel_does_not_pass_for_a_lost_delivery(tmp_path: Path) -> None:
    async with bot_process(tmp_path) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        first = await outcome(await draw(bot, user(bot, "alice"), "posted"))
        assert first.attachments  # alice's image, with its buttons, is in the channel
        # Bob's image upload is answered "429, retry in 30 s": his job sits in the delivering state.
        bot.discord.rate_limit_next(lambda request: bool(request.files), retry_after=30)
        second = await draw(bot, user(bot, "bob"), "never posted")
        await wait_until(lambda: any(r.status == 429 for r in bot.discord.requests), "bob's upload to be held")
        await bot.kill()
        async with bot.store() as store:
            counts = await store.job_counts()
        assert (counts["done"], counts["delivering"]) == (1, 1), counts
        await bot.start()
        told = await outcome(second)
        assert "restarted" in told.content and not told.attachments
        assert first.attachments and not first.deleted
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 1, "refunded": 1}
        assert (counts["done"], counts["failed"]) == (1, 1)


async def test_an_image_posted_late_then_a_crash_before_it_was_recorded_counts_once(tmp_path: Path) -> None:
    async with bot_process(tmp_path, token_ttl=0.5) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = FakeResponse.delay(1.0, then=FakeResponse.success_urls())
        stuck = StuckAfterTheImage()
        bot.discord.rate_limit_next(stuck, retry_after=30, times=1000)
        alice = user(bot, "alice")
        record = await draw(bot, alice, "posted after the token expired")
        general = bot.discord.general
        image = await bot.discord.wait_for_channel_message(general, lambda m: bool(m.attachments), timeout=10)
        assert image.interaction_id is None and image.pinged.users == {alice.id}  # a late delivery
        await wait_until(lambda: bot.discord.requests[-1].status == 429, "the bot to be held after the image")
        await bot.kill()
        async with bot.store() as store:
            counts = await store.job_counts()
        assert counts["delivering"] == 1, f"the delivery was recorded before the crash: {counts}"
        stuck.release()

        for _ in range(2):  # recovery settles it; a further start has nothing left to do
            await bot.start()
            await asyncio.sleep(0.5)  # a wrong refund, a second run or a message would show by now
            await bot.kill()
            totals, counts = await ledger(bot)
            assert totals == {"reserved": 0, "committed": 1, "refunded": 0}
            assert counts["done"] == 1
            assert len(bot.api.requests) == 1
            shown = [m for m in bot.discord.channel_messages(general, include_deleted=True) if m.attachments]
            assert shown == [image] and not image.deleted
            assert not any("restarted" in m.content for m in bot.discord.world.messages.values())
            assert record.message is not None and not record.message.attachments


async def test_restart_after_success_runs_nothing_again(tmp_path: Path) -> None:
    async with bot_process(tmp_path) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        record = await draw(bot, user(bot, "alice"), "done once")
        assert (await outcome(record)).attachments
        await asyncio.sleep(0.2)
        await bot.kill()
        messages_before = len(bot.discord.requests)
        await bot.start()
        await asyncio.sleep(0.3)
        new = [r for r in bot.discord.requests[messages_before:] if r.method in ("POST", "PATCH")]
        assert [r.path for r in new if "messages" in r.path or "webhooks" in r.path] == []
        assert len(bot.api.requests) == 1
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 1, "refunded": 0} and counts["done"] == 1


async def test_sigterm_lets_running_jobs_finish_and_refunds_the_queue(tmp_path: Path) -> None:
    async with bot_process(tmp_path, ONE_AT_A_TIME | {"SHUTDOWN_GRACE_SECONDS": "10"}) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = lambda _payload: FakeResponse.delay(1.0, then=FakeResponse.success_urls())
        running = await draw(bot, user(bot, "alice"), "finishes")
        await wait_for_api_calls(bot, 1)
        queued = await draw(bot, user(bot, "bob"), "refunded")
        await queued.wait_for(lambda r: r.message is not None and r.message.content.startswith("⏳"), 5)
        assert await bot.terminate() == 0
        assert (await outcome(running)).attachments
        told = await outcome(queued)
        assert "restarting" in told.content
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 1, "refunded": 1}
        assert counts == {
            "pending": 0,
            "queued": 0,
            "running": 0,
            "delivering": 0,
            "done": 1,
            "failed": 1,
            "cancelled": 0,
        }


async def test_sigterm_past_the_grace_period_refunds_running_jobs(tmp_path: Path) -> None:
    async with bot_process(tmp_path, {"SHUTDOWN_GRACE_SECONDS": "0.3"}) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = FakeResponse.hang()
        record = await draw(bot, user(bot, "alice"), "too slow")
        await wait_for_api_calls(bot, 1)
        assert await bot.terminate() == 0
        assert "restarting" in (await outcome(record)).content
        totals, _ = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_cancel_button_of_a_requeued_job_works_after_a_crash(tmp_path: Path) -> None:
    async with bot_process(tmp_path, ONE_AT_A_TIME | {"SHUTDOWN_GRACE_SECONDS": "0.2"}) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        bot.api.default_response = FakeResponse.hang()
        await draw(bot, user(bot, "alice"), "running")
        await wait_for_api_calls(bot, 1)
        second = await draw(bot, user(bot, "bob"), "second")
        carol = user(bot, "carol")
        third = await draw(bot, carol, "third")
        await third.wait_for(lambda r: r.message is not None and "position 2" in r.message.content, 5)
        await bot.kill()
        await bot.start()  # "second" runs (and hangs) again; "third" waits behind it
        await wait_for_api_calls(bot, 2)
        await third.wait_for(lambda r: r.message is not None and "position 1" in r.message.content, 5)
        status = third.message
        assert status is not None
        cancel = next(custom_id for custom_id in status.custom_ids if custom_id.startswith("job:cancel:"))
        await bot.discord.click(status, cancel, user=carol)
        await third.wait_for(lambda r: r.message is not None and r.message.content.startswith("✖️"), 5)
        assert [request.json["prompt"] for request in bot.api.requests] == ["running", "second"]
        assert second.message is not None and second.message.content.startswith("🎨")
        assert await bot.terminate() == 0
        totals, counts = await ledger(bot)
        assert totals == {"reserved": 0, "committed": 0, "refunded": 3}
        assert (counts["cancelled"], counts["failed"]) == (1, 2)


async def test_the_bot_process_runs_on_uvloop_and_freezes_its_start_up_objects_once_ready(tmp_path: Path) -> None:
    async with bot_process(tmp_path) as bot:
        await bot.start()
        await bot.discord.wait_for_commands_synced()
        for _ in range(500):
            if "long-lived objects left out of garbage collection" in bot.log():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"the bot did not freeze its start-up objects:\n{bot.log()}")
        assert "event loop: uvloop.Loop" in bot.log()
