"""The fake gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatch.

Several sessions at once, one per shard (IDENTIFY with ``shard: [id, count]``), as Discord serves a sharded bot:
each guild's events go to the session of shard ``(guild_id >> 22) % count``, events without a guild (DMs) to
shard 0's, and a session without ``shard`` gets everything. A new IDENTIFY for the same shard replaces that
shard's session.

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
INVALID_SHARD = 4010

ReadyEvents = Callable[["GatewaySession"], list[tuple[str, dict[str, Any]]]]
MembersChunk = Callable[[dict[str, Any]], dict[str, Any] | None]
ShardKey = tuple[int, int] | None  # (shard id, shard count); None for an unsharded session

_GUILD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})  # the guild's id is "id"


def shard_for(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's formula)."""
    return (guild_id >> 22) % shard_count


def event_guild_id(event: str, data: dict[str, Any]) -> int | None:
    """The guild an event belongs to, or None (a DM, or not about a guild)."""
    value = data.get("id") if event in _GUILD_EVENTS else data.get("guild_id")
    return None if value is None else int(value)


@dataclass(eq=False)
class GatewaySession:
    """One IDENTIFYed session; keeps its dispatches so a RESUME can replay what was missed."""

    session_id: str
    intents: int
    shard: list[int] | None
    number: int = 0  # this session came from the number-th IDENTIFY on the gateway
    seq: int = 0
    ready: bool = False  # READY and its GUILD_CREATEs have been sent
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=5000))
    ws: web.WebSocketResponse | None = field(default=None, repr=False)

    @property
    def key(self) -> ShardKey:
        return None if self.shard is None else (self.shard[0], self.shard[1])

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def receives(self, guild_id: int | None) -> bool:
        """Whether events of ``guild_id`` (None: no guild, e.g. a DM) come to this session."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_for(guild_id, count))

    def dispatched(self) -> list[tuple[str, dict[str, Any]]]:
        """(event name, data) of every dispatch this session was sent (or kept for a RESUME), oldest first."""
        frames = (json.loads(frame) for _, frame in self.history)
        return [(frame["t"], frame["d"]) for frame in frames]


class Gateway:
    """Serves ``/gateway``; one session per shard (a new IDENTIFY for a shard replaces its previous session)."""

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
        self.sessions: dict[ShardKey, GatewaySession] = {}
        self.ready = asyncio.Event()  # set when the latest IDENTIFY got its READY and GUILD_CREATEs
        self.resumed = asyncio.Event()
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.received: list[dict[str, Any]] = []

    @property
    def session(self) -> GatewaySession | None:
        """The session of the latest IDENTIFY."""
        return max(self.sessions.values(), key=lambda s: s.number, default=None)

    def shard_session(self, shard_id: int, shard_count: int) -> GatewaySession | None:
        return self.sessions.get((shard_id, shard_count))

    @property
    def connected(self) -> bool:
        return any(session.connected for session in self.sessions.values())

    @property
    def intents(self) -> int:
        """The intents any session asked for."""
        intents = 0
        for session in self.sessions.values():
            intents |= session.intents
        return intents

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
            for session in self.sessions.values():
                if session.ws is ws:
                    session.ws = None
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
            session = next((s for s in self.sessions.values() if s.ws is ws), None)
            if chunk is not None and session is not None:
                await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)
        elif op != PRESENCE_UPDATE:
            log.debug("gateway: ignoring op %s", op)

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != self._token:
            log.warning("gateway: IDENTIFY with a wrong token")
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            log.warning("gateway: IDENTIFY with an invalid shard %r", shard)
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return
        self.identify_count += 1
        session = GatewaySession(
            session_id=uuid.uuid4().hex,
            intents=int(data.get("intents", 0)),
            shard=None if shard is None else [int(shard[0]), int(shard[1])],
            number=self.identify_count,
            ws=ws,
        )
        self.sessions[session.key] = session
        self.ready.clear()
        for event, event_data in self._ready_events(session):
            await self._dispatch_to(session, event, event_data)
        session.ready = True
        if session is self.session:
            self.ready.set()
        self._on_change()
        log.debug("gateway: session %s (shard %s) ready", session.session_id, session.shard)

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session = next((s for s in self.sessions.values() if s.session_id == data.get("session_id")), None)
        seq = data.get("seq") or 0
        can_resume = (
            session is not None
            and data.get("token") == self._token
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
            session.ws = ws
        self.resume_count += 1
        log.debug("gateway: session resumed, replayed %d event(s)", len(missed))
        await self._dispatch_to(session, "RESUMED", {})
        self.resumed.set()
        self._on_change()

    # -- test side ------------------------------------------------------------------------------

    async def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        *,
        intent: int | None = None,
        required: bool = True,
    ) -> int:
        """Send a DISPATCH to the sessions that receive its guild's events (and asked for ``intent``); a session
        that is disconnected keeps it for its RESUME. Returns how many sessions it went to; with none, and
        ``required``, raises AssertionError."""
        guild_id = event_guild_id(event, data)
        targets = [
            session
            for session in self.sessions.values()
            if session.receives(guild_id) and (intent is None or session.intents & intent)
        ]
        if not targets and required:
            if not self.sessions:
                raise AssertionError(f"cannot dispatch {event}: no bot has IDENTIFYed on the fake gateway")
            shards = sorted(str(s.shard) for s in self.sessions.values())
            raise AssertionError(f"cannot dispatch {event} of guild {guild_id}: no session receives it ({shards})")
        for session in targets:
            await self._dispatch_to(session, event, data)
        return len(targets)

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        async with self._lock:
            session.seq += 1
            frame = json.dumps({"op": DISPATCH, "t": event, "s": session.seq, "d": data})
            session.history.append((session.seq, frame))
            if session.ws is not None:
                await self._send_raw(session.ws, frame)

    async def drop(self, code: int = 4000, *, shard_id: int | None = None) -> None:
        """Close the bot's websockets (or only shard ``shard_id``'s) the way a network blip would; the client
        should RESUME."""
        self.resumed.clear()
        for session in list(self.sessions.values()):
            if shard_id is not None and (session.shard is None or session.shard[0] != shard_id):
                continue
            ws, session.ws = session.ws, None
            if ws is not None:
                log.debug("gateway: dropping the connection of shard %s with code %s", session.shard, code)
                await ws.close(code=code, message=b"dropped by the test")

    async def close(self) -> None:
        for session in self.sessions.values():
            session.ws = None
        for ws in list(self._connections):
            await ws.close(code=1001, message=b"fake Discord shutting down")


def _valid_shard(shard: object) -> bool:
    if not isinstance(shard, list) or len(shard) != 2 or not all(type(n) is int for n in shard):
        return False
    shard_id, count = shard
    return count >= 1 and 0 <= shard_id < count
