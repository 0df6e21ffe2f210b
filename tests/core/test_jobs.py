"""The life of a job with the real store and the fake 302.ai: reserve, commit, refund."""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from core.config import ApiExtras
from core.doubao import DoubaoClient
from core.errors import JobFailed, QuotaExhausted
from core.jobs import DeliveryError, GenerationRequest, GenerationResult, JobRunner
from core.params import CharacterParams, Command, DrawParams
from core.quota import QuotaService
from storage import Store, open_store
from tests.fakes.doubao_server import FakeDoubao, FakeResponse, make_png

API_KEY = "sk-job-test-key-0123456789"
GUILD, CHANNEL, USER = 100, 200, 300
BIG = 10 * 1024 * 1024


class Deliveries:
    """A delivery callback that records what it was given, or fails when told to."""

    def __init__(self) -> None:
        self.results: list[GenerationResult] = []
        self.fail = False

    async def __call__(self, result: GenerationResult) -> None:
        if self.fail:
            raise DeliveryError("Discord said no")
        self.results.append(result)


@pytest.fixture
async def api() -> AsyncIterator[FakeDoubao]:
    async with FakeDoubao(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/bot.sqlite3") as opened:
        yield opened


@pytest.fixture
async def runner(api: FakeDoubao, store: Store) -> AsyncIterator[JobRunner]:
    async with aiohttp.ClientSession() as session:
        client = DoubaoClient(
            session, api_key=API_KEY, base_url=api.base_url, timeout=0.5, max_attempts=2, backoff_base=0.01
        )
        yield JobRunner(
            quota=QuotaService(store, daily_limit=5),
            client=client,
            session=session,
            extras=ApiExtras(),
            max_concurrent_jobs=2,
        )


def draw(prompt: str = "a cat", user: int = USER) -> GenerationRequest:
    return GenerationRequest(Command.DRAW, DrawParams(prompt=prompt), GUILD, CHANNEL, user)


async def test_success_delivers_the_served_bytes_and_commits(runner, api, store) -> None:
    deliveries = Deliveries()
    result = await runner.generate(draw(), deliveries, upload_limit=BIG)
    assert deliveries.results == [result]
    assert result.image.data == api.image_bytes(api.served_images[-1])
    assert 0 <= result.params.seed < 2**31
    assert api.requests[0].json["seed"] == result.params.seed
    assert result.quota.used == 1 and result.quota.remaining == 4
    assert await store.ledger_totals() == {"reserved": 0, "committed": 1, "refunded": 0}


async def test_character_sends_the_reference(runner, api) -> None:
    request = GenerationRequest(
        Command.CHARACTER,
        CharacterParams(prompt="p", reference_url="https://cdn/ref.png"),
        GUILD,
        CHANNEL,
        USER,
    )
    await runner.generate(request, Deliveries(), upload_limit=BIG)
    assert api.requests[0].path == "/doubao/drawing/character"
    assert api.requests[0].json["image_urls"] == ["https://cdn/ref.png"]


async def test_base64_result_is_delivered(runner, api) -> None:
    api.queue(FakeResponse.success_base64("b64"))
    result = await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert result.image.data == api.image_bytes("b64")


@pytest.mark.parametrize(
    ("response", "key"),
    [
        (FakeResponse.business_error(50411), "error.content_rejected"),
        (FakeResponse.gateway_error(-10004, "insufficient balance"), "error.bot_misconfigured"),
        (FakeResponse.http_status(503), "error.service_busy"),
        (FakeResponse.http_status(429), "error.service_busy"),
        (FakeResponse.no_image(), "error.bad_response"),
    ],
)
async def test_api_failures_refund_and_say_why(runner, api, store, response, key) -> None:
    api.default_response = response
    deliveries = Deliveries()
    with pytest.raises(JobFailed) as caught:
        await runner.generate(draw(), deliveries, upload_limit=BIG)
    assert caught.value.key == key
    assert deliveries.results == []
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_timeout_refunds(runner, api, store) -> None:
    api.default_response = FakeResponse.hang()
    with pytest.raises(JobFailed) as caught:
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert caught.value.key == "error.service_busy"
    assert (await store.ledger_totals())["refunded"] == 1


async def test_download_failure_refunds(runner, api, store) -> None:
    api.serve_file("page", b"<html>not an image</html>", content_type="text/html")
    api.queue(FakeResponse.success_urls("page"))
    with pytest.raises(JobFailed) as caught:
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert caught.value.key == "error.download_failed"
    assert (await store.ledger_totals())["refunded"] == 1


async def test_delivery_failure_refunds(runner, store) -> None:
    deliveries = Deliveries()
    deliveries.fail = True
    with pytest.raises(JobFailed) as caught:
        await runner.generate(draw(), deliveries, upload_limit=BIG)
    assert caught.value.key == "error.delivery_failed"
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_cancelled_job_refunds(runner, api, store) -> None:
    reached_api = asyncio.Event()

    def slow(_payload: object) -> FakeResponse:
        reached_api.set()
        return FakeResponse.delay(5)

    api.default_response = slow
    task = asyncio.create_task(runner.generate(draw(), Deliveries(), upload_limit=BIG))
    await asyncio.wait_for(reached_api.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.ledger_totals() == {"reserved": 0, "committed": 0, "refunded": 1}


async def test_exhausted_quota_makes_no_api_call(runner, api, store) -> None:
    for _ in range(5):
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    api.reset_stats()
    with pytest.raises(QuotaExhausted) as caught:
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert caught.value.params["limit"] == 5
    assert caught.value.params["resets"].hour == 0
    assert api.requests == []


async def test_refunded_generation_can_be_used_again(runner, api) -> None:
    for _ in range(4):
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    api.queue(FakeResponse.business_error(50412))
    with pytest.raises(JobFailed):
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    result = await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert result.quota.remaining == 0


async def test_fifty_concurrent_requests_with_five_left_start_five_jobs(runner, api, store) -> None:
    outcomes = await asyncio.gather(
        *(runner.generate(draw(f"cat {n}"), Deliveries(), upload_limit=BIG) for n in range(50)),
        return_exceptions=True,
    )
    assert sum(isinstance(outcome, GenerationResult) for outcome in outcomes) == 5
    assert sum(isinstance(outcome, QuotaExhausted) for outcome in outcomes) == 45
    assert len(api.requests) == 5
    assert await store.ledger_totals() == {"reserved": 0, "committed": 5, "refunded": 0}


async def test_api_calls_in_flight_are_bounded(runner, api) -> None:
    api.default_response = lambda _payload: FakeResponse.delay(0.2, then=FakeResponse.success_urls())
    await asyncio.gather(
        *(runner.generate(draw(user=USER + n), Deliveries(), upload_limit=BIG) for n in range(5))
    )
    assert api.max_in_flight == 2


async def test_image_over_the_upload_limit_is_reencoded(runner, api) -> None:
    noisy = Image.frombytes("RGB", (700, 700), random.Random(7).randbytes(700 * 700 * 3))
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    api.add_image("huge", buffer.getvalue())
    api.queue(FakeResponse.success_urls("huge"))
    limit = len(buffer.getvalue()) // 3
    result = await runner.generate(draw(), Deliveries(), upload_limit=limit)
    assert len(result.image.data) <= limit
    assert Image.open(io.BytesIO(result.image.data)).format == "JPEG"


async def test_small_image_is_delivered_unchanged(runner, api) -> None:
    api.add_image("small", make_png("small"))
    api.queue(FakeResponse.success_urls("small"))
    result = await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert result.image.data == api.image_bytes("small")


async def test_key_never_logged(runner, api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    api.queue(FakeResponse.gateway_error(-10001, "missing key"))
    with pytest.raises(JobFailed):
        await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    await runner.generate(draw(), Deliveries(), upload_limit=BIG)
    assert caplog.text and API_KEY not in caplog.text
