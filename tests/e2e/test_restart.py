"""Crashes (SIGKILL) and graceful stops (SIGTERM) of the real bot process, and what the next start does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.harness import is_status, outcome
from tests.e2e.process import BotProcess, bot_process
from tests.fakes.discord import FakeUser, InteractionRecord
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
