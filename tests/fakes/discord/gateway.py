"""The fake gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatch.

Frames are sent as JSON text (discord.py asks for ``compress=zlib-stream`` but only inflates binary frames).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, RESUME, REQUEST_GUILD_MEMBERS = 0, 1, 2, 3, 6, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11

ReadyEvents = Callable[["GatewaySession"], list[tuple[str, dict[str, Any]]]]
MembersChunk = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(eq=False)
class GatewaySession:
    """One IDENTIFYed session; keeps its dispatches so a RESUME can replay what was missed."""

    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=5000))


class Gateway:
    """Serves ``/gateway``; one bot session at a time (a new IDENTIFY replaces the previous session)."""

    def __init__(
        self,
        *,
        token: str,
        heartbeat_interval: float,
        ready_events: ReadyEvents,
        members_chunk: MembersChunk,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._token = token
        self._heartbeat_ms = max(1, int(heartbeat_interval * 1000))
        self._ready_events = ready_events
        self._members_chunk = members_chunk
        self._on_change = on_change
        self._lock = asyncio.Lock()
        self._connections: set[web.WebSocketResponse] = set()
        self._current: web.WebSocketResponse | None = None
        self.session: GatewaySession | None = None
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.received: list[dict[str, Any]] = []

    @property
    def connected(self) -> bool:
        return self._current is not None and not self._current.closed

    @property
    def intents(self) -> int:
        return 0 if self.session is None else self.session.intents

    # -- server side ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._connections.add(ws)
        log.debug("gateway: connection opened (%s)", request.query_string)
        try:
            await self._send(ws, {"op": HELLO, "d": {"heartbeat_interval": self._heartbeat_ms}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_payload(ws, json.loads(msg.data))
                elif msg.type is WSMsgType.ERROR:
                    log.debug("gateway: connection error %s", ws.exception())
        finally:
            self._connections.discard(ws)
            if self._current is ws:
                self._current = None
            log.debug("gateway: connection closed (code %s)", ws.close_code)
        return ws

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with self._lock:
            await self._send_raw(ws, json.dumps(payload))

    @staticmethod
    async def _send_raw(ws: web.WebSocketResponse, frame: str) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _on_payload(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        redacted = dict(payload)
        if isinstance(data, dict) and "token" in data:
            redacted["d"] = {**data, "token": "<redacted>"}
        if op != HEARTBEAT:
            self.received.append(redacted)
        if op == HEARTBEAT:
            self.heartbeat_count += 1
            await self._send(ws, {"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(ws, data)
        elif op == RESUME:
            await self._resume(ws, data)
        elif op == REQUEST_GUILD_MEMBERS:
            chunk = self._members_chunk(data)
            if chunk is not None:
                await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)
        elif op != PRESENCE_UPDATE:
            log.debug("gateway: ignoring op %s", op)

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != self._token:
            log.warning("gateway: IDENTIFY with a wrong token")
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        self.session = GatewaySession(
            session_id=uuid.uuid4().hex, intents=int(data.get("intents", 0)), shard=data.get("shard")
        )
        self.ready.clear()
        self._current = ws
        for event, event_data in self._ready_events(self.session):
            await self.dispatch(event, event_data)
        self.ready.set()
        self._on_change()
        log.debug("gateway: session %s ready", self.session.session_id)

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session = self.session
        seq = data.get("seq") or 0
        can_resume = (
            session is not None
            and data.get("token") == self._token
            and data.get("session_id") == session.session_id
            and (not session.history or session.history[0][0] <= seq + 1)
        )
        if not can_resume or session is None:
            log.debug("gateway: RESUME refused, asking for a new IDENTIFY")
            await self._send(ws, {"op": INVALID_SESSION, "d": False})
            return
        async with self._lock:
            missed = [frame for s, frame in session.history if s > seq]
            for frame in missed:
                await self._send_raw(ws, frame)
            self._current = ws
        self.resume_count += 1
        log.debug("gateway: session resumed, replayed %d event(s)", len(missed))
        await self.dispatch("RESUMED", {})
        self.resumed.set()
        self._on_change()

    # -- test side ------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH; while the bot is disconnected it is kept for the RESUME to replay."""
        session = self.session
        if session is None:
            raise AssertionError(f"cannot dispatch {event}: no bot has IDENTIFYed on the fake gateway")
        async with self._lock:
            session.seq += 1
            frame = json.dumps({"op": DISPATCH, "t": event, "s": session.seq, "d": data})
            session.history.append((session.seq, frame))
            if self._current is not None:
                await self._send_raw(self._current, frame)

    async def drop(self, code: int = 4000) -> None:
        """Close the bot's websocket the way a network blip would; the client should RESUME."""
        ws, self._current = self._current, None
        self.resumed.clear()
        if ws is not None:
            log.debug("gateway: dropping the connection with code %s", code)
            await ws.close(code=code, message=b"dropped by the test")

    async def close(self) -> None:
        self._current = None
        for ws in list(self._connections):
            await ws.close(code=1001, message=b"fake Discord shutting down")
