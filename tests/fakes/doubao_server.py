"""A fake 302.ai Doubao API: a real aiohttp server on 127.0.0.1 for client, end-to-end and load tests.

    async with FakeDoubao() as fake:
        fake.queue(FakeResponse.http_status(429, retry_after=0.1), FakeResponse.success_urls())
        client = DoubaoClient(session, api_key=fake.api_key, base_url=fake.base_url)

Every API request is recorded (`requests`) and checked like the real gateway would: the key, the required
fields and the documented numeric ranges. A request that fails those checks gets a 302-style 400/401 and
its reason is appended to `rejections`, which end-to-end tests can assert is empty. Requests that pass are
answered from `queue()` in order, then by `default_response`, then by a fresh success with a new image.
Images are served at `{base_url}/files/{name}.{ext}`; `image_bytes(name)` returns the exact bytes served.
For load tests, `latency` (seconds, or a callable `(request JSON) -> seconds`) makes every API answer leave
exactly that long after its request arrived; each request records the latency it was given.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

DEFAULT_API_KEY = "sk-test-key"
INVALID_PARAMS_ERR_CODE = -1  # anything outside -10001..-10018, which the client treats as account errors

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
# The content-check codes come with neutral messages, so a client is tested on the code alone; upstream's own
# wordings ("Pre Img Risk Not Pass", ...) are in UPSTREAM_CONTENT_MESSAGES for tests of the message fallback.
BUSINESS_MESSAGES = {
    50411: "Pre Img Not Pass",
    50412: "Pre Text Not Pass",
    50413: "Pre Text Not Pass (2)",
    50511: "Post Img Not Pass",
    50512: "Post Text Not Pass",
    50429: "Request Has Reached API Limit, Please Try Later",
    50430: "Request Has Reached API Concurrent Limit, Please Try Later",
    50500: "Internal Error",
    50501: "Internal RPC Error",
}
CONTENT_CODES = (50411, 50412, 50413, 50511, 50512)
UPSTREAM_CONTENT_MESSAGES = {
    50411: "Pre Img Risk Not Pass",
    50412: "Text Risk Not Pass",
    50413: "Post Text Risk Not Pass: input contains sensitive words",
    50511: "Post Img Risk Not Pass",
    50512: "Post Text Risk Not Pass",
}
_GATEWAY_MESSAGES = {
    -10001: "Missing API key",
    -10002: "Invalid API key",
    -10004: "Insufficient account balance",
    -10006: "Total quota of the API key reached",
    -10007: "Daily quota of the API key reached",
    -10018: "Monthly quota of the API key reached",
    -1024: "Upstream request timed out",
}
# name -> (kind, low, high); kind "int" refuses floats and bools, "number" refuses bools.
_COMMON_RANGES: dict[str, tuple[str, float, float]] = {
    "width": ("int", 256, 768),
    "height": ("int", 256, 768),
    "scale": ("number", 1, 10),
    "ddim_steps": ("int", 1, 200),
    "seed": ("int", -1, 2**63 - 1),
}
_CHARACTER_RANGES = {
    "ref_ip_weight": ("number", 0, 1),
    "ref_id_weight": ("number", 0, 1),
    "cfg_rescale": ("number", 0, 1),
}
_BOOLEANS = ("use_sr", "return_url", "use_pre_llm", "is_only_sr", "desc_pushback")
_ENUMS = {
    "model_version": {"general_v2.1_L", "general_v2.0_L", "general_v2.0"},
    "req_schedule_conf": {"general_v20_9B_pe", "general_v20_9B_rephraser"},
}
DRAW_PATH = "/doubao/drawing"
CHARACTER_PATH = "/doubao/drawing/character"


def make_png(seed: int | str = 0, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small real PNG whose colours depend on `seed`, so different images have different bytes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = rng.randrange(x0, size[0] + 1), rng.randrange(y0, size[1] + 1)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    json: Any  # None when the body was not JSON
    headers: Mapping[str, str]
    time: float  # time.monotonic() on arrival
    latency: float | None = None  # the `latency` this request was answered with, if one was set

    @property
    def api_key(self) -> str | None:
        """The key the request was made with."""
        return self.headers.get("Authorization", "").removeprefix("Bearer ") or None


@dataclass(frozen=True)
class ServedFile:
    data: bytes
    content_type: str | None  # None: no type of ours; aiohttp then sends application/octet-stream
    chunked: bool = False  # stream without Content-Length
    status: int = 200
    drop_first: int = 0  # close the connection without answering on the first N requests


BodyFactory = Callable[["FakeDoubao"], Any]


@dataclass(frozen=True)
class FakeResponse:
    """One scripted answer. `body` is JSON (or a callable `(fake) -> JSON`); `raw` replaces it with bytes."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    wait: float = 0.0  # seconds before answering
    never_answer: bool = False

    # --- successes -------------------------------------------------------------------------------------
    @classmethod
    def success_urls(cls, *names: str, request_id: str | None = None) -> FakeResponse:
        """Volcengine body with `image_urls`; without names, a fresh image is made for each answer."""

        def body(fake: FakeDoubao) -> Any:
            urls = [fake.ensure_image(n) for n in names] if names else [fake.image_url(fake.new_image())]
            return _volcengine_body(urls, [], request_id or fake.next_request_id())

        return cls(body=body)

    @classmethod
    def success_base64(cls, name: str | None = None, *, request_id: str | None = None) -> FakeResponse:
        """Volcengine body with the image in `binary_data_base64` and no URL."""

        def body(fake: FakeDoubao) -> Any:
            image = fake.image_bytes(name) if name and name in fake.files else None
            if image is None:
                image = fake.image_bytes(fake.new_image(name))
            b64 = base64.b64encode(image).decode()
            return _volcengine_body([], [b64], request_id or fake.next_request_id())

        return cls(body=body)

    @classmethod
    def documented_shape(
        cls,
        output: str | list[str] | None = None,
        *,
        status: str = "succeeded",
        error: Any = "",
        data_url: bool = False,
    ) -> FakeResponse:
        """The shape of 302.ai's docs. Without `output`: a fresh image's URL (or data URL)."""

        def body(fake: FakeDoubao) -> Any:
            out: Any = output
            if out is None:
                name = fake.new_image()
                out = fake.data_url(name) if data_url else fake.image_url(name)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return {
                "completed_at": now,
                "created_at": now,
                "error": error,
                "id": fake.next_request_id(),
                "model": "doubao-general-v2.1-l",
                "output": out,
                "started_at": now,
                "status": status,
            }

        return cls(body=body)

    @classmethod
    def no_image(cls) -> FakeResponse:
        """Code 10000 but no image at all."""
        return cls(body=lambda fake: _volcengine_body([], [], fake.next_request_id()))

    # --- errors ----------------------------------------------------------------------------------------
    @classmethod
    def business_error(cls, code: int, message: str | None = None, *, status: int = 200) -> FakeResponse:
        """A Volcengine business code (e.g. 50411 content check, 50429 QPS limit), by default with a neutral
        message that says nothing about content."""
        text = message if message is not None else BUSINESS_MESSAGES.get(code, "Error")
        return cls(
            status=status,
            body=lambda fake: {
                "code": code,
                "status": code,
                "message": text,
                "data": None,
                "request_id": fake.next_request_id(),
                "time_elapsed": "0.1s",
            },
        )

    @classmethod
    def gateway_error(
        cls, err_code: int, message: str | None = None, *, status: int = 400, message_cn: str | None = None
    ) -> FakeResponse:
        """A 302.ai gateway error `{"error": {"err_code", "message", "message_cn"}}`."""
        text = message if message is not None else _GATEWAY_MESSAGES.get(err_code, "Error")
        return cls(status=status, body=_gateway_body(err_code, text, message_cn))

    @classmethod
    def http_status(cls, status: int, retry_after: float | str | None = None, body: Any = None) -> FakeResponse:
        """A bare HTTP status (plain-text reason unless `body` is given), optionally with Retry-After."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if body is None:
            return cls(status=status, raw=f"HTTP {status}".encode(), content_type="text/plain", headers=headers)
        return cls(status=status, body=body, headers=headers)

    @classmethod
    def bad_body(
        cls,
        raw: bytes | str = b"<html>Bad Gateway</html>",
        *,
        content_type: str = "text/html",
        status: int = 200,
    ) -> FakeResponse:
        """A body that is not JSON (or empty, with `raw=b""`)."""
        return cls(status=status, raw=raw.encode() if isinstance(raw, str) else raw, content_type=content_type)

    @classmethod
    def delay(cls, seconds: float, then: FakeResponse | None = None) -> FakeResponse:
        """Answer `then` (default: a fresh success) after `seconds`."""
        return replace(then or cls.success_urls(), wait=seconds)

    @classmethod
    def hang(cls) -> FakeResponse:
        """Never answer (until the client gives up or the fake closes): for timeout tests."""
        return cls(never_answer=True)


Scripted = FakeResponse | Callable[[Any], "FakeResponse | Awaitable[FakeResponse]"]


def _volcengine_body(urls: list[str], b64: list[str], request_id: str) -> dict[str, Any]:
    return {
        "code": 10000,
        "status": 10000,
        "message": "Success",
        "data": {
            "image_urls": urls,
            "binary_data_base64": b64,
            "algorithm_base_resp": {"status_code": 0, "status_message": "Success"},
            "llm_result": "",
            "pe_result": "",
            "predict_tags_result": "",
            "rephraser_result": "",
            "request_id": request_id,
        },
        "request_id": request_id,
        "time_elapsed": "10.8s",
    }


def _gateway_body(err_code: int, message: str, message_cn: str | None = None) -> dict[str, Any]:
    return {"error": {"err_code": err_code, "message": message, "message_cn": message_cn or message}}


def _check_number(payload: Mapping[str, Any], name: str, kind: str, low: float, high: float) -> str | None:
    if name not in payload:
        return None
    value = payload[name]
    ok_type = isinstance(value, int) if kind == "int" else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        return f"{name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
    if not low <= value <= high:
        return f"{name} must be in [{low:g}, {high:g}], got {value!r}"
    return None


def validate_payload(path: str, payload: Any) -> str | None:
    """Why the real API would refuse this body, or None. Unknown fields are allowed, as upstream does."""
    if not isinstance(payload, dict):
        return "body must be a JSON object"
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if path == CHARACTER_PATH:
        urls = payload.get("image_urls")
        if isinstance(urls, str):  # the docs type it "string" though the example sends a list
            urls = [urls]
        if not isinstance(urls, list) or not urls:
            return "image_urls is required"
        if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            return "image_urls must be http(s) URLs"
    ranges = {**_COMMON_RANGES, **(_CHARACTER_RANGES if path == CHARACTER_PATH else {})}
    for name, (kind, low, high) in ranges.items():
        if problem := _check_number(payload, name, kind, low, high):
            return problem
    for name in _BOOLEANS:
        if name in payload and not isinstance(payload[name], bool):
            return f"{name} must be a boolean"
    if path == DRAW_PATH:
        for name, allowed in _ENUMS.items():
            if name in payload and payload[name] not in allowed:
                return f"{name} must be one of {sorted(allowed)}"
    logo = payload.get("logo_info")
    if logo is not None and not isinstance(logo, dict):
        return "logo_info must be an object"
    return None


class FakeDoubao:
    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self.other_keys: set[str] = set()  # also accepted: e.g. one key per bot process, to tell their calls apart
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.rejections: list[str] = []
        self.downloads: list[str] = []  # file names fetched, in order
        self.files: dict[str, ServedFile] = {}
        self.default_response: Scripted | None = None
        self.latency: float | Callable[[Any], float] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Scripted] = deque()
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.add_image("default", make_png("default"))

    # --- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(DRAW_PATH, self._handle_api)
        app.router.add_post(CHARACTER_PATH, self._handle_api)
        app.router.add_get("/files/{filename}", self._handle_file)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDoubao:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- scripting -------------------------------------------------------------------------------------
    def queue(self, *responses: Scripted) -> None:
        """Answer the next valid API requests with these, in order; a callable gets the request JSON."""
        self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """Queued answers not used yet."""
        return len(self._queue)

    def reset_stats(self) -> None:
        self.requests.clear()
        self.rejections.clear()
        self.downloads.clear()
        self.max_in_flight = self.in_flight

    # --- images ----------------------------------------------------------------------------------------
    def add_image(self, name: str, data: bytes, *, content_type: str | None = "image/png") -> str:
        """Serve `data` under `name`; returns its URL (valid once started)."""
        return self.serve_file(name, data, content_type=content_type)

    def serve_file(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str | None = "image/png",
        chunked: bool = False,
        status: int = 200,
        drop_first: int = 0,
    ) -> str:
        """Serve anything under `name` (e.g. a huge body, text/html, octet-stream, chunked, a 404)."""
        self.files[name] = ServedFile(data, content_type, chunked=chunked, status=status, drop_first=drop_first)
        return self.image_url(name)

    def new_image(self, name: str | None = None, size: tuple[int, int] = (64, 64)) -> str:
        """Make and serve a fresh PNG; returns its name."""
        self._counter += 1
        name = name or f"gen-{self._counter}"
        self.add_image(name, make_png(f"{name}-{self._counter}", size))
        return name

    def ensure_image(self, name: str) -> str:
        """The URL of `name`, making a PNG for it first if nothing is served under that name."""
        if name not in self.files:
            self.add_image(name, make_png(name))
        return self.image_url(name)

    def image_url(self, name: str, *, query: str | None = None) -> str:
        served = self.files.get(name)
        ext = _EXTENSIONS.get(served.content_type or "", ".bin") if served else ".png"
        url = f"{self.base_url}/files/{name}{ext}"
        return f"{url}?{query}" if query else url

    def image_bytes(self, name: str = "default") -> bytes:
        return self.files[name].data

    def data_url(self, name: str = "default") -> str:
        served = self.files[name]
        return f"data:{served.content_type or 'image/png'};base64,{base64.b64encode(served.data).decode()}"

    @property
    def served_images(self) -> list[str]:
        """Names of the images generated for answers, oldest first."""
        return [n for n in self.files if n.startswith("gen-")]

    def next_request_id(self) -> str:
        self._counter += 1
        return f"req-{self._counter:06d}"

    # --- handlers --------------------------------------------------------------------------------------
    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        arrived = time.monotonic()
        latency = self.latency(payload) if callable(self.latency) else self.latency
        self.requests.append(
            RecordedRequest(request.method, request.path, payload, dict(request.headers), arrived, latency)
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.headers.get("Authorization") not in {
                f"Bearer {key}" for key in {self.api_key, *self.other_keys}
            }:
                self.rejections.append("bad Authorization header")
                return web.json_response(_gateway_body(-10001, "Invalid or missing API key"), status=401)
            if problem := validate_payload(request.path, payload):
                self.rejections.append(problem)
                return web.json_response(_gateway_body(INVALID_PARAMS_ERR_CODE, problem), status=400)
            answer = await self._answer(await self._next_response(payload))
            if latency is not None:  # the answer is ready: send it exactly `latency` after the request came
                await asyncio.sleep(max(0.0, arrived + latency - time.monotonic()))
            return answer
        finally:
            self.in_flight -= 1

    async def _next_response(self, payload: Any) -> FakeResponse:
        scripted = self._queue.popleft() if self._queue else self.default_response
        if scripted is None:
            return FakeResponse.success_urls()
        if isinstance(scripted, FakeResponse):
            return scripted
        result = scripted(payload)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _answer(self, response: FakeResponse) -> web.StreamResponse:
        if response.never_answer:
            await self._closing.wait()
            return web.Response(status=503, text="fake closing")
        if response.wait:
            await asyncio.sleep(response.wait)
        if response.raw is not None:
            return web.Response(
                status=response.status,
                body=response.raw,
                headers=dict(response.headers),
                content_type=response.content_type,
            )
        body = response.body(self) if callable(response.body) else response.body
        return web.Response(
            status=response.status,
            text=json.dumps(body, ensure_ascii=False),
            headers=dict(response.headers),
            content_type=response.content_type,
        )

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["filename"].rsplit(".", 1)[0]
        served = self.files.get(name)
        self.downloads.append(name)
        if served is None:
            return web.Response(status=404, text="not found")
        if served.drop_first > 0:
            self.files[name] = replace(served, drop_first=served.drop_first - 1)
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing left to answer on
        headers = {} if served.content_type is None else {"Content-Type": served.content_type}
        if not served.chunked:
            return web.Response(status=served.status, body=served.data, headers=headers)
        stream = web.StreamResponse(status=served.status, headers=headers)
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        for start in range(0, len(served.data), 64 * 1024):
            await stream.write(served.data[start : start + 64 * 1024])
        await stream.write_eof()
        return stream
