"""Two bot processes, shards 0 and 1 of 2, against one fake Discord, one fake 302.ai and one PostgreSQL database.

Each process has its own API key, so the fake 302.ai tells whose call it is serving. The store is read through a
connection of the test's own on the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from storage import Store, open_store
from storage.base import JobRow
from tests.e2e.harness import API_KEY, is_status, outcome, settled_ledger
from tests.e2e.process import BotProcess
from tests.fakes.discord import FakeDiscord, FakeGuild, FakeMessage, FakeUser, InteractionRecord
from tests.fakes.doubao_server import FakeDoubao, FakeResponse, RecordedRequest

LEASE_SECONDS = 3.0
ENV = {
    "SHARD_COUNT": "2",
    "DAILY_QUOTA": "50",
    "MAX_JOBS_PER_USER": "10",
    "LEASE_SECONDS": str(LEASE_SECONDS),
    "SHUTDOWN_GRACE_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Cluster:
    discord: FakeDiscord
    api: FakeDoubao
    processes: list[BotProcess]  # by shard id
    guilds: list[FakeGuild]  # a guild on each shard, by shard id
    store: Store

    def key(self, shard_id: int) -> str:
        return self.processes[shard_id].env["AI302_API_KEY"]

    def shard_of_key(self, key: str | None) -> int:
        return next(shard_id for shard_id in range(len(self.processes)) if self.key(shard_id) == key)

    def calls(self, prompt: str) -> list[RecordedRequest]:
        return [request for request in self.api.requests if request.json and request.json.get("prompt") == prompt]

    def member(self, name: str, guild: FakeGuild) -> FakeUser:
        user = self.discord.add_user(name)
        self.discord.add_member(guild, user)
        return user

    async def draw(self, user: FakeUser, guild: FakeGuild, prompt: str) -> InteractionRecord:
        return await self.discord.invoke("draw", user=user, guild=guild, prompt=prompt)

    def images_in(self, guild: FakeGuild) -> list[FakeMessage]:
        channel = guild.channel("general")
        return [message for message in self.discord.channel_messages(channel) if message.attachments]

    async def job_of(self, prompt: str) -> JobRow:
        rows = [row for row in await self.store.active_jobs() if row.params.get("prompt") == prompt]
        assert len(rows) == 1, rows
        return rows[0]

    async def settled(self, timeout: float = 5.0) -> dict[str, int]:  # noqa: ASYNC109
        """The ledger once nothing is reserved any more."""
        return await settled_ledger(self.store, timeout)


@contextlib.asynccontextmanager
async def shard_processes(
    tmp_path: Path, database_url: str, env: dict[str, str] | None = None, *, started: tuple[int, ...] = (0, 1)
) -> AsyncIterator[Cluster]:
    """The processes of `started` (both by default, at the same time) READY on their shard, with a guild on each
    shard."""
    async with FakeDoubao(api_key=API_KEY) as api:
        discord = FakeDiscord(shard_count=2)
        await discord.start()
        guilds = [discord.add_guild(f"Shard {shard_id}", shard=shard_id) for shard_id in (0, 1)]
        processes = []
        for shard_id in (0, 1):
            key = f"sk-e2e-shard-{shard_id}-0123456789abcdef"
            api.other_keys.add(key)
            settings = ENV | (env or {}) | {"SHARD_IDS": str(shard_id), "AI302_API_KEY": key}
            processes.append(
                BotProcess(discord, api, tmp_path / f"shard-{shard_id}", settings, database_url=database_url)
            )
        try:
            await asyncio.gather(*(processes[shard_id].start() for shard_id in started))
            async with open_store(database_url) as store:
                yield Cluster(discord, api, processes, guilds, store)
        finally:
            for process in processes:
                await process.close()
            await discord.close()
        discord.assert_no_violations()


class Hold:
    """Scripted answer of the fake 302.ai: waits for `release()` before drawing the image."""

    def __init__(self) -> None:
        self._arrivals: asyncio.Queue[None] = asyncio.Queue()
        self._released = asyncio.Event()

    async def __call__(self, _payload: object) -> FakeResponse:
        self._arrivals.put_nowait(None)
        await self._released.wait()
        return FakeResponse.success_urls()

    async def arrived(self, calls: int = 1) -> None:
        """Until `calls` more calls are held."""
        for _ in range(calls):
            await asyncio.wait_for(self._arrivals.get(), 10)

    def release(self) -> None:
        self._released.set()


def button(message: FakeMessage, action: str) -> str:
    return next(custom_id for custom_id in message.custom_ids if custom_id.startswith(f"job:{action}:"))


async def test_both_shards_draw_and_only_shard_0_registers_the_commands(tmp_path: Path, postgres_url: str) -> None:
    async with shard_processes(tmp_path, postgres_url) as cluster:
        await cluster.discord.wait_for_commands_synced()
        alice, bob = cluster.member("alice", cluster.guilds[0]), cluster.member("bob", cluster.guilds[1])
        records = [
            await cluster.draw(alice, cluster.guilds[0], "a fox on shard 0"),
            await cluster.draw(bob, cluster.guilds[1], "a fox on shard 1"),
        ]
        for record, guild in zip(records, cluster.guilds, strict=True):
            message = await outcome(record)
            assert message.attachments and not is_status(message)
            assert cluster.images_in(guild) == [message]
        assert await cluster.settled() == {"reserved": 0, "committed": 2, "refunded": 0}
        assert (await cluster.store.job_counts())["done"] == 2
        assert len(cluster.api.requests) == 2
        # Each interaction reached the process of its guild's shard, which took the request.
        logs = [process.log() for process in cluster.processes]
        for shard_id, (user, guild) in enumerate(((alice, cluster.guilds[0]), (bob, cluster.guilds[1]))):
            taken = f"by user {user.id} in guild {guild.id}"
            assert taken in logs[shard_id] and taken not in logs[1 - shard_id]
        assert len(cluster.discord.command_syncs) == 1
        assert "synced" in logs[0] and "slash commands" not in logs[1]


async def test_the_api_limit_is_global_across_the_processes(tmp_path: Path, postgres_url: str) -> None:
    """Three calls at a time in the whole bot, two in each process: the three held calls are necessarily split over
    both processes, and the one with a free slot of its own still leaves the queued jobs alone."""
    env = {"MAX_CONCURRENT_JOBS": "3", "MAX_CONCURRENT_JOBS_PER_PROCESS": "2"}
    async with shard_processes(tmp_path, postgres_url, env) as cluster:
        hold = Hold()
        cluster.api.default_response = hold
        users = [cluster.member(f"user{n}", cluster.guilds[n % 2]) for n in range(5)]
        records = [await cluster.draw(user, cluster.guilds[n % 2], f"picture {n}") for n, user in enumerate(users)]
        await hold.arrived(3)
        for record in records:  # each job is in the store once its requester has a status
            await record.wait_for(lambda r: r.message is not None and is_status(r.message), 5, "a status")
        states = {row.params["prompt"]: row.state for row in await cluster.store.active_jobs()}
        assert sorted(states.values()) == ["queued", "queued", "running", "running", "running"]
        for n, record in enumerate(records):
            if states[f"picture {n}"] == "queued":
                await record.wait_for(shows("Queued: position"), 5, "its place")
        assert len(cluster.api.requests) == 3 and cluster.api.max_in_flight == 3
        assert {cluster.shard_of_key(request.api_key) for request in cluster.api.requests} == {0, 1}

        hold.release()
        messages = [await outcome(record, timeout=20) for record in records]
        assert all(message.attachments for message in messages)
        assert cluster.api.max_in_flight == 3
        assert await cluster.settled() == {"reserved": 0, "committed": 5, "refunded": 0}
        assert len(cluster.api.requests) == 5


async def test_buttons_work_on_an_image_the_other_process_made(tmp_path: Path, postgres_url: str) -> None:
    async with shard_processes(tmp_path, postgres_url, {"MAX_CONCURRENT_JOBS_PER_PROCESS": "1"}) as cluster:
        # A held call keeps one process busy: the next jobs can only run in the other one.
        hold = Hold()
        cluster.api.queue(hold)
        alice = cluster.member("alice", cluster.guilds[0])
        held = await cluster.draw(alice, cluster.guilds[0], "held")
        await hold.arrived()
        busy = cluster.shard_of_key(cluster.calls("held")[0].api_key)
        guild = cluster.guilds[busy]  # its clicks reach the busy process
        bob, carol = cluster.member("bob", guild), cluster.member("carol", guild)

        image = await outcome(await cluster.draw(bob, guild, "made elsewhere"))
        assert image.attachments
        assert cluster.shard_of_key(cluster.calls("made elsewhere")[0].api_key) == 1 - busy

        rerolled = await outcome(await cluster.discord.click(image, button(image, "reroll"), user=carol))
        assert rerolled.attachments and rerolled.id != image.id
        assert f"<@{carol.id}>" in str(rerolled.embeds)  # charged to the one who clicked
        assert len(cluster.calls("made elsewhere")) == 2
        details = await outcome(await cluster.discord.click(image, button(image, "details"), user=carol))
        assert details.ephemeral and details.embeds[0]["description"] == "made elsewhere"
        deleted = await outcome(await cluster.discord.click(image, button(image, "delete"), user=bob))
        assert deleted.ephemeral and image.deleted
        clicks = [record for record in cluster.discord.interactions if record.source_message is image]
        session = cluster.discord.gateway.shard_session(busy, 2)
        assert session is not None
        delivered = {int(data["id"]) for event, data in session.dispatched() if event == "INTERACTION_CREATE"}
        assert {click.id for click in clicks} <= delivered  # the busy process received every click

        hold.release()
        assert (await outcome(held)).attachments
        assert await cluster.settled() == {"reserved": 0, "committed": 3, "refunded": 0}


async def test_the_jobs_of_a_killed_process_are_finished_once_by_the_other(tmp_path: Path, postgres_url: str) -> None:
    """Shard 0's process, alone at first, takes two jobs; it is killed in the middle of both API calls once shard 1's
    is up. Within the lease time the survivor runs again the job whose interaction token is still usable and
    refunds (telling the requester) the one whose token is too near its end: each exactly once."""
    async with shard_processes(tmp_path, postgres_url, started=(0,)) as cluster:
        hold = Hold()
        cluster.api.default_response = hold
        guild, channel = cluster.guilds[0], cluster.guilds[0].channel("general")
        alice, bob = cluster.member("alice", guild), cluster.member("bob", guild)
        again = await cluster.draw(alice, guild, "run again")
        cluster.discord.token_ttl = 31.0  # Discord would still take bob's token, but it is too near its end
        await cluster.draw(bob, guild, "refunded")
        await hold.arrived(2)
        jobs = [await cluster.job_of(prompt) for prompt in ("run again", "refunded")]
        assert [job.state for job in jobs] == ["running", "running"]
        assert len({job.lease_owner for job in jobs} - {None}) == 1  # both leased to shard 0's process
        assert {cluster.shard_of_key(request.api_key) for request in cluster.api.requests} == {0}
        await cluster.processes[1].start()
        cluster.api.default_response = None

        loop = asyncio.get_running_loop()
        await cluster.processes[0].kill()
        killed_at = loop.time()
        image = await outcome(again, timeout=2 * LEASE_SECONDS)
        told = await cluster.discord.wait_for_channel_message(
            channel, lambda m: "restarted before your image was finished" in m.content, timeout=2 * LEASE_SECONDS
        )
        # A lease runs out at most LEASE_SECONDS after the kill; the survivor looks every third of that.
        assert loop.time() - killed_at < LEASE_SECONDS + LEASE_SECONDS / 3 + 1.5
        assert image.attachments and f"<@{bob.id}>" in told.content
        assert await cluster.settled() == {"reserved": 0, "committed": 1, "refunded": 1}

        await asyncio.sleep(0.5)  # room for a wrong second image or second notice
        assert cluster.images_in(guild) == [image]
        assert [m for m in cluster.discord.channel_messages(channel) if "restarted" in m.content] == [told]
        assert [cluster.shard_of_key(call.api_key) for call in cluster.calls("run again")] == [0, 1]
        assert [cluster.shard_of_key(call.api_key) for call in cluster.calls("refunded")] == [0]
        assert await cluster.store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 1}
        finals = [await cluster.store.get_job(job.id) for job in jobs]
        assert [(row.state, row.attempts) for row in finals if row] == [("done", 1), ("failed", 0)]
        assert all(row and row.lease_owner not in (None, jobs[0].lease_owner) for row in finals)  # the survivor's


def shows(text: str) -> Callable[[InteractionRecord], bool]:
    return lambda record: record.message is not None and text in record.message.content


async def test_the_queued_jobs_of_a_process_that_stops_are_told_their_place_by_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    """Shard 0's process, alone at first, runs one job and queues two; it stops (a rolling restart) once shard 1's is
    up. Its running job is refunded; the other process runs the first in line and tells the second it has moved up,
    which the stopped process no longer can."""
    async with shard_processes(tmp_path, postgres_url, {"MAX_CONCURRENT_JOBS": "1"}, started=(0,)) as cluster:
        hold = Hold()
        cluster.api.default_response = hold
        guild = cluster.guilds[0]
        alice, bob, carol = (cluster.member(name, guild) for name in ("alice", "bob", "carol"))
        running = await cluster.draw(alice, guild, "running")
        await hold.arrived()
        first = await cluster.draw(bob, guild, "first in line")
        await first.wait_for(shows("Queued: position 1"), 5, "its place")
        second = await cluster.draw(carol, guild, "second in line")
        await second.wait_for(shows("Queued: position 2"), 5, "its place")
        await cluster.processes[1].start()

        assert await cluster.processes[0].terminate() == 0
        assert "Nothing was counted" in (await outcome(running)).content
        await hold.arrived()  # the first in line, in the other process
        await second.wait_for(shows("Queued: position 1"), 2 * LEASE_SECONDS, "its new place")
        assert [cluster.shard_of_key(call.api_key) for call in cluster.calls("first in line")] == [1]
        hold.release()
        assert (await outcome(first)).attachments and (await outcome(second)).attachments
        assert await cluster.settled() == {"reserved": 0, "committed": 2, "refunded": 1}


async def test_a_job_run_by_the_other_process_keeps_its_image_and_buttons(tmp_path: Path, postgres_url: str) -> None:
    """The process that queued a job announces its place; once the other one has run and posted it, a position
    update still waiting for the edit interval must not land on top of the image."""
    env = {"MAX_CONCURRENT_JOBS_PER_PROCESS": "1", "STATUS_EDIT_INTERVAL_SECONDS": "1.5"}
    async with shard_processes(tmp_path, postgres_url, env) as cluster:
        holds = [Hold(), Hold()]
        cluster.api.queue(*holds)  # keeps each process busy with one job
        alice = cluster.member("alice", cluster.guilds[0])
        first = await cluster.draw(alice, cluster.guilds[0], "held 1")
        await holds[0].arrived()
        second = await cluster.draw(alice, cluster.guilds[0], "held 2")
        await holds[1].arrived()
        busy = cluster.shard_of_key(cluster.calls("held 1")[0].api_key)  # stays busy to the end
        guild = cluster.guilds[busy]  # its requests are queued by the busy process
        bob, carol = cluster.member("bob", guild), cluster.member("carol", guild)
        ahead = await cluster.draw(bob, guild, "ahead")
        await ahead.wait_for(shows("position 1"), 5, "position 1")
        record = await cluster.draw(carol, guild, "behind")
        await record.wait_for(shows("position 2"), 5, "position 2")

        holds[1].release()  # the other process runs "ahead", then "behind"; the busy one cannot
        for done in (second, ahead, record):
            assert (await outcome(done)).attachments
        assert cluster.shard_of_key(cluster.calls("behind")[0].api_key) == 1 - busy
        await asyncio.sleep(2)  # past the edit interval of the busy process
        message = record.message
        assert message is not None and message.attachments and not is_status(message), message.content
        assert {custom_id.split(":")[1] for custom_id in message.custom_ids} == {
            "reroll",
            "vary",
            "ref",
            "details",
            "delete",
        }
        holds[0].release()
        assert (await outcome(first)).attachments
        assert await cluster.settled() == {"reserved": 0, "committed": 4, "refunded": 0}
