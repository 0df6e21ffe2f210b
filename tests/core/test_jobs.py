"""Jobs with the real store and the fake 302.ai: admission, fair order, settling, shutdown and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from PIL import Image

from core.config import ApiExtras
from core.doubao import DoubaoClient
from core.errors import QuotaExhausted, UserFacingError
from core.images import DownloadedImage
from core.job import DeliveryError, Job, JobLimits, JobRequest, JobState, ReplyTarget, format_time, rerolled
from core.jobs import ANNOUNCE_BATCH, JobService
from core.metrics import Metrics
from core.params import CharacterParams, Command, DrawParams
from core.quota import QuotaService, QuotaStatus, QuotaWindow
from storage import Store, open_store
from storage.urls import postgres_connect_args
from tests.core.conftest import API_KEY
from tests.fakes.doubao_server import FakeDoubao, FakeResponse, make_png

GUILD, CHANNEL, USER = 100, 200, 300
BIG = 10 * 1024 * 1024


@dataclass
class RecordedEvents:
    """A JobEvents that records what the chat side would have shown."""

    progress_log: list[tuple[str, int | None]] = field(default_factory=list)
    shown_states: list[tuple[str, JobState]] = field(default_factory=list)  # the state each progress call showed
    stopped: list[str] = field(default_factory=list)  # jobs whose progress another process took over
    delivered: list[tuple[Job, DownloadedImage, QuotaStatus]] = field(default_factory=list)
    told: list[Job] = field(default_factory=list)
    fail_delivery: bool = False
    posted: dict[str, int] = field(default_factory=dict)
    approval_requests: list[Job] = field(default_factory=list)
    decisions: list[tuple[str, str, int | None]] = field(default_factory=list)
    no_mod_channel: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set at each progress or stop_progress call

    def progress(self, job: Job, position: int | None) -> None:
        self.progress_log.append((job.id, position))
        self.shown_states.append((job.id, job.state))
        self.changed.set()

    def stop_progress(self, job: Job) -> None:
        self.stopped.append(job.id)
        self.changed.set()

    async def deliver(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        if self.fail_delivery:
            raise DeliveryError("Discord said no")
        self.delivered.append((job, image, quota))
        return 1000 + len(self.delivered)

    async def finished(self, job: Job) -> None:
        self.told.append(job)

    async def posted_result(self, job: Job) -> int | None:
        return self.posted.get(job.id)

    async def awaiting_approval(self, job: Job) -> int | None:
        self.approval_requests.append(job)
        return None if self.no_mod_channel else 4000 + len(self.approval_requests)

    async def approval_decided(self, job: Job, decision: str, moderator_id: int | None) -> None:
        self.decisions.append((job.id, decision, moderator_id))

    def errors(self) -> list[str | None]:
        return [job.outcome_key for job in self.told]


StartService = Callable[..., Awaitable[JobService]]


@pytest.fixture
async def events() -> RecordedEvents:
    return RecordedEvents()


def job_service(
    store: Store,
    api: FakeDoubao,
    session: aiohttp.ClientSession,
    *,
    api_timeout: float = 0.5,
    daily_limit: int = 5,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    **limits: object,
) -> JobService:
    """A job service on `store` (not started), calling `api`; with `metrics`, shared with its client as bot.py
    wires them."""
    client = DoubaoClient(
        session,
        api_key=API_KEY,
        base_url=api.base_url,
        timeout=api_timeout,
        max_attempts=2,
        backoff_base=0.01,
        metrics=metrics,
    )
    return JobService(
        store=store,
        quota=QuotaService(store, daily_limit=daily_limit),
        client=client,
        session=session,
        extras=ApiExtras(),
        limits=JobLimits(**({"max_concurrent": 2, "shutdown_grace": 1.0} | limits)),  # type: ignore[arg-type]
        metrics=metrics,
        **({} if clock is None else {"clock": clock}),
    )


@pytest.fixture
async def start_service(
    api: FakeDoubao, store: Store, session: aiohttp.ClientSession, events: RecordedEvents
) -> AsyncIterator[StartService]:
    """Starts job services (with `events` unless given others); each is shut down after the test, passed or
    failed: workers left running would settle jobs on a closed store and hang the event loop's teardown."""

    async def start(
        with_events: RecordedEvents | None = None, *, daily_limit: int = 5, clock: Clock | None = None, **limits: object
    ) -> JobService:
        service = job_service(store, api, session, daily_limit=daily_limit, clock=clock, **limits)
        stack.push_async_callback(service.shutdown)  # shutting down twice, or before start, does nothing
        await service.start(events if with_events is None else with_events)
        return service

    async with contextlib.AsyncExitStack() as stack:
        yield start


@pytest.fixture
async def service(start_service: StartService) -> JobService:
    return await start_service()


def live_reply() -> ReplyTarget:
    return ReplyTarget(
        application_id=1, token="tok", token_expires_at=datetime.now(UTC) + timedelta(minutes=15), status_message_id=77
    )


def draw(prompt: str = "a cat", user: int = USER) -> JobRequest:
    return JobRequest(Command.DRAW, DrawParams(prompt=prompt), GUILD, CHANNEL, user, "en", live_reply())


async def run_one(service: JobService, request: JobRequest | None = None) -> Job:
    job = await service.submit(request or draw())
    await service.wait_idle()
    return job


async def test_success_delivers_the_served_bytes_and_commits(service, api, store, events) -> None:
    job = await run_one(service)
    [(delivered, image, quota)] = events.delivered
    assert delivered.id == job.id and job.state is JobState.DONE and job.result_message_id == 1001
    assert image.data == api.image_bytes(api.served_images[-1])
    assert api.requests[0].json["seed"] == job.params.seed >= 0
    assert (quota.used, quota.remaining) == (1, 4)
    assert events.progress_log in ([(job.id, 1), (job.id, None)], [(job.id, None)])  # queued, if seen, then running
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}
    row = await store.get_job(job.id)
    assert row is not None and (row.state, row.result_message_id, row.interaction_token) == ("done", 1001, None)


async def test_character_sends_the_reference(service, api) -> None:
    params = CharacterParams(prompt="p", reference_url="https://cdn/ref.png")
    await run_one(service, JobRequest(Command.CHARACTER, params, GUILD, CHANNEL, USER, "en", live_reply()))
    assert api.requests[0].path == "/doubao/drawing/character"
    assert api.requests[0].json["image_urls"] == ["https://cdn/ref.png"]


async def test_base64_result_is_delivered(service, api, events) -> None:
    api.queue(FakeResponse.success_base64("b64"))
    await run_one(service)
    assert events.delivered[0][1].data == api.image_bytes("b64")


@pytest.mark.parametrize(
    ("response", "key"),
    [
        (FakeResponse.business_error(50411), "error.content_rejected"),
        (FakeResponse.gateway_error(-10004, "insufficient balance"), "error.bot_misconfigured"),
        (FakeResponse.http_status(503), "error.service_busy"),
        (FakeResponse.http_status(429), "error.service_busy"),
        (FakeResponse.hang(), "error.service_busy"),
        (FakeResponse.no_image(), "error.bad_response"),
    ],
)
async def test_api_failures_refund_and_say_why(service, api, store, events, response, key) -> None:
    api.default_response = response
    job = await run_one(service)
    assert events.delivered == [] and events.errors() == [key]
    assert job.state is JobState.FAILED
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_download_failure_refunds(service, api, store, events) -> None:
    api.serve_file("page", b"<html>not an image</html>", content_type="text/html")
    api.queue(FakeResponse.success_urls("page"))
    await run_one(service)
    assert events.errors() == ["error.download_failed"]
    assert (await store.ledger_totals())["refunded"] == 1


async def test_delivery_failure_refunds(service, store, events) -> None:
    events.fail_delivery = True
    await run_one(service)
    assert events.errors() == ["error.delivery_failed"]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_exhausted_quota_makes_no_api_call_and_stores_no_job(service, api, store) -> None:
    for _ in range(5):
        await run_one(service)
    api.reset_stats()
    with pytest.raises(QuotaExhausted) as caught:
        await service.submit(draw())
    assert caught.value.params["limit"] == 5 and caught.value.params["resets"].hour == 0
    assert api.requests == []
    assert sum((await store.job_counts()).values()) == 5


async def test_fifty_concurrent_requests_with_five_left_start_five_jobs(start_service, events, api, store) -> None:
    service = await start_service(max_per_user=100)
    outcomes = await asyncio.gather(*(service.submit(draw(f"cat {n}")) for n in range(50)), return_exceptions=True)
    await service.wait_idle()
    assert sum(isinstance(outcome, Job) for outcome in outcomes) == 5
    assert sum(isinstance(outcome, QuotaExhausted) for outcome in outcomes) == 45
    assert len(api.requests) == 5
    assert await store.ledger_totals() == {"reserved": 0, "committed": 5, "refunded": 0}


async def test_api_calls_in_flight_are_bounded(service, api) -> None:
    api.default_response = lambda _payload: FakeResponse.delay(0.2, then=FakeResponse.success_urls())
    for n in range(5):
        await service.submit(draw(user=USER + n))
    await service.wait_idle()
    assert api.max_in_flight == 2


def hold(api: FakeDoubao) -> tuple[asyncio.Event, asyncio.Event]:
    """Holds every API call until the second event is set; the first is set once a call is being held."""
    started, release = asyncio.Event(), asyncio.Event()

    async def held(_payload: object) -> FakeResponse:
        started.set()
        await release.wait()
        return FakeResponse.success_urls()

    api.default_response = held
    return started, release


async def order_served(service: JobService, api: FakeDoubao, first: str, then: list[tuple[str, int]]) -> list[str]:
    """Submits `first` (user 1) and holds it at the API while the others queue; the order the API saw them in."""
    started, release = hold(api)
    await service.submit(draw(first, user=1))
    await started.wait()  # the first job is with the API, the queue is empty
    for prompt, user in then:
        await service.submit(draw(prompt, user=user))
    release.set()
    await service.wait_idle()
    return [request.json["prompt"] for request in api.requests]


async def test_users_waiting_together_are_served_in_turn(start_service, api) -> None:
    service = await start_service(daily_limit=20, max_concurrent=1, max_per_user=10)
    order = await order_served(service, api, "A0", [("A1", 1), ("A2", 1), ("B0", 2), ("B1", 2), ("C0", 3)])
    assert order == ["A0", "B0", "C0", "A1", "B1", "A2"]


async def test_newcomer_after_a_heavy_user_whose_first_job_is_running_is_second(start_service, api) -> None:
    service = await start_service(daily_limit=20, max_concurrent=1, max_per_user=10)
    heavy = [(f"A{n}", 1) for n in range(1, 5)]
    order = await order_served(service, api, "A0", [*heavy, ("B0", 2), ("C0", 3)])
    assert order == ["A0", "B0", "C0", "A1", "A2", "A3", "A4"]


async def test_positions_are_announced_as_the_queue_moves(start_service, events, api) -> None:
    service = await start_service(max_concurrent=1, max_per_user=10)
    api.default_response = lambda _payload: FakeResponse.delay(0.6, then=FakeResponse.success_urls())
    first = await service.submit(draw("one", user=1))
    second = await service.submit(draw("two", user=2))
    third = await service.submit(draw("three", user=3))
    await service.wait_idle()
    positions = {job.id: [p for j, p in events.progress_log if j == job.id] for job in (first, second, third)}
    assert positions[third.id] == [2, 1, None]  # queued behind "two", then first in line, then running
    assert positions[second.id][-1] is None and 1 in positions[second.id]


async def test_a_long_queue_of_newcomers_is_announced_a_batch_per_turn_of_the_event_loop(
    start_service, events, api, monkeypatch
) -> None:
    service = await start_service(max_concurrent=1, max_per_user=10, daily_limit=100)
    api.default_response = FakeResponse.hang()
    loop = asyncio.get_running_loop()
    this_turn, most_in_a_turn = 0, 0
    record = events.progress

    def end_of_turn() -> None:
        nonlocal this_turn
        this_turn = 0

    def counting(job: Job, position: int | None) -> None:
        nonlocal this_turn, most_in_a_turn
        if this_turn == 0:
            loop.call_soon(end_of_turn)  # runs at the next turn of the loop
        this_turn += 1
        most_in_a_turn = max(most_in_a_turn, this_turn)
        record(job, position)
        if sum(position is not None for _, position in events.progress_log) >= newcomers:
            all_announced.set()

    monkeypatch.setattr(events, "progress", counting)
    newcomers, all_announced = 3 * ANNOUNCE_BATCH, asyncio.Event()
    await asyncio.gather(*(service.submit(draw(f"p{n}", user=n)) for n in range(newcomers + 1)))
    await asyncio.wait_for(all_announced.wait(), 5)
    assert most_in_a_turn <= ANNOUNCE_BATCH


async def test_queue_full_is_refused_for_free(start_service, events, api, store) -> None:
    service = await start_service(max_concurrent=1, max_queue=2, max_per_user=10)
    api.default_response = FakeResponse.delay(0.3)
    for n in range(3):  # one running, two waiting
        await service.submit(draw(f"p{n}", user=n))
        await asyncio.sleep(0.01)
    with pytest.raises(UserFacingError) as caught:
        await service.submit(draw("one too many", user=9))
    assert caught.value.key == "error.queue_full"
    assert (await store.ledger_totals())["reserved"] == 3
    await service.wait_idle()


async def test_per_user_cap(service, api, store) -> None:
    api.default_response = FakeResponse.delay(0.2)
    await service.submit(draw())
    await service.submit(draw())
    with pytest.raises(UserFacingError) as caught:
        await service.submit(draw())
    assert (caught.value.key, caught.value.params) == ("error.too_many_jobs", {"limit": 2})
    await service.submit(draw(user=USER + 1))
    await service.wait_idle()
    assert await store.ledger_totals() == {"reserved": 0, "committed": 3, "refunded": 0}


async def test_cancel_a_queued_job_refunds_it_but_not_a_running_one(start_service, events, api, store) -> None:
    service = await start_service(max_concurrent=1)
    api.default_response = FakeResponse.delay(0.2)
    running = await service.submit(draw("running", user=1))
    waiting = await service.submit(draw("waiting", user=2))
    await asyncio.sleep(0.05)
    assert not await service.cancel(running.id)
    assert await service.cancel(waiting.id)
    assert not await service.cancel(waiting.id)
    await service.wait_idle()
    assert [job.outcome_key for job in events.told] == ["status.cancelled"]
    assert [request.json["prompt"] for request in api.requests] == ["running"]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 1}


async def test_shutdown_finishes_running_jobs_and_refunds_the_rest(start_service, events, api, store) -> None:
    service = await start_service(max_concurrent=1, shutdown_grace=2.0)
    api.default_response = FakeResponse.delay(0.3)
    await service.submit(draw("running", user=1))
    await service.submit(draw("waiting", user=2))
    await asyncio.sleep(0.05)
    await service.shutdown()
    assert len(events.delivered) == 1 and events.errors() == ["error.restarting"]
    with pytest.raises(UserFacingError) as caught:
        await service.submit(draw())
    assert caught.value.key == "error.restarting"
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 1}


async def test_shutdown_past_the_grace_period_refunds_running_jobs(start_service, events, api, store) -> None:
    service = await start_service(shutdown_grace=0.1)
    api.default_response = FakeResponse.hang()
    await service.submit(draw())
    await asyncio.sleep(0.05)
    await service.shutdown()
    assert events.errors() == ["error.restarting"]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_recovery_settles_each_unfinished_job_once(start_service, store, api) -> None:
    """A crash left jobs in every active state; the next start settles each exactly once."""
    expired = ReplyTarget(application_id=1, token="old", token_expires_at=datetime.now(UTC) - timedelta(minutes=1))
    rows = {
        "fresh": draw("fresh"),
        "expired": JobRequest(Command.DRAW, DrawParams(prompt="expired"), GUILD, CHANNEL, USER, "en", expired),
        "running": draw("running", user=2),
        "delivering-posted": draw("posted", user=3),
        "delivering-lost": draw("lost", user=4),
    }
    ids: dict[str, str] = {}
    window = QuotaWindow.daily(datetime.now(UTC)).key
    for name, request in rows.items():
        job = Job(
            id=f"{name}-job",
            command=request.command,
            params=request.params,
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            user_id=request.user_id,
            language=request.language,
            reply=request.reply,
        )
        assert await store.create_job(job.to_row(), window=window, limit=5)
        ids[name] = job.id
    await store.update_job(ids["running"], state="running")
    await store.update_job(ids["delivering-posted"], state="delivering")
    await store.update_job(ids["delivering-lost"], state="delivering")

    events = RecordedEvents(posted={ids["delivering-posted"]: 555})
    restarted = await start_service(events)
    await restarted.wait_idle()
    assert [job.params.prompt for job, _, _ in events.delivered] == ["fresh"]
    assert sorted(job.params.prompt for job in events.told) == ["expired", "lost", "running"]
    assert set(events.errors()) == {"error.interrupted"}
    posted = await store.get_job(ids["delivering-posted"])
    assert posted is not None and (posted.state, posted.result_message_id) == ("done", 555)
    assert [request.json["prompt"] for request in api.requests] == ["fresh"]
    await restarted.shutdown()

    again = RecordedEvents()
    await start_service(again)
    assert again.told == [] and again.delivered == []
    totals, counts = await store.ledger_totals(), await store.job_counts()
    assert totals == {"reserved": 0, "committed": 2, "refunded": 3}
    assert totals["committed"] == counts["done"]


async def test_image_over_the_upload_limit_is_reencoded(service, api, events) -> None:
    noisy = Image.frombytes("RGB", (700, 700), random.Random(7).randbytes(700 * 700 * 3))
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    api.add_image("huge", buffer.getvalue())
    api.queue(FakeResponse.success_urls("huge"))
    limit = len(buffer.getvalue()) // 3
    reply = ReplyTarget(application_id=1, token="t", token_expires_at=live_reply().token_expires_at, upload_limit=limit)
    await run_one(service, JobRequest(Command.DRAW, DrawParams(prompt="p"), GUILD, CHANNEL, USER, "en", reply))
    data = events.delivered[0][1].data
    assert len(data) <= limit and Image.open(io.BytesIO(data)).format == "JPEG"


async def test_small_image_is_delivered_unchanged(service, api, events) -> None:
    api.add_image("small", make_png("small"))
    api.queue(FakeResponse.success_urls("small"))
    await run_one(service)
    assert events.delivered[0][1].data == api.image_bytes("small")


async def test_key_never_logged(service, api, caplog) -> None:
    caplog.set_level("DEBUG")
    api.queue(FakeResponse.gateway_error(-10001, "missing key"))
    await run_one(service)
    await run_one(service)
    assert caplog.text and API_KEY not in caplog.text


def needing_approval(prompt: str = "a cat", user: int = USER, minutes: float = 60) -> JobRequest:
    return JobRequest(
        Command.DRAW,
        DrawParams(prompt=prompt),
        GUILD,
        CHANNEL,
        user,
        "en",
        live_reply(),
        needs_approval=True,
        approval_timeout=timedelta(minutes=minutes),
    )


async def test_approved_job_runs(service, api, store, events) -> None:
    job = await service.submit(needing_approval())
    assert job.state is JobState.PENDING and job.approval_message_id == 4001
    assert events.progress_log == [(job.id, None)]  # shown as waiting for a moderator
    assert api.requests == [] and (await store.ledger_totals())["reserved"] == 1
    approved = await service.approve(job.id, moderator_id=7)
    assert approved is not None
    assert await service.approve(job.id, moderator_id=7) is None
    await service.wait_idle()
    assert len(events.delivered) == 1 and events.decisions == [(job.id, "approved", 7)]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_rejected_job_is_refunded_with_the_reason(service, api, store, events) -> None:
    job = await service.submit(needing_approval())
    rejected = await service.reject(job.id, moderator_id=7, reason="not here")
    assert rejected is not None
    assert await service.reject(job.id, moderator_id=7, reason="again") is None
    assert [(told.outcome_key, told.note) for told in events.told] == [("approval.rejected", "not here")]
    assert events.decisions == [(job.id, "rejected", 7)]
    assert api.requests == []
    row = await store.get_job(job.id)
    assert row is not None and (row.state, row.note) == ("failed", "not here")
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_pending_jobs_expire_with_a_refund(service, store, events) -> None:
    stale = await service.submit(needing_approval(minutes=-1))
    fresh = await service.submit(needing_approval(user=USER + 1))
    assert await service.expire_pending() == 1
    assert [told.id for told in events.told] == [stale.id] and events.told[0].outcome_key == "approval.expired"
    assert (await store.get_job(fresh.id)).state == "pending"
    assert await service.expire_pending() == 0


async def test_no_mod_channel_refunds_at_once(service, store, events) -> None:
    events.no_mod_channel = True
    await service.submit(needing_approval())
    assert events.errors() == ["error.approval_unavailable"]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_pending_jobs_count_against_the_per_user_cap(service) -> None:
    await service.submit(needing_approval())
    await service.submit(needing_approval())
    with pytest.raises(UserFacingError) as caught:
        await service.submit(draw())
    assert caught.value.key == "error.too_many_jobs"


async def test_pending_job_survives_a_restart_and_can_be_approved(start_service, store) -> None:
    first_events, second_events = RecordedEvents(), RecordedEvents()
    first = await start_service(first_events)
    job = await first.submit(needing_approval())
    await first.shutdown()
    assert first_events.told == [] and (await store.get_job(job.id)).state == "pending"
    second = await start_service(second_events)
    assert await second.approve(job.id, moderator_id=7) is not None
    await second.wait_idle()
    assert len(second_events.delivered) == 1
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_character_reference_is_forgotten_after_the_job(service, store) -> None:
    params = CharacterParams(prompt="p", reference_url="https://cdn/face.png")
    job = await run_one(service, JobRequest(Command.CHARACTER, params, GUILD, CHANNEL, USER, "en", live_reply()))
    row = await store.get_job(job.id)
    assert row is not None and row.params["reference_url"] == ""
    loaded = await service.load(job.id)
    with pytest.raises(UserFacingError) as caught:
        rerolled(loaded)
    assert caught.value.key == "error.reference_not_kept"


async def test_forget_user_keeps_todays_usage(service, store) -> None:
    for _ in range(2):
        await run_one(service)
    await run_one(service, draw(user=USER + 1))
    assert await service.forget_user(USER, guild_id=None) == 2
    assert await service.recent(guild_id=GUILD, user_id=USER) == []
    assert len(await service.recent(guild_id=GUILD, user_id=USER + 1)) == 1
    window = QuotaWindow.daily(datetime.now(UTC)).key
    assert await store.used_quota(guild_id=GUILD, user_id=USER, window=window) == 2


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


ANY_JOB = "*"


class GatedEvents(RecordedEvents):
    """Holds finished()/deliver()/awaiting_approval() for chosen jobs (or ANY_JOB) until a test lets them go, to
    reproduce races."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[tuple[str, str], tuple[asyncio.Event, asyncio.Event]] = {}

    def gate(self, what: str, job_id: str) -> tuple[asyncio.Event, asyncio.Event]:
        self.gates[(what, job_id)] = (asyncio.Event(), asyncio.Event())  # (entered, released)
        return self.gates[(what, job_id)]

    async def _hold(self, what: str, job_id: str) -> None:
        gate = self.gates.get((what, job_id)) or self.gates.get((what, ANY_JOB))
        if gate is not None:
            entered, released = gate
            entered.set()
            await released.wait()

    async def awaiting_approval(self, job: Job) -> int | None:
        message_id = await super().awaiting_approval(job)
        await self._hold("awaiting_approval", job.id)  # posted, its id not back yet
        return message_id

    async def finished(self, job: Job) -> None:
        await self._hold("finished", job.id)
        await super().finished(job)

    async def deliver(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        await self._hold("deliver", job.id)
        return await super().deliver(job, image, quota)


@pytest.mark.parametrize("decision", ["approved", "rejected"])
async def test_a_request_decided_before_its_id_is_stored_is_still_marked(start_service, store, decision) -> None:
    events = GatedEvents()
    service = await start_service(events)
    posted, answered = events.gate("awaiting_approval", ANY_JOB)
    submitting = asyncio.create_task(service.submit(needing_approval()))
    await posted.wait()  # the request is in the mod log and a moderator clicks before the bot knows its id
    (request,) = events.approval_requests
    if decision == "approved":
        assert await service.approve(request.id, moderator_id=7, request_message_id=4001) is not None
    else:
        assert await service.reject(request.id, moderator_id=7, reason=None, request_message_id=4001) is not None
    answered.set()
    job = await submitting
    await service.wait_idle()
    assert events.decisions == [(job.id, decision, 7)]
    assert (job.id, JobState.PENDING) not in events.shown_states  # never "waiting for approval" after the decision
    committed = 1 if decision == "approved" else 0
    assert await store.ledger_totals() == {"reserved": 0, "committed": committed, "refunded": 1 - committed}


async def test_the_sweeper_cannot_refund_a_job_approved_meanwhile(start_service, store) -> None:
    clock = Clock()
    events = GatedEvents()
    service = await start_service(events, clock=clock, approval_sweep_interval=3600)
    first = await service.submit(needing_approval(user=1, minutes=1))
    second = await service.submit(needing_approval(user=2, minutes=1))
    telling_first, release_first = events.gate("finished", first.id)
    clock.now += timedelta(minutes=2)  # both run out; the sweeper lists both
    sweep = asyncio.create_task(service.expire_pending())
    await telling_first.wait()
    clock.now -= timedelta(minutes=2)  # the moderator clicked Approve just in time for the second
    assert await service.approve(second.id, moderator_id=9) is not None
    release_first.set()
    assert await sweep == 1
    await service.wait_idle()
    assert (await store.get_job(second.id)).state == "done"
    assert [job.id for job, _, _ in events.delivered] == [second.id]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 1}


async def test_approve_is_refused_after_the_approval_time(service) -> None:
    job = await service.submit(needing_approval(minutes=-1))
    assert await service.approve(job.id, moderator_id=9) is None


async def test_approve_during_shutdown_keeps_the_job_pending(start_service, events, api, store) -> None:
    service = await start_service(max_concurrent=1, shutdown_grace=0.3)
    api.default_response = FakeResponse.delay(2)
    await service.submit(draw(user=1))
    waiting = await service.submit(needing_approval(user=2))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(service.shutdown())
    await asyncio.sleep(0.05)
    assert await service.approve(waiting.id, moderator_id=9) is None
    await stopping
    assert (await store.get_job(waiting.id)).state == "pending"  # it survives the restart, still reserved
    assert (await store.ledger_totals())["reserved"] == 1


async def test_a_store_error_while_settling_does_not_kill_the_worker(start_service, events, store) -> None:
    real_finish = store.finish_job
    failures = [sqlite3.OperationalError("database is locked")]

    async def flaky_finish(*args: object, **kwargs: object) -> bool:
        if failures:
            raise failures.pop()
        return await real_finish(*args, **kwargs)

    store.finish_job = flaky_finish  # type: ignore[method-assign]
    service = await start_service(max_concurrent=1)
    await service.submit(draw(user=1))
    second = await service.submit(draw(user=2))
    await asyncio.wait_for(service.wait_idle(), 5)
    assert (await store.get_job(second.id)).state == "done"


async def test_a_pending_job_nobody_was_asked_about_is_refunded_on_start(start_service, store) -> None:
    job = Job(
        id="a" * 32,
        command=Command.DRAW,
        params=DrawParams(prompt="p"),
        guild_id=GUILD,
        channel_id=CHANNEL,
        user_id=USER,
        language="en",
        reply=live_reply(),
        state=JobState.PENDING,
        approval_expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert await store.create_job(job.to_row(), window=QuotaWindow.daily(datetime.now(UTC)).key, limit=5)
    events = RecordedEvents()
    await start_service(events)
    assert events.errors() == ["error.approval_unavailable"]
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


# -- jobs of a process that stopped (several processes share the store) ----------------------------------------


async def abandoned(store: Store, *, state: str, attempts: int = 0, token_minutes: float = 15) -> str:
    """A job that a process which then died had claimed: its lease ran out a minute ago."""
    reply = ReplyTarget(
        application_id=1,
        token="tok",
        token_expires_at=datetime.now(UTC) + timedelta(minutes=token_minutes),
        status_message_id=77,
    )
    job = Job(
        "dead0000000000000000000000000001", Command.DRAW, DrawParams(prompt="p"), GUILD, CHANNEL, USER, "en", reply
    )
    assert await store.create_job(job.to_row(), window=QuotaWindow.daily(datetime.now(UTC)).key, limit=5)
    claimed = await store.claim_job(owner="dead-process", lease_until="2000-01-01T00:00:00+00:00", max_running=9)
    assert claimed is not None and claimed.id == job.id
    if state == "delivering":
        assert await store.update_job(job.id, state="delivering")
    if attempts:
        assert await store.update_job(job.id, attempts=attempts)
    return job.id


@pytest.fixture
async def survivor(start_service: StartService) -> JobService:
    """A process that looks at the queue only when told (so the dead process's job is not claimed here first)."""
    return await start_service(queue_poll_interval=3600)


async def test_a_running_job_of_a_stopped_process_runs_once_more(survivor, store, events, api) -> None:
    service = survivor
    job_id = await abandoned(store, state="running")
    assert await service.take_over_expired() == 1
    assert await service.take_over_expired() == 0  # taken once
    await service.wait_idle()
    [(delivered, _image, _quota)] = events.delivered
    assert delivered.id == job_id and len(api.requests) == 1
    row = await store.get_job(job_id)
    assert row is not None and (row.state, row.attempts, row.lease_owner) == ("done", 1, service.owner)
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


@pytest.mark.parametrize(("attempts", "token_minutes"), [(1, 15), (0, 0.25)])
async def test_a_job_run_once_more_already_or_too_late_to_answer_is_refunded(
    survivor, store, events, api, attempts, token_minutes
) -> None:
    service = survivor
    await abandoned(store, state="running", attempts=attempts, token_minutes=token_minutes)
    assert await service.take_over_expired() == 1
    assert events.errors() == ["error.interrupted"] and api.requests == []
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


@pytest.mark.parametrize(("posted", "outcome"), [(True, "committed"), (False, "refunded")])
async def test_a_delivering_job_of_a_stopped_process_is_checked_not_run_again(
    survivor, store, events, api, posted, outcome
) -> None:
    service = survivor
    job_id = await abandoned(store, state="delivering")
    if posted:
        events.posted[job_id] = 4242
    assert await service.take_over_expired() == 1
    assert api.requests == [] and events.delivered == []
    assert (await store.ledger_totals())[outcome] == 1
    row = await store.get_job(job_id)
    assert row is not None and row.state == ("done" if posted else "failed")


async def recorded(events: RecordedEvents, check: Callable[[], bool]) -> None:
    """Until `check()` holds, looked at whenever a job's progress changes (the announcer looks every moment)."""
    async with asyncio.timeout(5):
        while not check():
            events.changed.clear()
            await events.changed.wait()


async def announced(events: RecordedEvents, job_id: str, position: int) -> None:
    """Until `events` were told `job_id` is at `position` in the queue."""
    await recorded(events, lambda: (job_id, position) in events.progress_log)


def job_of_another_process(job_id: str, user: int = USER) -> Job:
    return Job(job_id, Command.DRAW, DrawParams(prompt=job_id), GUILD, CHANNEL, user, "en", live_reply())


async def run_elsewhere(store: Store, job_id: str) -> None:
    """Another process runs a job (the one the limit of 1 allows, so that jobs queued after it stay queued)."""
    busy = job_of_another_process(job_id, user=1)
    assert await store.create_job(busy.to_row(), window=QuotaWindow.daily(datetime.now(UTC)).key, limit=5)
    assert await store.claim_job(owner="busy-process", lease_until="2999-01-01T00:00:00+00:00", max_running=1)


async def test_a_queued_job_of_a_stopped_process_has_its_place_told_by_another(survivor, store, events, api) -> None:
    # Its requester would otherwise see the place it had when its process stopped until a process claims it.
    job = job_of_another_process("dead0000000000000000000000000002")
    row = replace(job.to_row(), lease_owner="dead-process", lease_expires_at="2000-01-01T00:00:00+00:00")
    assert await store.create_job(row, window=QuotaWindow.daily(datetime.now(UTC)).key, limit=5)
    assert await survivor.take_over_expired() == 1
    assert await survivor.take_over_expired() == 0  # taken once
    await announced(events, job.id, 1)
    stored = await store.get_job(job.id)
    assert stored is not None and (stored.state, stored.lease_owner) == ("queued", survivor.owner)
    assert api.requests == [] and await store.ledger_totals() == {"reserved": 1, "committed": 0, "refunded": 0}


def test_a_place_far_back_is_announced_only_when_it_crosses_a_bound() -> None:
    from core.jobs import _bracket

    # Near the front every step is news; further back only crossing 20, 50, 100, 200, 500... is.
    assert [_bracket(position) for position in (1, 2, 10)] == [1, 2, 10]
    assert _bracket(11) == _bracket(20) != _bracket(21) == _bracket(50) != _bracket(51)
    assert _bracket(4999) == 5000 and _bracket(10**6) == _bracket(5001)


def process_service(store: Store, api: FakeDoubao, session: aiohttp.ClientSession, **limits: float) -> JobService:
    """The job service of one of several processes sharing `store` (PostgreSQL); its API calls may be held long."""
    return job_service(store, api, session, api_timeout=10, **limits)


async def test_leases_are_kept_while_running_jobs_finish_during_shutdown(
    postgres_url: str, api: FakeDoubao, session: aiohttp.ClientSession, events: RecordedEvents
) -> None:
    # Several processes share PostgreSQL: a process that is shutting down keeps renewing the leases of the jobs it
    # lets finish, so that no other process takes them over (and calls the API for them again) meanwhile. The job
    # it had queued is the others' at once: its lease is not renewed.
    started, release = hold(api)
    async with open_store(postgres_url) as store:
        service = process_service(store, api, session, max_concurrent=1, lease_seconds=0.6, shutdown_grace=5.0)
        await service.start(events)
        job = await service.submit(draw())
        await started.wait()
        queued = await service.submit(draw("queued", user=USER + 1))
        stopping = asyncio.create_task(service.shutdown())
        await asyncio.sleep(1.5)  # well past the lease's first term
        expired = await store.expired_leases(format_time(datetime.now(UTC)))
        assert [(row.id, row.state) for row in expired] == [(queued.id, "queued")]
        release.set()
        await stopping
        assert job.state is JobState.DONE and len(api.requests) == 1


async def test_a_process_leaving_hands_its_queued_jobs_over_at_once(
    postgres_url: str, api: FakeDoubao, session: aiohttp.ClientSession
) -> None:
    # Several processes share PostgreSQL. A job queued from one is leased to it (it tells the requester their place);
    # when it shuts down, another takes the job over at its next look, not a lease's length (a minute) later.
    async with open_store(postgres_url) as store:
        await run_elsewhere(store, "busy0000000000000000000000000001")
        leaving_events, staying_events = RecordedEvents(), RecordedEvents()
        leaving = process_service(store, api, session, max_concurrent=1, lease_seconds=3600, shutdown_grace=0.1)
        staying = process_service(store, api, session, max_concurrent=1, lease_seconds=3600)
        await leaving.start(leaving_events)
        await staying.start(staying_events)
        try:
            job = await leaving.submit(draw("queued"))
            await announced(leaving_events, job.id, 1)
            row = await store.get_job(job.id)
            assert row is not None and (row.state, row.lease_owner) == ("queued", leaving.owner)
            assert await staying.take_over_expired() == 0  # the leaving process still holds it
            await leaving.shutdown()
            assert await staying.take_over_expired() == 1
            await announced(staying_events, job.id, 1)
            row = await store.get_job(job.id)
            assert row is not None and (row.state, row.lease_owner) == ("queued", staying.owner)
            assert api.requests == []
        finally:
            await leaving.shutdown()
            await staying.shutdown()


async def test_one_process_leases_no_queued_job(start_service, store, api) -> None:
    service = await start_service(max_concurrent=1)
    started, release = hold(api)
    await service.submit(draw("running"))
    await started.wait()
    job = await service.submit(draw("queued", user=USER + 1))
    row = await store.get_job(job.id)
    assert row is not None and (row.state, row.lease_owner, row.lease_expires_at) == ("queued", None, None)
    release.set()


async def test_an_approved_job_is_leased_to_the_process_that_queued_it(
    postgres_url: str, api: FakeDoubao, session: aiohttp.ClientSession, events: RecordedEvents
) -> None:
    async with open_store(postgres_url) as store:
        await run_elsewhere(store, "busy0000000000000000000000000002")
        service = process_service(store, api, session, max_concurrent=1)
        await service.start(events)
        try:
            job = await service.submit(needing_approval())
            row = await store.get_job(job.id)
            assert row is not None and (row.state, row.lease_owner) == ("pending", None)
            assert await service.approve(job.id, moderator_id=7) is not None
            row = await store.get_job(job.id)
            assert row is not None and (row.state, row.lease_owner) == ("queued", service.owner)
        finally:
            await service.shutdown()


async def test_a_process_that_lost_a_queued_job_to_another_stops_announcing_it(
    postgres_url: str, api: FakeDoubao, session: aiohttp.ClientSession, events: RecordedEvents
) -> None:
    # This process was too slow to renew (a stall, a database outage) and another took the job over: only one of
    # them may edit its status from then on.
    async with open_store(postgres_url) as store:
        await run_elsewhere(store, "busy0000000000000000000000000003")
        service = process_service(store, api, session, max_concurrent=1, lease_seconds=0.6)
        await service.start(events)
        try:
            job = await service.submit(draw())
            await announced(events, job.id, 1)
            other = await asyncpg.connect(**postgres_connect_args(postgres_url))
            try:  # what another process's take-over does, in one statement (this process renews every 0.2 s)
                await other.execute("UPDATE jobs SET lease_owner = 'other' WHERE id = $1", job.id)
            finally:
                await other.close()
            await recorded(events, lambda: job.id in events.stopped)  # at this process's next renewal
            row = await store.get_job(job.id)
            assert row is not None and (row.state, row.lease_owner) == ("queued", "other")
        finally:
            await service.shutdown()
