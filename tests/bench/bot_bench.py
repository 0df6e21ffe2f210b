"""The bot as a real OS process against the fake Discord and the fake 302.ai on loopback.

Every time is `time.monotonic()`, which is also the fakes' clock: an interaction's invoke time is when the
fake Discord dispatched it, its acknowledgement when the fake received the callback, its image when the fake
received the request carrying the file, and L is the latency the fake 302.ai answered that job's call with.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import Store
from tests.e2e.bot_process import LOOP_LAG_REPORT
from tests.e2e.harness import API_KEY
from tests.e2e.process import BotProcess
from tests.fakes.discord import FakeDiscord, FakeUser, InteractionRecord, RequestRecord
from tests.fakes.doubao_server import FakeDoubao

# The bot's defaults, except what the burst needs: room for every job, and a short stop at the end.
BENCH_SETTINGS = {
    "DAILY_QUOTA": "1000000",
    "MAX_QUEUE": "10000",
    "MAX_JOBS_PER_USER": "100",
    "SHUTDOWN_GRACE_SECONDS": "1",
}
# BotProcess's test settings that are not the bot's defaults; the benchmark measures the defaults.
TEST_ONLY_SETTINGS = ("STATUS_EDIT_INTERVAL_SECONDS", "API_TIMEOUT_SECONDS", "LOG_LEVEL")
NEVER = 3600.0  # a fake 302.ai latency that keeps jobs running for the whole burst
PRELOAD_BATCH = 25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BotPlan:
    sequential: int  # jobs in each sequential series (after one warm-up job)
    latency: float  # L of the fixed series and of the throughput run
    random_latency: tuple[float, float]
    throughput_jobs: int
    burst: int  # requests in the burst
    burst_users: int
    burst_queued: int  # jobs queued before the burst comes
    settings: dict[str, str] = field(default_factory=dict)  # on top of BENCH_SETTINGS
    seed: int = 1
    # Checking every body against Discord's OpenAPI description costs the fake 1-2 ms of CPU a request; in the
    # burst that doubles or triples the fakes' work and stalls their loop for seconds, so the fake, not the bot,
    # would set the acknowledgement times. The tests check the bodies.
    validate: bool = False


@dataclass
class BotFigures:
    concurrency: int = 0
    startup: float = 0.0
    idle_rss: int = 0
    peak_rss: int = 0
    single_acks: list[float] = field(default_factory=list)
    overhead_fixed: list[float] = field(default_factory=list)
    overhead_random: list[float] = field(default_factory=list)
    throughput: float = 0.0  # fraction of max_concurrent / L
    cpu_per_job: float = 0.0
    requests_per_job: float = 0.0  # Discord requests per job in the throughput run (status edits and all)
    burst_acks: list[float] = field(default_factory=list)
    burst_unacknowledged: int = 0
    burst_stall: float = 0.0
    fake_stall: float = 0.0  # the benchmark process's own loop (the fakes) during the burst
    burst_stolen: float = 0.0  # CPU seconds the hypervisor took from the machine (all cores) during the burst
    burst_cpu_per_request: float = 0.0  # the bot's CPU seconds over the burst window, per burst request
    exit_code: int | None = None


# -- reading the fakes' records ---------------------------------------------------------------------


def ack_time(record: InteractionRecord) -> float | None:
    """When the bot's callback reached the fake (accepted or not)."""
    return next((r.timestamp for r in record.requests if r.route and r.route.endswith("/callback")), None)


def image_posts(requests: list[RequestRecord]) -> list[RequestRecord]:
    """The accepted requests that carried a file: images posted."""
    return [r for r in requests if r.files and r.status is not None and r.status < 400]


def called_back(records: list[InteractionRecord]) -> Callable[[], bool]:
    return lambda: all(ack_time(r) is not None for r in records)


def posted_at(record: InteractionRecord) -> float | None:
    posts = image_posts(record.requests)
    return posts[0].timestamp if posts else None


# -- the bot process from outside -----------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size in bytes: VmRSS and VmHWM."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stolen_cpu() -> float:
    """CPU seconds taken from this (virtual) machine by its hypervisor since boot, all cores: `steal` in
    /proc/stat. A run that loses much of it measures the host's other tenants as much as the bot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / CLOCK_TICKS if len(fields) > 8 else 0.0


def longest_lag(path: Path, start: float, end: float) -> float:
    """The longest loop lag the probe reported for windows overlapping [start, end]."""
    if not path.exists():
        return float("nan")
    worst = 0.0
    for line in path.read_text().splitlines():
        at, lag = (float(x) for x in line.split())
        if start <= at and at - lag - 0.5 <= end:  # a window ends at `at`; a stall can stretch it
            worst = max(worst, lag)
    return worst


class LoopProbe:
    """The same probe as the bot's, in the benchmark process: is the fake itself keeping up?"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        from tests.e2e.bot_process import probe_loop_lag

        self._task = asyncio.create_task(probe_loop_lag(self.path), name="bench-loop-probe")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:  # noqa: ASYNC109
    """Polls: thousands of records waiting on the fake's change notifications would load the fake itself."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(poll)


# -- the run ---------------------------------------------------------------------------------------


class BotBench:
    def __init__(self, plan: BotPlan, workdir: Path, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = say
        self.figures = BotFigures()
        self.rng = random.Random(plan.seed)
        self.api = FakeDoubao(api_key=API_KEY)
        self.discord = FakeDiscord(**({} if plan.validate else {"spec_path": None}))
        self.bot: BotProcess | None = None
        self.store: Store | None = None
        self.records: list[InteractionRecord] = []
        self._users: dict[str, FakeUser] = {}
        self.lag_file = workdir / "bot-loop-lag.txt"
        self.fake_probe = LoopProbe(workdir / "bench-loop-lag.txt")

    @property
    def edit_interval(self) -> float:
        return float(self.plan.settings.get("STATUS_EDIT_INTERVAL_SECONDS", "2"))

    @property
    def pid(self) -> int:
        assert self.bot is not None and self.bot.process is not None
        return self.bot.process.pid

    def user(self, name: str) -> FakeUser:
        if name not in self._users:
            self._users[name] = self.discord.add_user(name)
            self.discord.add_member(self.discord.guild, self._users[name])
        return self._users[name]

    async def draw(self, user: FakeUser, prompt: str) -> InteractionRecord:
        record = await self.discord.invoke("draw", user=user, prompt=prompt)
        self.records.append(record)
        return record

    def latency_of(self, prompt: str) -> float:
        """The L the fake 302.ai answered this job's (one) call with."""
        latencies = [r.latency for r in self.api.requests if r.json and r.json.get("prompt") == prompt]
        if len(latencies) != 1 or latencies[0] is None:
            raise AssertionError(f"expected one API call for {prompt!r}, saw {latencies}")
        return latencies[0]

    async def settled(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Until no job is queued, running or delivering: each has settled its quota with its final state."""
        assert self.store is not None
        deadline = time.monotonic() + timeout
        while True:
            counts = await self.store.job_counts()
            if not any(counts[s] for s in ("queued", "running", "delivering")):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still active after {timeout}s: {counts}")
            await asyncio.sleep(0.01)

    async def run(self) -> BotFigures:
        await self.api.start()
        await self.discord.start()
        self.fake_probe.start()
        try:
            await self._start()
            async with self.bot.store() as store:  # type: ignore[union-attr]
                self.store = store
                await self._sequential()
                await self._throughput()
                await self._burst()
                self.store = None
            await self._stop()
        finally:
            self.fake_probe.stop()
            if self.bot is not None:
                await self.bot.close()
            await self.discord.close()
            await self.api.close()
        return self.figures

    async def _start(self) -> None:
        settings = BENCH_SETTINGS | self.plan.settings | {"BOT_LOOP_LAG_FILE": str(self.lag_file)}
        self.bot = BotProcess(self.discord, self.api, self.workdir, settings)
        for name in TEST_ONLY_SETTINGS:
            if name not in self.plan.settings:
                self.bot.env.pop(name, None)
        self.figures.concurrency = int(self.bot.env.get("MAX_CONCURRENT_JOBS", "4"))
        self.say("starting the bot")
        started = time.monotonic()
        await self.bot.start()
        await self.discord.wait_for_commands_synced(timeout=30)  # (the bot registers them before it connects)
        self.figures.startup = time.monotonic() - started
        await asyncio.sleep(1.0)  # let start-up work finish before calling it idle
        self.figures.idle_rss = memory(self.pid)[0]

    async def _sequential(self) -> None:
        fixed, (low, high) = self.plan.latency, self.plan.random_latency
        await self._one_at_a_time("fixed", f"L = {fixed:g} s", lambda _: fixed, self.figures.overhead_fixed)
        random_latency = lambda _: self.rng.uniform(low, high)  # noqa: E731
        await self._one_at_a_time("random", f"L in [{low:g}, {high:g}] s", random_latency, self.figures.overhead_random)

    async def _one_at_a_time(
        self, series: str, name: str, latency: Callable[[Any], float], overheads: list[float]
    ) -> None:
        self.say(f"{self.plan.sequential} jobs one at a time, {name}")
        self.api.latency = latency
        for n in range(self.plan.sequential + 1):  # the first one warms up and is not counted
            prompt = f"bench sequential {series} {n}"
            record = await self.draw(self.user(f"seq{n % 5}"), prompt)
            await record.wait_for(lambda r: posted_at(r) is not None, 120, "the image")
            await self.settled()
            posted, acked = posted_at(record), ack_time(record)
            assert posted is not None and acked is not None
            if n:
                self.figures.single_acks.append(acked - record.created_at)
                overheads.append(posted - record.created_at - self.latency_of(prompt))

    async def _throughput(self) -> None:
        plan, count = self.plan, self.plan.throughput_jobs
        self.say(f"{count} jobs queued at once, L = {plan.latency:g} s")
        self.api.latency = plan.latency
        cpu_before = cpu_seconds(self.pid)
        records = [await self.draw(self.user(f"tp{n % 100}"), f"bench throughput {n}") for n in range(count)]
        ideal = count * plan.latency / self.figures.concurrency
        await until(lambda: all(posted_at(r) is not None for r in records), 4 * ideal + 60, "every image")
        await self.settled()
        self.figures.cpu_per_job = (cpu_seconds(self.pid) - cpu_before) / count
        self.figures.requests_per_job = sum(len(r.requests) for r in records) / count
        last = max(posted_at(r) or 0.0 for r in records)
        self.figures.throughput = ideal / (last - records[0].created_at)

    async def _fill_queue(self) -> None:
        plan = self.plan
        self.say(f"queueing {plan.burst_queued} jobs that the fake 302.ai does not answer")
        self.api.latency = lambda _: NEVER
        for first in range(0, plan.burst_queued, PRELOAD_BATCH):  # at a pace the bot keeps up with
            batch = [
                await self.draw(self.user(f"q{n % plan.burst_users}"), f"bench queued {n}")
                for n in range(first, min(first + PRELOAD_BATCH, plan.burst_queued))
            ]
            await until(called_back(batch), 60, "the queued jobs' callbacks")
        await self._until_active(plan.burst_queued)
        await asyncio.sleep(self.edit_interval + 0.5)  # the queue's own status edits are done

    async def _burst(self) -> None:
        plan = self.plan
        await self._fill_queue()
        self.say(f"a burst of {plan.burst} requests from {plan.burst_users} users")
        users = [self.user(f"b{n}") for n in range(plan.burst_users)]
        # The fakes are the measuring instrument: a full garbage collection of this process (its records of
        # everything so far) stalled them for 60-100 ms mid-burst, and every acknowledgement arriving meanwhile
        # was timestamped that much late. They collect again once the callbacks are in.
        gc.collect()
        gc.disable()
        try:
            await asyncio.sleep(LOOP_LAG_REPORT + 0.05)  # the collection's own stall is reported before the burst
            stolen_before, cpu_before = stolen_cpu(), cpu_seconds(self.pid)
            start = time.monotonic()
            burst = []
            for n in range(plan.burst):
                burst.append(await self.draw(users[n % plan.burst_users], f"bench burst {n}"))
                await asyncio.sleep(0)  # let the fake take the bot's callbacks as they come, not after the burst
            sent = time.monotonic() - start
            await until(called_back(burst), 60, "the burst's callbacks")
        finally:
            gc.enable()
        acknowledged = sum(r.acknowledged for r in burst)
        try:
            await self._until_active(plan.burst_queued + acknowledged)
        finally:
            end = time.monotonic()
            self.figures.burst_stolen = stolen_cpu() - stolen_before
            self.figures.burst_cpu_per_request = (cpu_seconds(self.pid) - cpu_before) / plan.burst
        calls = sum(start <= r.timestamp <= end for r in self.discord.requests)
        self.say(f"sent in {sent:.2f} s, all queued after {end - start:.1f} s, {calls} requests to Discord meanwhile")
        self.figures.burst_acks = [t - r.created_at for r in burst if (t := ack_time(r)) is not None]
        self.figures.burst_unacknowledged = plan.burst - acknowledged
        self.figures.burst_stall = longest_lag(self.lag_file, start, end)
        self.figures.fake_stall = longest_lag(self.fake_probe.path, start, end)
        self.figures.peak_rss = memory(self.pid)[1]

    async def _until_active(self, count: int, timeout: float = 60) -> None:  # noqa: ASYNC109
        assert self.store is not None
        deadline = time.monotonic() + timeout
        while True:
            counts = await self.store.job_counts()
            active = counts["queued"] + counts["running"]
            if active >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{active} of {count} jobs queued after {timeout}s")
            await asyncio.sleep(0.1)

    async def _stop(self) -> None:
        """SIGTERM: the bot refunds what is queued and running, tells everyone, and exits."""
        assert self.bot is not None
        self.say("stopping the bot (SIGTERM): the queued jobs are refunded")
        self.figures.peak_rss = max(self.figures.peak_rss, memory(self.pid)[1])
        self.figures.exit_code = await self.bot.terminate(timeout=300)
