"""Lets the event loop breathe between gateway events.

discord.py reads the gateway in a loop of `await ws.poll_event()`, and an await on a frame that is already
buffered returns without giving the loop a turn. In a burst (or after any pause) every buffered event is then
parsed in one go: hundreds of INTERACTION_CREATEs, during which no acknowledgement, heartbeat or timer can run.
One turn of the loop after each event keeps that to one event at a time.
"""

from __future__ import annotations

import asyncio
import functools

from discord.gateway import DiscordWebSocket

_original_poll_event = DiscordWebSocket.poll_event


@functools.wraps(_original_poll_event)
async def _poll_event_then_yield(self: DiscordWebSocket) -> None:
    await _original_poll_event(self)
    await asyncio.sleep(0)


def yield_between_gateway_events() -> None:
    """Installs the turn after each event, for every gateway connection (idempotent)."""
    DiscordWebSocket.poll_event = _poll_event_then_yield
