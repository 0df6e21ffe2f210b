"""DoubaoClient against the fake 302.ai server: every response shape, every error class, no key leaks."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from core.doubao import (
    AccountError,
    BadResponse,
    ContentRejected,
    DoubaoClient,
    DoubaoError,
    Endpoint,
    GeneratedImage,
    RateLimited,
    ServiceUnavailable,
    TimedOut,
    _parse_retry_after,
    parse_response,
)
from core.images import download_image
from tests.fakes.doubao_server import (
    BUSINESS_MESSAGES,
    CONTENT_CODES,
    UPSTREAM_CONTENT_MESSAGES,
    FakeDoubao,
    FakeResponse,
)

API_KEY = "sk-test-SECRET-4f1c9a7e0b"
DRAW = {"prompt": "a red fox in the snow", "width": 512, "height": 512, "scale": 3.5, "ddim_steps": 25}
CHARACTER = {"prompt": "the same dog on the moon", "image_urls": ["https://example.com/dog.png"]}

MakeClient = Callable[..., DoubaoClient]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDoubao]:
    async with FakeDoubao(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def make_client(fake: FakeDoubao, session: aiohttp.ClientSession) -> MakeClient:
    def make(**overrides: Any) -> DoubaoClient:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "base_url": fake.base_url,
            "timeout": 5.0,
            "max_attempts": 3,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
        }
        options.update(overrides)
        return DoubaoClient(session, **options)

    return make


@pytest.fixture(autouse=True)
def key_never_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """No record of any phase (setup, the test, teardown) shows the key, in its message or its traceback.

    After `yield`, `caplog.text` and `caplog.records` hold the teardown's records only: read every phase.
    """
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for when in ("setup", "call", "teardown"):
        for record in caplog.get_records(when):
            if API_KEY in formatter.format(record):
                pytest.fail(f"the API key was logged during {when} by {record.name} at line {record.lineno}")


def assert_safe(err: BaseException) -> None:
    """Nothing reachable from the error mentions the key."""
    seen: BaseException | None = err
    while seen is not None:
        for text in (str(seen), repr(seen), *map(str, seen.args)):
            assert API_KEY not in text
        seen = seen.__cause__ or seen.__context__
    assert isinstance(err, DoubaoError)
    assert API_KEY not in err.message


async def expect_error(client: DoubaoClient, cls: type[DoubaoError], payload: Any = None) -> DoubaoError:
    with pytest.raises(cls) as info:
        await client.generate(Endpoint.DRAW, payload or DRAW)
    assert type(info.value) is cls
    assert_safe(info.value)
    return info.value


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "retrying" in r.getMessage()]


# --- response shapes --------------------------------------------------------------------------------------


async def test_volcengine_urls_and_request(fake: FakeDoubao, make_client: MakeClient, session: Any) -> None:
    fake.queue(FakeResponse.success_urls("fox", request_id="req-abc"))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image == GeneratedImage(url=fake.image_url("fox"), data=None, request_id="req-abc")
    [request] = fake.requests
    assert request.path == "/doubao/drawing"
    assert request.method == "POST"
    assert request.json == DRAW
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert fake.rejections == []
    downloaded = await download_image(session, image.url or "", max_bytes=1024 * 1024)
    assert downloaded.data == fake.image_bytes("fox")


async def test_volcengine_base64(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.success_base64("inline"))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.url is None
    assert image.data == fake.image_bytes("inline")
    assert image.data is not None and image.data.startswith(b"\x89PNG")


async def test_documented_string_output(fake: FakeDoubao, make_client: MakeClient) -> None:
    url = fake.ensure_image("doc")
    fake.queue(FakeResponse.documented_shape(output=url))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.url == url
    assert image.data is None
    assert image.request_id and image.request_id.startswith("req-")


async def test_documented_list_output_takes_first(fake: FakeDoubao, make_client: MakeClient) -> None:
    first, second = fake.ensure_image("one"), fake.ensure_image("two")
    fake.queue(FakeResponse.documented_shape(output=[first, second]))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.url == first


async def test_documented_data_url_output(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.documented_shape(data_url=True))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.url is None
    assert image.data == fake.image_bytes(fake.served_images[-1])


async def test_documented_raw_base64_output(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.documented_shape(output=base64.b64encode(fake.image_bytes()).decode()))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.data == fake.image_bytes()


async def test_character_endpoint_and_default_success(fake: FakeDoubao, make_client: MakeClient) -> None:
    image = await make_client().generate(Endpoint.CHARACTER, CHARACTER)

    assert fake.requests[0].path == "/doubao/drawing/character"
    assert fake.requests[0].json == CHARACTER
    assert image.url == fake.image_url(fake.served_images[-1])


async def test_attempts_logged_at_debug(
    fake: FakeDoubao, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    await make_client().generate(Endpoint.DRAW, DRAW)

    debug = [r.getMessage() for r in caplog.records if r.name == "core.doubao" and r.levelno == logging.DEBUG]
    assert any("/doubao/drawing" in m and "HTTP 200" in m for m in debug)


# --- errors that are not retried -------------------------------------------------------------------------


@pytest.mark.parametrize("code", CONTENT_CODES)
async def test_content_codes_rejected_without_retry(fake: FakeDoubao, make_client: MakeClient, code: int) -> None:
    fake.queue(FakeResponse.business_error(code))  # a neutral message: only the code says "content"

    err = await expect_error(make_client(), ContentRejected)

    assert err.code == code
    assert err.kind == "content_rejected"
    assert str(code) in str(err)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("code", CONTENT_CODES)
async def test_the_fakes_content_messages_say_nothing_about_content(
    fake: FakeDoubao, make_client: MakeClient, code: int
) -> None:
    """The same message under a code the table does not know is no content refusal: the test above is about
    the code table, not the message fallback."""
    fake.queue(FakeResponse.business_error(61234, BUSINESS_MESSAGES[code]))

    await expect_error(make_client(), BadResponse)


@pytest.mark.parametrize("code", CONTENT_CODES)
async def test_upstreams_content_messages_are_understood_under_an_unknown_code(
    fake: FakeDoubao, make_client: MakeClient, code: int
) -> None:
    fake.queue(FakeResponse.business_error(61234, UPSTREAM_CONTENT_MESSAGES[code]))

    await expect_error(make_client(), ContentRejected)


@pytest.mark.parametrize(
    "response",
    [
        FakeResponse.gateway_error(-1, "Prompt contains sensitive words"),
        FakeResponse.gateway_error(-1, "blocked", message_cn="提示词包含敏感词"),
        FakeResponse.documented_shape(output="", status="failed", error="Output failed content moderation"),
    ],
    ids=["gateway-en", "gateway-cn", "documented-failed"],
)
async def test_content_messages_rejected_without_retry(
    fake: FakeDoubao, make_client: MakeClient, response: FakeResponse
) -> None:
    fake.queue(response)

    await expect_error(make_client(), ContentRejected)

    assert len(fake.requests) == 1


@pytest.mark.parametrize("err_code", [-10001, -10002, -10004, -10006, -10007, -10018])
async def test_account_errors_not_retried_and_logged_for_admin(
    fake: FakeDoubao, make_client: MakeClient, caplog: pytest.LogCaptureFixture, err_code: int
) -> None:
    fake.queue(FakeResponse.gateway_error(err_code, status=200 if err_code == -10004 else 403))

    err = await expect_error(make_client(), AccountError)

    assert err.code == err_code
    assert len(fake.requests) == 1
    assert any(r.levelno == logging.ERROR and r.name == "core.doubao" for r in caplog.records)
    assert retry_warnings(caplog) == []


async def test_wrong_key_is_an_account_error(fake: FakeDoubao, make_client: MakeClient) -> None:
    wrong = "sk-wrong-key-123456"

    err = await expect_error(make_client(api_key=wrong), AccountError)

    assert err.code == -10001 and err.http_status == 401
    assert wrong not in str(err)
    assert fake.rejections == ["bad Authorization header"]
    assert len(fake.requests) == 1


async def test_plain_401_is_an_account_error(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.http_status(401))

    await expect_error(make_client(), AccountError)

    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "response",
    [
        FakeResponse.bad_body(b""),
        FakeResponse.bad_body("<html>oops</html>"),
        FakeResponse.bad_body("[1, 2]", content_type="application/json"),
        FakeResponse.no_image(),
        FakeResponse(body={"hello": "world"}),
        FakeResponse.business_error(61234, "something odd"),
        FakeResponse.documented_shape(output="", status="processing"),
        FakeResponse.documented_shape(output="data:image/png;base64,@@not-base64@@"),
        FakeResponse.http_status(404),
        FakeResponse.http_status(400, body={"detail": "nope"}),
        FakeResponse.gateway_error(-1, "model is not supported"),
    ],
    ids=[
        "empty",
        "html",
        "json-list",
        "no-image",
        "unknown-shape",
        "unknown-code",
        "not-finished",
        "bad-base64",
        "404",
        "400",
        "gateway-other",
    ],
)
async def test_bad_responses_not_retried(fake: FakeDoubao, make_client: MakeClient, response: FakeResponse) -> None:
    fake.queue(response)

    err = await expect_error(make_client(), BadResponse)

    assert err.kind == "bad_response"
    assert len(fake.requests) == 1


async def test_out_of_range_payload_is_refused_by_fake(fake: FakeDoubao, make_client: MakeClient) -> None:
    err = await expect_error(make_client(), BadResponse, {**DRAW, "width": 1024})

    assert "width" in str(err)
    assert err.http_status == 400
    assert fake.rejections == ["width must be in [256, 768], got 1024"]


# --- errors that are retried -----------------------------------------------------------------------------


async def test_429_then_success(fake: FakeDoubao, make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    fake.queue(FakeResponse.http_status(429), FakeResponse.success_urls("after"))

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert image.url == fake.image_url("after")
    assert len(fake.requests) == 2
    assert len(retry_warnings(caplog)) == 1


async def test_429_exhausted_honours_retry_after(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(*[FakeResponse.http_status(429, retry_after=0.25)] * 3)
    started = time.monotonic()

    err = await expect_error(make_client(max_attempts=3, backoff_base=0.001, backoff_max=5.0), RateLimited)

    assert err.http_status == 429
    times = [r.time for r in fake.requests]
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.24 for gap in gaps), gaps
    assert time.monotonic() - started < 3


async def test_retry_after_is_capped_by_backoff_max(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.http_status(429, retry_after=60), FakeResponse.success_urls())
    started = time.monotonic()

    await make_client(backoff_max=0.05).generate(Endpoint.DRAW, DRAW)

    assert len(fake.requests) == 2
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("code", [50429, 50430])
async def test_business_rate_limits(fake: FakeDoubao, make_client: MakeClient, code: int) -> None:
    fake.queue(FakeResponse.business_error(code), FakeResponse.success_urls())
    await make_client().generate(Endpoint.DRAW, DRAW)
    assert len(fake.requests) == 2

    fake.queue(*[FakeResponse.business_error(code)] * 2)
    err = await expect_error(make_client(max_attempts=2), RateLimited)
    assert err.code == code
    assert len(fake.requests) == 4


TRANSIENT = [
    FakeResponse.http_status(500),
    FakeResponse.http_status(502, body={"message": "bad gateway"}),
    FakeResponse.http_status(503, retry_after=0.01),
    FakeResponse.business_error(50500),
    FakeResponse.business_error(50501, status=500),
    FakeResponse.gateway_error(-1024),
    FakeResponse.gateway_error(-1024, status=504),
]
TRANSIENT_IDS = ["500", "502-json", "503", "50500", "50501", "-1024", "-1024-504"]


@pytest.mark.parametrize("response", TRANSIENT, ids=TRANSIENT_IDS)
async def test_transient_then_success(fake: FakeDoubao, make_client: MakeClient, response: FakeResponse) -> None:
    fake.queue(response, response, FakeResponse.success_urls("ok"))

    image = await make_client(max_attempts=3).generate(Endpoint.DRAW, DRAW)

    assert image.url == fake.image_url("ok")
    assert len(fake.requests) == 3


@pytest.mark.parametrize("response", TRANSIENT, ids=TRANSIENT_IDS)
async def test_transient_exhausted(fake: FakeDoubao, make_client: MakeClient, response: FakeResponse) -> None:
    fake.queue(*[response] * 3, FakeResponse.success_urls())

    err = await expect_error(make_client(max_attempts=3), ServiceUnavailable)

    assert err.kind == "service_unavailable"
    assert len(fake.requests) == 3
    assert fake.pending == 1


async def test_connection_refused(session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = DoubaoClient(
        session, api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_attempts=3, backoff_base=0.01
    )

    err = await expect_error(client, ServiceUnavailable)

    assert "connection" in str(err)
    assert len(retry_warnings(caplog)) == 2


async def test_timeout_against_a_hanging_server(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.hang(), FakeResponse.hang())
    started = time.monotonic()

    err = await expect_error(make_client(timeout=0.2, max_attempts=2), TimedOut)

    assert isinstance(err, ServiceUnavailable) and err.retryable and err.kind == "timeout"
    assert "0.2" in str(err)
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 3


async def test_slow_answer_within_timeout(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.delay(0.2, then=FakeResponse.success_urls("slow")))

    image = await make_client(timeout=2.0).generate(Endpoint.DRAW, DRAW)

    assert image.url == fake.image_url("slow")


# --- secrets ---------------------------------------------------------------------------------------------


async def test_key_echoed_by_upstream_is_redacted(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(FakeResponse.gateway_error(-10002, f"Invalid API key {API_KEY}", status=401))

    err = await expect_error(make_client(), AccountError)

    assert "***" in str(err)


async def test_key_echoed_in_retried_error_is_redacted(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.queue(*[FakeResponse.http_status(503, body={"error": {"message": f"upstream saw {API_KEY}"}})] * 2)

    err = await expect_error(make_client(max_attempts=2), ServiceUnavailable)

    assert "***" in str(err)


def test_repr_shows_base_url_not_key() -> None:
    client = DoubaoClient(None, api_key=API_KEY, base_url="https://api.302.ai/")  # type: ignore[arg-type]
    assert repr(client) == "DoubaoClient(base_url='https://api.302.ai')"
    assert API_KEY not in str(client)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    client = DoubaoClient(None, api_key=API_KEY, backoff_base=1.0, backoff_max=30.0)  # type: ignore[arg-type]
    for _ in range(50):
        assert 0.5 <= client._backoff_delay(1, None) <= 1.0
        assert 2.0 <= client._backoff_delay(3, None) <= 4.0
        assert 15.0 <= client._backoff_delay(10, None) <= 30.0
        assert client._backoff_delay(1, 7.0) == 7.0
        assert client._backoff_delay(1, 600.0) == 30.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("2", 2.0), ("0.25", 0.25), ("-3", 0.0), ("soon", None), ("nan", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert _parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    assert _parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 80 <= (_parse_retry_after(future) or 0) <= 90


# --- the parser on its own -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": 0, "data": {"image_urls": ["https://x/1.png"]}}, "https://x/1.png"),
        ({"code": 10000, "data": {"image_urls": [None, " ", "https://x/2.png"]}}, "https://x/2.png"),
        ({"data": {"image_urls": ["https://x/3.png"]}, "request_id": "r"}, "https://x/3.png"),
        ('{"output": "https://x/4.png", "status": "succeeded"}', "https://x/4.png"),
    ],
)
def test_parse_response_urls(body: Any, expected: str) -> None:
    assert parse_response(body).url == expected


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (None, BadResponse),
        ("not json", BadResponse),
        ({"code": 10000, "data": {"image_urls": None, "binary_data_base64": None}}, BadResponse),
        (
            {"code": 10000, "data": {"algorithm_base_resp": {"status_code": 50511, "status_message": "x"}}},
            ContentRejected,
        ),
        ({"code": "50413", "message": "Post Text Risk Not Pass"}, ContentRejected),
        ({"code": 50999, "message": "image risk not pass"}, ContentRejected),
        ({"code": 50500, "message": "Internal Error"}, ServiceUnavailable),
        ({"output": "", "status": "failed", "error": {"message": "NSFW output"}}, ContentRejected),
        ({"output": "https://x/1.png", "status": "error", "error": ""}, BadResponse),
        ({"error": {"err_code": -10005, "message": "whatever"}}, AccountError),
        ({"error": {"err_code": -10019, "message": "whatever"}}, BadResponse),
        ({"error": {"err_code": -1024, "message": "timeout"}}, ServiceUnavailable),
    ],
)
def test_parse_response_errors(body: Any, cls: type[DoubaoError]) -> None:
    with pytest.raises(cls):
        parse_response(body)


def test_error_message_is_truncated() -> None:
    with pytest.raises(BadResponse) as info:
        parse_response({"code": 1, "message": "x" * 5000})
    assert len(str(info.value)) <= 200


# --- the fake itself -------------------------------------------------------------------------------------


async def test_fake_counts_concurrency(fake: FakeDoubao, make_client: MakeClient) -> None:
    fake.default_response = FakeResponse.delay(0.2)
    client = make_client()

    images = await asyncio.gather(*(client.generate(Endpoint.DRAW, DRAW) for _ in range(4)))

    assert fake.max_in_flight == 4
    assert fake.in_flight == 0
    assert len({i.url for i in images}) == 4


async def test_fake_callable_hook(fake: FakeDoubao, make_client: MakeClient) -> None:
    seen: list[Any] = []

    async def hook(body: Any) -> FakeResponse:
        seen.append(body)
        return FakeResponse.success_urls(body["prompt"].replace(" ", "-"))

    fake.queue(hook)

    image = await make_client().generate(Endpoint.DRAW, DRAW)

    assert seen == [DRAW]
    assert image.url == fake.image_url("a-red-fox-in-the-snow")


DOC_DRAW_EXAMPLE = {
    "prompt": "千军万马",
    "model_version": "general_v2.1_L",
    "req_schedule_conf": "general_v20_9B_pe",
    "llm_seed": -1,
    "seed": -1,
    "scale": 3.5,
    "ddim_steps": 25,
    "width": 512,
    "height": 512,
    "use_pre_llm": True,
    "use_sr": True,
    "sr_seed": -1,
    "sr_strength": 0.4,
    "sr_scale": 3.5,
    "sr_steps": 20,
    "is_only_sr": False,
    "return_url": True,
    "logo_info": {"add_logo": False, "position": 0, "language": 0, "opacity": 0.3, "logo_text_content": "x"},
}
DOC_CHARACTER_EXAMPLE = {
    "image_urls": ["https://xxx"],
    "prompt": "千军万马",
    "desc_pushback": True,
    "seed": -1,
    "scale": 3.5,
    "ddim_steps": 9,
    "width": 512,
    "height": 512,
    "cfg_rescale": 0.7,
    "ref_ip_weight": 0.7,
    "ref_id_weight": 0.36,
    "use_sr": True,
    "return_url": True,
}


async def test_fake_accepts_the_documented_examples(fake: FakeDoubao, make_client: MakeClient) -> None:
    client = make_client()
    await client.generate(Endpoint.DRAW, DOC_DRAW_EXAMPLE)
    await client.generate(Endpoint.CHARACTER, DOC_CHARACTER_EXAMPLE)
    assert fake.rejections == []


@pytest.mark.parametrize(
    ("endpoint", "payload", "field"),
    [
        (Endpoint.DRAW, {"width": 512}, "prompt"),
        (Endpoint.DRAW, {**DRAW, "width": 255}, "width"),
        (Endpoint.DRAW, {**DRAW, "height": 769}, "height"),
        (Endpoint.DRAW, {**DRAW, "width": 512.0}, "width"),
        (Endpoint.DRAW, {**DRAW, "width": True}, "width"),
        (Endpoint.DRAW, {**DRAW, "scale": 0.5}, "scale"),
        (Endpoint.DRAW, {**DRAW, "scale": 10.5}, "scale"),
        (Endpoint.DRAW, {**DRAW, "ddim_steps": 0}, "ddim_steps"),
        (Endpoint.DRAW, {**DRAW, "ddim_steps": 201}, "ddim_steps"),
        (Endpoint.DRAW, {**DRAW, "use_sr": "yes"}, "use_sr"),
        (Endpoint.DRAW, {**DRAW, "model_version": "v9"}, "model_version"),
        (Endpoint.CHARACTER, {"prompt": "p"}, "image_urls"),
        (Endpoint.CHARACTER, {**CHARACTER, "image_urls": ["file:///etc/passwd"]}, "image_urls"),
        (Endpoint.CHARACTER, {**CHARACTER, "ref_ip_weight": 1.5}, "ref_ip_weight"),
        (Endpoint.CHARACTER, {**CHARACTER, "ref_id_weight": -0.1}, "ref_id_weight"),
    ],
)
async def test_fake_refuses_out_of_range_values(
    fake: FakeDoubao, make_client: MakeClient, endpoint: Endpoint, payload: dict[str, Any], field: str
) -> None:
    fake.queue(FakeResponse.success_urls())  # must not be consumed by a refused request

    with pytest.raises(BadResponse) as info:
        await make_client().generate(endpoint, payload)

    assert field in str(info.value)
    assert len(fake.rejections) == 1 and field in fake.rejections[0]
    assert fake.pending == 1
