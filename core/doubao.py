"""Client for 302.ai's Doubao drawing endpoints.

302.ai documents one response shape but really answers with the upstream Volcengine body; it also has its
own gateway errors. `parse_response` understands all of them and turns every failure into one of the typed
errors below, so callers only ever deal with `GeneratedImage` or a `DoubaoError`.

Error mapping (see also `_BUSINESS_CODES`):

| what came back                                            | error                           | retried |
|-----------------------------------------------------------|---------------------------------|---------|
| Volcengine code 50411/50412/50413/50511/50512             | ContentRejected                 | no      |
| 302 error or failed output whose message is about content | ContentRejected                 | no      |
| HTTP 429, Volcengine code 50429/50430                     | RateLimited                     | yes     |
| HTTP 5xx, code 50500/50501, 302 err_code -1024            | ServiceUnavailable              | yes     |
| connection error                                          | ServiceUnavailable              | yes     |
| no answer within the per-attempt timeout                  | TimedOut (a ServiceUnavailable) | yes     |
| 302 err_code -10001..-10018, HTTP 401/403 without details | AccountError                    | no      |
| any other code, other 4xx, 2xx without an image, not JSON | BadResponse                     | no      |

Unknown Volcengine codes are *not* retried: a call takes 10-30 s and may be billed, and nothing says that
an undocumented failure is transient.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import aiohttp

from core.metrics import Metrics

log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 200
_SUCCESS_CODES = frozenset({0, 10000})
_ACCOUNT_ERR_CODES = range(-10018, -10000)  # -10018 .. -10001
_UPSTREAM_TIMEOUT_ERR_CODE = -1024
_FAILED_STATUSES = frozenset({"failed", "failure", "error", "canceled", "cancelled", "rejected"})
_CONTENT_WORDS = re.compile(
    r"sensitive|moderat|risk not pass|inappropriate|nsfw|porn|"
    r"content[\s_-]*(?:polic|check|filter|review|safety|securit|violat|audit|risk|moderat|reject|block)|"
    r"敏感|违规|违禁|审核|涉黄|涉政",
    re.IGNORECASE,
)


class Endpoint(StrEnum):
    DRAW = "/doubao/drawing"
    CHARACTER = "/doubao/drawing/character"


@dataclass(frozen=True)
class GeneratedImage:
    url: str | None
    """Where to download the image; None when the body carried it as base64."""
    data: bytes | None = field(repr=False)
    """The decoded image, when the body carried base64."""
    request_id: str | None


class DoubaoError(Exception):
    """Base of all client errors. `str()` is short and safe to log or show: never the key or the payload."""

    kind: ClassVar[str] = "error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def _redact(self, secret: str) -> None:
        if secret and secret in self.message:
            self.message = self.message.replace(secret, "***")
            self.args = (self.message,)


class ContentRejected(DoubaoError):
    """The prompt or the result failed the content check: tell the user, never retry."""

    kind = "content_rejected"


class RateLimited(DoubaoError):
    kind = "rate_limited"
    default_retryable = True


class ServiceUnavailable(DoubaoError):
    kind = "service_unavailable"
    default_retryable = True


class TimedOut(ServiceUnavailable):
    """No answer in time: told apart from other outages in the logs and the metrics."""

    kind = "timeout"


class AccountError(DoubaoError):
    """Missing/invalid key, no balance or quota reached: the admin has to act, retrying cannot help."""

    kind = "account_error"


class BadResponse(DoubaoError):
    kind = "bad_response"


_BUSINESS_CODES: dict[int, type[DoubaoError]] = {
    50411: ContentRejected,  # input image failed the check
    50412: ContentRejected,  # input text failed the check
    50413: ContentRejected,  # input text contains sensitive words / copyright
    50511: ContentRejected,  # output image failed the check
    50512: ContentRejected,  # output text failed the check
    50429: RateLimited,  # QPS limit
    50430: RateLimited,  # concurrency limit
    50500: ServiceUnavailable,  # internal error
    50501: ServiceUnavailable,  # internal RPC error
}


def _clip(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _is_content_message(*texts: Any) -> bool:
    return any(isinstance(t, str) and _CONTENT_WORDS.search(t) for t in texts)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _gateway_error(error: Mapping[str, Any]) -> DoubaoError:
    """Map a 302 gateway error `{"err_code": ..., "message": ..., "message_cn": ...}`."""
    code = _as_int(error.get("err_code", error.get("code")))
    upstream = error.get("message") or error.get("message_cn") or error.get("msg") or ""
    text = _clip(f"302.ai error {code}: {upstream}" if code is not None else f"302.ai error: {upstream}")
    if code is not None and code in _ACCOUNT_ERR_CODES:
        return AccountError(text, code=code)
    if code == _UPSTREAM_TIMEOUT_ERR_CODE:
        return ServiceUnavailable(text, code=code)
    if _is_content_message(error.get("message"), error.get("message_cn"), error.get("msg")):
        return ContentRejected(text, code=code)
    return BadResponse(text, code=code)


def _business_error(code: int | None, message: Any) -> DoubaoError:
    """Map a Volcengine business code other than success."""
    text = _clip(f"Doubao code {code}: {message or ''}")
    cls = _BUSINESS_CODES.get(code) if code is not None else None
    if cls is not None:
        return cls(text, code=code)
    if _is_content_message(message):
        return ContentRejected(text, code=code)
    return BadResponse(text, code=code)


def _decode_base64(value: str) -> bytes:
    """Decode raw base64 or a `data:image/...;base64,` URL."""
    if value.startswith("data:"):
        header, sep, value = value.partition(",")
        if not sep or ";base64" not in header:
            raise BadResponse("image data URL is not base64")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadResponse("image data is not valid base64") from None
    if not data:
        raise BadResponse("image data is empty")
    return data


def _image_from_value(value: str, request_id: str | None) -> GeneratedImage:
    value = value.strip()
    if value.startswith(("http://", "https://")):
        return GeneratedImage(url=value, data=None, request_id=request_id)
    return GeneratedImage(url=None, data=_decode_base64(value), request_id=request_id)


def _first_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list):
        return next((v for v in value if isinstance(v, str) and v.strip()), None)
    return None


def _parse_volcengine(body: Mapping[str, Any]) -> GeneratedImage:
    code = _as_int(body.get("code"))
    request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    if "code" in body and body["code"] is not None and code not in _SUCCESS_CODES:
        raise _business_error(code, body.get("message"))
    data = body.get("data")
    if isinstance(data, Mapping):
        url = _first_str(data.get("image_urls"))
        if url is not None:
            return _image_from_value(url, request_id)
        b64 = _first_str(data.get("binary_data_base64"))
        if b64 is not None:
            return GeneratedImage(url=None, data=_decode_base64(b64), request_id=request_id)
        algo = data.get("algorithm_base_resp")
        if isinstance(algo, Mapping) and algo.get("status_code") not in (None, 0):
            raise _business_error(_as_int(algo.get("status_code")), algo.get("status_message"))
    raise BadResponse(_clip(f"Doubao code {code}: no image in the response ({body.get('message') or ''})"))


def _parse_documented(body: Mapping[str, Any]) -> GeneratedImage:
    request_id = body.get("id") if isinstance(body.get("id"), str) and body.get("id") else None
    status = str(body.get("status") or "").strip().lower()
    error = body.get("error")
    if isinstance(error, Mapping):
        error = error.get("message") or error.get("message_cn") or json.dumps(error)[:_MESSAGE_LIMIT]
    if error or status in _FAILED_STATUSES:
        text = _clip(f"generation {status or 'failed'}: {error or ''}")
        raise (ContentRejected if _is_content_message(error) else BadResponse)(text)
    value = _first_str(body.get("output"))
    if value is None:
        raise BadResponse(_clip(f"no image in the response (status {status or 'empty'})"))
    return _image_from_value(value, request_id)


def parse_response(body: Any) -> GeneratedImage:
    """Turn a 2xx body of any known shape into a `GeneratedImage`, or raise the matching `DoubaoError`."""
    if isinstance(body, str | bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            raise BadResponse("response is not JSON") from None
    if not isinstance(body, Mapping):
        raise BadResponse(f"unexpected response type {type(body).__name__}")
    if isinstance(body.get("error"), Mapping) and "output" not in body:
        raise _gateway_error(body["error"])
    if "code" in body or isinstance(body.get("data"), Mapping):
        return _parse_volcengine(body)
    if "output" in body or "status" in body or isinstance(body.get("error"), str):
        return _parse_documented(body)
    raise BadResponse("response has no known shape")


def _error_in_body(body: Any) -> DoubaoError | None:
    """The error a non-2xx body describes, or None when it is not one of the known shapes."""
    if not isinstance(body, Mapping):
        return None
    if not (isinstance(body.get("error"), Mapping | str) or "code" in body or "status" in body):
        return None
    try:
        parse_response(body)
    except DoubaoError as exc:
        return exc
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return None if math.isnan(seconds) else max(0.0, seconds)


def error_for_http(status: int, body: Any, retry_after: float | None = None) -> DoubaoError:
    """The typed error for a non-2xx answer: a specific code in the body wins over the HTTP status."""
    found = _error_in_body(body)
    code = found.code if found is not None else None
    detail = f": {found.message}" if found is not None else ""
    err: DoubaoError
    if found is not None and not isinstance(found, BadResponse):
        err = found
    elif status == 429:
        err = RateLimited(_clip(f"HTTP 429 Too Many Requests{detail}"), code=code)
    elif status >= 500:
        err = ServiceUnavailable(_clip(f"HTTP {status}{detail}"), code=code)
    elif found is not None:
        err = found
    elif status in (401, 403):
        err = AccountError(f"HTTP {status}: the API key was refused")
    else:
        err = BadResponse(f"HTTP {status}")
    err.http_status = status
    if err.retryable:
        err.retry_after = retry_after
    return err


class DoubaoClient:
    """Calls one Doubao endpoint, retrying rate limits and transient failures with backoff."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = "https://api.302.ai",
        timeout: float = 120.0,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._metrics = metrics or Metrics()

    def __repr__(self) -> str:
        return f"DoubaoClient(base_url={self._base_url!r})"

    async def generate(self, endpoint: Endpoint, payload: Mapping[str, Any]) -> GeneratedImage:
        """POST `payload` to `endpoint` and return the one image it produced."""
        endpoint = Endpoint(endpoint)
        for attempt in range(1, self._max_attempts + 1):
            try:
                with self._metrics.api_call(endpoint.name.lower()):
                    return await self._attempt(endpoint, payload)
            except DoubaoError as exc:
                exc._redact(self._api_key)
                if not exc.retryable or attempt >= self._max_attempts:
                    self._log_failure(endpoint, exc, attempt)
                    raise
                delay = self._backoff_delay(attempt, exc.retry_after)
                log.warning(
                    "Doubao %s attempt %d/%d failed (%s: %s); retrying in %.2fs",
                    endpoint.value,
                    attempt,
                    self._max_attempts,
                    exc.kind,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, endpoint: Endpoint, payload: Mapping[str, Any]) -> GeneratedImage:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        started = time.monotonic()
        try:
            async with self._session.post(
                self._base_url + endpoint.value, json=dict(payload), headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            log.debug("Doubao %s timed out after %.2fs", endpoint.value, time.monotonic() - started)
            raise TimedOut(f"no answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientError as exc:
            log.debug("Doubao %s connection error after %.2fs: %r", endpoint.value, time.monotonic() - started, exc)
            raise ServiceUnavailable(f"connection error ({type(exc).__name__})") from None
        log.debug("Doubao %s -> HTTP %d in %.2fs", endpoint.value, status, time.monotonic() - started)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
            if 200 <= status < 300:
                raise BadResponse(f"HTTP {status}: response is not JSON", http_status=status) from None
        if 200 <= status < 300:
            try:
                return parse_response(body)
            except DoubaoError as exc:
                exc.http_status = status
                if exc.retryable:
                    exc.retry_after = retry_after
                raise
        raise error_for_http(status, body, retry_after)

    def _backoff_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a Retry-After asks for at least that long. Both capped."""
        exp = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
        delay = exp / 2 + random.uniform(0, exp / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self._backoff_max)

    def _log_failure(self, endpoint: Endpoint, exc: DoubaoError, attempt: int) -> None:
        if isinstance(exc, AccountError):
            log.error(
                "Doubao %s: 302.ai refused the account (%s). Check the API key and the balance.",
                endpoint.value,
                exc,
            )
        elif isinstance(exc, ContentRejected):
            log.info("Doubao %s: content rejected (%s)", endpoint.value, exc)
        else:
            log.warning("Doubao %s failed after %d attempt(s): %s: %s", endpoint.value, attempt, exc.kind, exc)
