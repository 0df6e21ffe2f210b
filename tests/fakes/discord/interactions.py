"""Interaction records (what the bot did with an interaction) and the payloads Discord sends for them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .models import FakeChannel, FakeMessage, FakeUser, RequestRecord
from .world import World

log = logging.getLogger(__name__)

APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT = 2, 3, 5
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL = 4, 5, 6, 7, 9

# Callback types Discord accepts per interaction type (6/7 on a modal submit only if it came from a message).
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE},
}
TYPE_NAMES = {
    APPLICATION_COMMAND: "APPLICATION_COMMAND",
    MESSAGE_COMPONENT: "MESSAGE_COMPONENT",
    MODAL_SUBMIT: "MODAL_SUBMIT",
}

T = TypeVar("T")


class Changes:
    """Lets coroutines wait for a condition on state that changes; no polling."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, check: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109 - timeout= is the test API
        """Return the first non-None result of ``check``; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout:.2f}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)


@dataclass(eq=False)
class InteractionRecord:
    """One interaction the fake dispatched, and everything the bot answered to it.

    ``created_at`` and the callback timestamps are ``loop.time()`` values (monotonic seconds).
    """

    id: int
    token: str
    type: int
    name: str
    user: FakeUser
    channel: FakeChannel
    payload: dict[str, Any]
    created_at: float
    source_message: FakeMessage | None = None
    callbacks: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    followups: list[FakeMessage] = field(default_factory=list)
    original: FakeMessage | None = None
    modal: dict[str, Any] | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    _messages: list[FakeMessage] = field(default_factory=list, repr=False)
    _events: list[FakeMessage] = field(default_factory=list, repr=False)
    _cursor: int = field(default=0, repr=False)
    _changes: Changes = field(default_factory=Changes, repr=False)

    def __repr__(self) -> str:
        kind = TYPE_NAMES.get(self.type, str(self.type))
        return f"<InteractionRecord {kind} {self.name!r} id={self.id} callbacks={len(self.callbacks)}>"

    @property
    def guild_id(self) -> int | None:
        return self.channel.guild_id

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response_type(self) -> int | None:
        """The type of the (first, only successful) callback."""
        return self.callbacks[0][1]["type"] if self.callbacks else None

    @property
    def ack_delay(self) -> float | None:
        """Seconds from dispatch to the accepted callback."""
        return self.callbacks[0][0] - self.created_at if self.callbacks else None

    @property
    def messages(self) -> list[FakeMessage]:
        """Messages this interaction created or changed (original, followups, updated message), in order."""
        return list(self._messages)

    @property
    def message(self) -> FakeMessage | None:
        """The newest message of this interaction."""
        return self._messages[-1] if self._messages else None

    def errors(self) -> list[RequestRecord]:
        """The bot's requests for this interaction that Discord refused."""
        return [r for r in self.requests if r.status is not None and r.status >= 400]

    # -- updates (called by the REST handlers) --------------------------------------------------

    def _note(self, message: FakeMessage | None = None) -> None:
        """``message`` was created or changed for this interaction (None: something else changed)."""
        if message is not None:
            if message not in self._messages:
                self._messages.append(message)
            self._events.append(message)
        self._changes.notify()

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[InteractionRecord], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - timeout= is the test API
        what: str = "a condition",
    ) -> InteractionRecord:
        """Wait until ``predicate(record)`` holds."""
        await self._changes.wait_until(lambda: True if predicate(self) else None, timeout, f"{what} on {self!r}")
        return self

    async def wait_for_ack(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109 - timeout= is the test API
        """Wait for the callback; returns its body."""
        await self._changes.wait_until(lambda: True if self.callbacks else None, timeout, f"the ack of {self!r}")
        return self.callbacks[0][1]

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> FakeMessage:
        """The next message created or edited for this interaction (each event is returned once).

        Events that do not satisfy ``predicate`` are skipped. Deferred "thinking" messages are skipped too.
        """

        def check() -> FakeMessage | None:
            while self._cursor < len(self._events):
                message = self._events[self._cursor]
                self._cursor += 1
                if not message.loading and (predicate is None or predicate(message)):
                    return message
            return None

        return await self._changes.wait_until(check, timeout, f"a message for {self!r}")

    async def wait_for_final(self, timeout: float = 5.0) -> FakeMessage:  # noqa: ASYNC109 - timeout= is the test API
        """Wait until the interaction has a message that is not "thinking..." any more; returns the newest."""
        return await self._changes.wait_until(
            lambda: self.message if self.message is not None and not self.message.loading else None,
            timeout,
            f"a final message for {self!r}",
        )


# -- payloads ------------------------------------------------------------------------------------


def interaction_payload(
    world: World,
    *,
    interaction_id: int,
    token: str,
    type: int,
    data: dict[str, Any],
    user: FakeUser,
    channel: FakeChannel,
    attachment_size_limit: int,
    message: FakeMessage | None = None,
) -> dict[str, Any]:
    """An INTERACTION_CREATE payload as Discord sends it to a guild-installed app."""
    guild = world.guild_of(channel)
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": type,
        "data": data,
        "token": token,
        "version": 1,
        "channel_id": str(channel.id),
        "channel": world.channel_payload_for(channel, user),
        "app_permissions": str(world.permissions_in(world.bot, channel)),
        "locale": user.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild.id) if guild is not None else "0"},
        "context": 0 if guild is not None else 1,
        "attachment_size_limit": attachment_size_limit,
    }
    if guild is not None:
        member = world.member(guild, user)
        payload.update(
            guild_id=str(guild.id),
            guild=guild.partial_payload(),
            guild_locale=guild.locale,
            member=member.payload(permissions=world.channel_permissions(member, channel)),
        )
    else:
        payload["user"] = user.payload()
    if message is not None:
        payload["message"] = message.payload(world.users)
    return payload


def component_data(message: FakeMessage, custom_id: str, values: list[str] | None) -> dict[str, Any]:
    """The ``data`` of a MESSAGE_COMPONENT interaction for the component ``custom_id`` on ``message``."""
    component = message.find_component(custom_id)
    if component is None:
        raise AssertionError(f"message {message.id} has no component {custom_id!r}; it has {message.custom_ids}")
    if component.get("disabled"):
        raise AssertionError(f"component {custom_id!r} on message {message.id} is disabled")
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
    if "id" in component:
        data["id"] = component["id"]
    if component["type"] != 2:
        if values is None:
            raise AssertionError(f"component {custom_id!r} is a select menu: pass values=[...]")
        data["values"] = list(values)
    return data


def modal_components(modal: dict[str, Any] | None, values: dict[str, str | list[str]]) -> list[dict[str, Any]]:
    """Submitted components mirroring the modal the bot showed (action rows or labels)."""
    if modal is None:
        return [{"type": 1, "components": [_submitted({"type": 4, "custom_id": k}, values)]} for k in values]
    used: set[str] = set()
    out: list[dict[str, Any]] = []
    for comp in modal.get("components", []):
        if comp["type"] == 1:
            inner = [_submitted(c, values, used) for c in comp.get("components", [])]
            out.append({"type": 1, "components": inner})
        elif comp["type"] == 18:
            out.append({"type": 18, "component": _submitted(comp["component"], values, used)})
        else:
            out.append({"type": comp["type"]})
    unknown = sorted(set(values) - used)
    if unknown:
        raise AssertionError(f"modal {modal.get('custom_id')!r} has no field(s) {unknown}")
    return out


def _submitted(comp: dict[str, Any], values: dict[str, Any], used: set[str] | None = None) -> dict[str, Any]:
    custom_id = comp.get("custom_id", "")
    if used is not None:
        used.add(custom_id)
    if comp["type"] == 4:
        value = values.get(custom_id, comp.get("value") or "")
        if comp.get("required", True) and not value:
            raise AssertionError(f"modal field {custom_id!r} is required (Discord's client will not submit)")
        low, high = comp.get("min_length", 0), comp.get("max_length", 4000)
        if value and not low <= len(value) <= high:
            raise AssertionError(f"modal field {custom_id!r}: length {len(value)} outside [{low}, {high}]")
        return {"type": 4, "custom_id": custom_id, "value": value}
    picked = values.get(custom_id, [])
    return {
        "type": comp["type"],
        "custom_id": custom_id,
        "values": [picked] if isinstance(picked, str) else picked,
    }
