"""HTTP plumbing of the fake REST API: routing, auth, recording, 429s, upload limits, body validation.

Every request under ``/api/v10`` goes through ``RestApi.handle``:

1. parse the body (JSON, or multipart with ``payload_json`` and ``files[n]``) and record the request;
2. unknown route -> violation + 404; missing ``Authorization: Bot <token>`` (where needed) -> 401;
3. a pending ``rate_limit_next`` rule -> 429 with Discord's headers and body;
4. files over the upload limit -> 413 (code 40005);
5. body not valid for the OpenAPI operation -> violation + 400 (code 50035);
6. the route handler, which answers or raises ``DiscordError``;
7. a pending ``hold_next`` rule keeps the answer back (what the handler made is already in the world) until the
   test releases it, as a slow network would.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from .models import RequestRecord, UploadedFile, Violation
from .openapi import OpenApiSpec, RouteMatcher, split_path

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"


class DiscordError(Exception):
    """An error answer in Discord's shape; ``violation`` (a kind, e.g. "form") marks a bot bug."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        violation: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.violation = violation

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid_form(problems: list[str], kind: str = "form") -> DiscordError:
    """400 Invalid Form Body (code 50035) listing ``problems``; recorded as a violation of ``kind``."""
    errors = {"_errors": [{"code": "INVALID_FORM_BODY", "message": p} for p in problems]}
    return DiscordError(400, 50035, "Invalid Form Body", errors=errors, violation=kind)


@dataclass
class Reply:
    """A successful answer: JSON ``body``, or no content when ``body`` is None."""

    body: Any = None
    status: int = 200


@dataclass
class Incoming:
    """A parsed request as route handlers see it."""

    method: str
    template: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    record: RequestRecord


Handler = Callable[[Incoming], Awaitable[Reply]]
RoutePattern = str | Callable[[RequestRecord], bool]


def route_matches(pattern: RoutePattern, record: RequestRecord) -> bool:
    if callable(pattern):
        return bool(pattern(record))
    method, _, path = pattern.partition(" ")
    if not path:
        method, path = "", pattern
    if method and method.upper() != record.method:
        return False
    if record.route is not None and _shape(path) == _shape(record.route):
        return True
    return fnmatch.fnmatchcase(record.path, path)


@dataclass
class RateLimitRule:
    pattern: RoutePattern
    retry_after: float
    global_: bool
    times: int

    def matches(self, record: RequestRecord) -> bool:
        return route_matches(self.pattern, record)


@dataclass
class HeldAnswer:
    """The answer to the next matching request, kept back until `release()`."""

    pattern: RoutePattern
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # set once the request was handled
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


def _shape(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py only decodes JSON when Content-Type is exactly "application/json" (no charset).
    all_headers = {hdrs.CONTENT_TYPE: "application/json", **(headers or {})}
    return web.Response(body=json.dumps(body).encode(), status=status, headers=all_headers)


@dataclass
class _Route:
    handler: Handler
    auth: bool


@dataclass
class RestApi:
    """Routes requests to handlers; owns the request log, violations and rate-limit rules."""

    spec: OpenApiSpec | None
    token: str
    upload_limit: Callable[[RequestRecord], int]
    requests: list[RequestRecord]
    violations: list[Violation]
    clock: Callable[[], float]
    on_request: Callable[[RequestRecord, dict[str, str]], None] = lambda _record, _params: None
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    _matcher: RouteMatcher = field(default_factory=RouteMatcher)
    _rate_limits: list[RateLimitRule] = field(default_factory=list)
    _holds: list[HeldAnswer] = field(default_factory=list)

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        self._routes[(method, template)] = _Route(handler, auth)
        self._matcher.add(template)

    def rate_limit_next(self, pattern: RoutePattern, retry_after: float, global_: bool, times: int) -> None:
        self._rate_limits.append(RateLimitRule(pattern, retry_after, global_, times))

    def hold_next(self, pattern: RoutePattern) -> HeldAnswer:
        held = HeldAnswer(pattern)
        self._holds.append(held)
        return held

    def release_all(self) -> None:
        for held in self._holds:
            held.release()

    def violation(self, kind: str, record: RequestRecord, message: str) -> None:
        found = Violation(kind, record.method, record.path, record.route, message, record.json)
        log.warning("fake Discord: violation %s", found)
        self.violations.append(found)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path[len(API_PREFIX) :] or "/"
        segments = split_path(path)
        method = request.method
        found = self._matcher.match(segments)
        route = None if found is None else self._routes.get((method, found[0]))
        template = found[0] if route is not None and found is not None else None
        if template is None and self.spec is not None:
            template = self.spec.match(method, segments)
        try:
            json_body, files, raw = await _read_body(request)
        except ValueError as exc:
            json_body, files, raw = None, [], f"<unreadable body: {exc}>"
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RequestRecord(
            method, path, template, dict(request.query), headers, json_body, files, raw, self.clock()
        )
        self.requests.append(record)
        params = found[1] if found else {}
        response = await self._answer(request, record, route, params, raw)
        log.debug("fake Discord: %s %s -> %s", method, path, record.status)
        held = next((h for h in self._holds if not h.reached.is_set() and route_matches(h.pattern, record)), None)
        if held is not None:
            held.reached.set()
            await held.released.wait()
        self.on_request(record, params)
        return response

    async def _answer(
        self,
        request: web.Request,
        record: RequestRecord,
        route: _Route | None,
        params: dict[str, str],
        raw: str,
    ) -> web.Response:
        if route is None:
            self.violation("unknown_route", record, "the fake does not implement this route (or Discord has none)")
            return self._finish(record, DiscordError(404, 0, "404: Not Found").body(), 404)
        if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._finish(record, {"message": "401: Unauthorized", "code": 0}, 401)
        rule = next((r for r in self._rate_limits if r.matches(record)), None)
        if rule is not None:
            rule.times -= 1
            if rule.times <= 0:
                self._rate_limits.remove(rule)
            return self._rate_limited(record, rule)
        try:
            if raw.startswith("<unreadable body"):
                raise DiscordError(400, 50109, "The request body contains invalid JSON.", violation="form")
            self._check_upload_size(record)
            if record.json is not None and self.spec is not None and record.route is not None:
                problems = self.spec.validate(record.method, record.route, record.json)
                if problems:
                    raise invalid_form(problems, kind="schema")
            assert record.route is not None
            incoming = Incoming(record.method, record.route, params, record.query, record.json, record.files, record)
            reply = await route.handler(incoming)
        except DiscordError as exc:
            if exc.violation:
                self.violation(exc.violation, record, "; ".join(_messages(exc)))
            return self._finish(record, exc.body(), exc.status)
        if reply.body is None:
            record.status = reply.status if reply.status != 200 else 204
            return web.Response(status=record.status, headers=self._ratelimit_headers(record))
        return self._finish(record, reply.body, reply.status)

    def _check_upload_size(self, record: RequestRecord) -> None:
        limit = self.upload_limit(record)
        sizes = [len(f.data) for f in record.files]
        if sizes and (max(sizes) > limit or sum(sizes) > limit):
            raise DiscordError(413, 40005, "Request entity too large")

    def _finish(self, record: RequestRecord, body: Any, status: int) -> web.Response:
        record.status, record.response = status, body
        return json_response(body, status, self._ratelimit_headers(record))

    def _ratelimit_headers(self, record: RequestRecord, *, remaining: int = 49, reset_after: float = 0.0) -> dict:
        bucket = hashlib.sha1(f"{record.method} {record.route}".encode()).hexdigest()[:16]
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def _rate_limited(self, record: RequestRecord, rule: RateLimitRule) -> web.Response:
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.global_,
        }
        headers = self._ratelimit_headers(record, remaining=0, reset_after=rule.retry_after)
        headers.update(
            {
                "Retry-After": str(max(1, math.ceil(rule.retry_after))),
                "X-RateLimit-Scope": "global" if rule.global_ else "user",
                "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
            }
        )
        if rule.global_:
            headers["X-RateLimit-Global"] = "true"
            body["code"] = 0
        record.status, record.response = 429, body
        return json_response(body, 429, headers)


def _messages(exc: DiscordError) -> list[str]:
    if exc.errors and "_errors" in exc.errors:
        return [e["message"] for e in exc.errors["_errors"]]
    return [exc.message]


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile], str]:
    """(JSON body or payload_json, uploaded files, the raw text sent)."""
    if not request.body_exists:
        return None, [], ""
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[UploadedFile] = []
        texts: list[str] = []
        reader = await request.multipart()
        async for part in reader:
            data = await part.read(decode=False)  # type: ignore[union-attr]
            name = part.name or ""
            filename = getattr(part, "filename", None)
            if name == "payload_json":
                texts.append(data.decode())
                payload = json.loads(data)
            elif filename is not None or name.startswith("files["):
                content_type = part.headers.get(hdrs.CONTENT_TYPE)
                files.append(UploadedFile(name, filename or name, content_type, bytes(data)))
            else:
                texts.append(f"{name}={data.decode(errors='replace')}")
        return payload, files, "\n".join(texts)
    text = await request.text()
    if not text:
        return None, [], ""
    return json.loads(text), [], text
