"""FakeDiscord: a fake Discord (REST + gateway) on 127.0.0.1 that the real discord.py client logs into."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import discord
import yarl
from aiohttp import web

from .commands import CommandStore, OptionValue, build_invocation
from .gateway import Gateway, GatewaySession
from .interactions import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Changes,
    InteractionRecord,
    component_data,
    interaction_payload,
    modal_components,
)
from .models import (
    CommandSync,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    RequestRecord,
    Violation,
    solid_png,
)
from .openapi import DEFAULT_SPEC_PATH, load_spec
from .rest import API_PREFIX, HeldAnswer, RestApi, RoutePattern
from .routes import Routes
from .world import World

log = logging.getLogger(__name__)

MiB = 1024 * 1024
TOKEN_LIFETIME = 900.0  # seconds an interaction token lives on Discord, and in discord.py's reckoning
_DEFAULT = object()
GUILD_MEMBERS_INTENT = 1 << 1


class _Patch:
    """Undo handle for ``patch_discord_py``: call it, or use it as a context manager."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo: Callable[[], None] | None = undo

    def __call__(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        self()


class FakeDiscord:
    """A fake Discord for end-to-end tests; see the package docstring for the tour.

    ``ack_deadline``: seconds to answer an interaction (then 10062); ``token_ttl``: lifetime of interaction
    tokens (then 50027); ``honest_expiry``: date each interaction's snowflake so that discord.py's
    ``Interaction.expires_at`` (15 minutes after the snowflake) is when the fake's token dies, as with the real
    Discord; False dates it now, so a short ``token_ttl`` dies long before the bot expects it to (as if the
    bot's clock were behind); ``upload_limit``: bytes per request/file for channel messages (then 413 40005);
    ``attachment_size_limit``: the same for interaction responses, sent in interactions (default:
    ``upload_limit``); ``heartbeat_interval``: seconds, in HELLO; ``spec_path``: Discord's OpenAPI
    description (None turns body validation off); ``shard_count``: the shards GET /gateway/bot recommends.

    Sharding: the gateway takes one session per shard (IDENTIFY with ``shard: [id, count]``) and sends each
    guild's events to the session of shard ``(guild_id >> 22) % count`` (DMs to shard 0); a session without
    ``shard`` gets everything. ``add_guild(shard=1, shard_count=2)`` makes a guild on a chosen shard.
    """

    def __init__(
        self,
        *,
        ack_deadline: float = 3.0,
        token_ttl: float = TOKEN_LIFETIME,
        honest_expiry: bool = True,
        upload_limit: int = 10 * MiB,
        attachment_size_limit: int | None = None,
        heartbeat_interval: float = 5.0,
        bot_name: str = "FakeBot",
        bot_token: str | None = None,
        spec_path: str | Path | None = DEFAULT_SPEC_PATH,
        shard_count: int = 1,
    ) -> None:
        self.ack_deadline = ack_deadline
        self.shard_count = shard_count
        self.token_ttl = token_ttl
        self.honest_expiry = honest_expiry
        self.upload_limit = upload_limit
        self.attachment_size_limit = upload_limit if attachment_size_limit is None else attachment_size_limit
        self.bot_token = bot_token or f"fake-bot-token-{secrets.token_hex(8)}"
        self.requests: list[RequestRecord] = []
        self.violations: list[Violation] = []
        self.interactions: list[InteractionRecord] = []
        self.command_syncs: list[CommandSync] = []
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._changes = Changes()
        self._interactions_by_id: dict[int, InteractionRecord] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}
        self._modals: dict[str, InteractionRecord] = {}
        self._returned: dict[int, set[int]] = {}
        self._pending_events: list[tuple[str, dict[str, Any], int | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.world = World(bot_name=bot_name, base_url="http://127.0.0.1:0")
        self.commands = CommandStore(self.world.ids, self.world.application_id)
        self.gateway = Gateway(
            token=self.bot_token,
            heartbeat_interval=heartbeat_interval,
            ready_events=self._ready_events,
            members_chunk=self.world.members_chunk,
            on_change=self._changes.notify,
        )
        self._api = RestApi(
            spec=None if spec_path is None else load_spec(spec_path),
            token=self.bot_token,
            upload_limit=self._upload_limit_for,
            requests=self.requests,
            violations=self.violations,
            clock=self.clock,
            on_request=self._on_request,
        )
        Routes(self).register(self._api)
        self.guild = self.world.add_guild("Test Guild")
        self.general = self.guild.channel("general")
        self._default_user: FakeUser | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=max(64 * MiB, 4 * self.upload_limit))
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.base_url = self.url
        for attachment in self.world.attachments.values():
            attachment.url = f"{self.url}/attachments/{attachment.id}/{attachment.filename}"
        log.info("fake Discord listening on %s", self.url)

    async def close(self) -> None:
        self._api.release_all()
        for task in self._tasks:
            task.cancel()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def clock() -> float:
        """The monotonic clock of all timestamps (the event loop's)."""
        return asyncio.get_running_loop().time()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    def patch_discord_py(self) -> _Patch:
        """Point discord.py's REST base and default gateway at the fake (undo by calling / ``with``)."""
        saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

        def undo() -> None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

        return _Patch(undo)

    @contextlib.asynccontextmanager
    async def running(
        self,
        client: discord.Client,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> AsyncIterator[discord.Client]:
        """Patch discord.py, start ``client`` and wait until its gateway sessions (one per shard it runs) are
        up; close it after."""
        with self.patch_discord_py():
            since = self.gateway.identify_count
            task = asyncio.create_task(client.start(self.bot_token), name="fake-discord-bot")
            try:
                waiter = asyncio.create_task(self._wait_for_client(client, since, timeout))
                done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    waiter.cancel()
                    task.result()
                    raise AssertionError("the bot stopped before its gateway session was ready")
                waiter.result()
                yield client
            finally:
                await client.close()
                with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                    await asyncio.wait_for(task, timeout)

    # -- the world ------------------------------------------------------------------------------

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> FakeUser:
        return self.world.bot

    @property
    def bot_member(self) -> FakeMember:
        return self.guild.members[self.world.bot.id]

    def add_guild(
        self, name: str = "Another Guild", *, shard: int | None = None, shard_count: int | None = None, **kwargs: Any
    ) -> FakeGuild:
        """A guild with @everyone, the bot (with its managed role) and a "general" channel; with ``shard``, one
        whose events go to that shard of ``shard_count`` (default: the fake's ``shard_count``)."""
        if shard is not None and shard_count is None:
            shard_count = self.shard_count
        guild = self.world.add_guild(name, shard=shard, shard_count=shard_count, **kwargs)
        self._announce("GUILD_CREATE", lambda: self.world.guild_create_payload(guild))
        return guild

    def add_channel(self, guild: FakeGuild | None = None, name: str = "channel", **kwargs: Any) -> FakeChannel:
        channel = self.world.add_channel(guild or self.guild, name, **kwargs)
        self._announce("CHANNEL_CREATE", channel.payload)
        return channel

    def add_role(self, guild: FakeGuild | None = None, name: str = "role", **kwargs: Any) -> FakeRole:
        guild = guild or self.guild
        role = self.world.add_role(guild, name, **kwargs)
        self._announce("GUILD_ROLE_CREATE", lambda: {"guild_id": str(guild.id), "role": role.payload()})
        return role

    def add_user(self, name: str, *, locale: str = "en-US", **kwargs: Any) -> FakeUser:
        return self.world.add_user(name, locale=locale, **kwargs)

    def add_member(
        self,
        guild: FakeGuild | None,
        user: FakeUser,
        *,
        roles: list[FakeRole] | tuple[FakeRole, ...] = (),
        permissions: int | discord.Permissions | None = None,
        nick: str | None = None,
    ) -> FakeMember:
        """Make ``user`` a member; ``permissions`` become a personal role (on top of @everyone's)."""
        guild = guild or self.guild
        member = self.world.add_member(guild, user, roles=roles, permissions=permissions, nick=nick)
        self._announce(
            "GUILD_MEMBER_ADD", lambda: {**member.payload(), "guild_id": str(guild.id)}, intent=GUILD_MEMBERS_INTENT
        )
        return member

    def set_overwrite(
        self, channel: FakeChannel, target: FakeRole | FakeMember | FakeUser, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set a channel permission overwrite (e.g. deny the bot's role SEND_MESSAGES); the bot hears of it
        through CHANNEL_UPDATE, as from Discord."""
        self.world.set_overwrite(channel, target, allow=allow, deny=deny)
        self._announce("CHANNEL_UPDATE", channel.payload)

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        return self.world.dm_channel(user)

    def attachment(
        self,
        filename: str = "ref.png",
        content: bytes | None = None,
        content_type: str | None = "image/png",
        width: int | None = 64,
        height: int | None = 64,
        size: int | None = None,
    ) -> FakeAttachment:
        """A file the fake serves at ``attachment.url``, for attachment options.

        ``content`` defaults to a real ``width``x``height`` PNG; ``size`` overrides the reported size
        (to simulate a big file without the bytes); width/height/content_type None mean "not an image".
        """
        if content is None:
            content = solid_png(width or 1, height or 1)
        return self.world.add_attachment(
            filename, content, content_type=content_type, width=width, height=height, size=size
        )

    def _announce(self, event: str, payload: Callable[[], dict[str, Any]], *, intent: int | None = None) -> None:
        """Tell a connected bot about a change made after it received its guilds (sent in order, before
        the next interaction, to the sessions that receive that guild's events and asked for ``intent``)."""
        if not self.gateway.sessions or (intent is not None and not self.gateway.intents & intent):
            return
        self._pending_events.append((event, payload(), intent))
        task = asyncio.get_running_loop().create_task(self._flush_events())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_events(self) -> None:
        while self._pending_events:
            event, data, intent = self._pending_events.pop(0)
            await self.gateway.dispatch(event, data, intent=intent, required=False)

    # -- gateway --------------------------------------------------------------------------------

    def _ready_events(self, session: GatewaySession) -> list[tuple[str, dict[str, Any]]]:
        return self.world.ready_events(session_id=session.session_id, shard=session.shard, resume_url=self.gateway_url)

    async def wait_until_ready(self, timeout: float = 10.0, *, identifies: int = 1) -> None:  # noqa: ASYNC109 - timeout= is the test API
        """Wait until a bot has IDENTIFYed (``identifies`` times in all) and every session got READY and its
        GUILD_CREATEs.

        Quicker than ``bot.wait_until_ready()``, which also waits discord.py's ``guild_ready_timeout``
        (2 s by default) after the last GUILD_CREATE.
        """
        gateway = self.gateway

        def ready() -> bool | None:
            sessions = gateway.sessions.values()
            return True if gateway.identify_count >= identifies and all(s.ready for s in sessions) else None

        await self._changes.wait_until(ready, timeout, f"IDENTIFY #{identifies} on the fake gateway")

    async def wait_for_shards(
        self,
        shard_ids: Iterable[int],
        shard_count: int,
        *,
        since: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> None:
        """Wait until each of ``shard_ids`` (of ``shard_count``) has a session, started by an IDENTIFY after the
        first ``since`` ones, that got READY and its GUILD_CREATEs."""
        wanted = list(shard_ids)

        def ready() -> bool | None:
            sessions = [self.gateway.shard_session(shard_id, shard_count) for shard_id in wanted]
            return True if all(s is not None and s.number > since and s.ready for s in sessions) else None

        await self._changes.wait_until(ready, timeout, f"shards {wanted} of {shard_count} on the fake gateway")

    async def _wait_for_client(self, client: discord.Client, since: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until the sessions ``client`` opens are ready: one per shard it runs, or one unsharded."""
        if isinstance(client, discord.AutoShardedClient):
            count = client.shard_count or self.shard_count
            await self.wait_for_shards(client.shard_ids or range(count), count, since=since, timeout=timeout)
        elif client.shard_count is not None:
            await self.wait_for_shards([client.shard_id or 0], client.shard_count, since=since, timeout=timeout)
        else:

            def ready() -> bool | None:
                session = self.gateway.sessions.get(None)
                return True if session is not None and session.number > since and session.ready else None

            await self._changes.wait_until(ready, timeout, "an unsharded session on the fake gateway")

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a raw gateway event to the bot."""
        await self._flush_events()
        await self.gateway.dispatch(event, data)

    async def drop_gateway(
        self,
        *,
        code: int = 4000,
        wait_resumed: bool = True,
        shard_id: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> None:
        """Close the bot's websockets (or only shard ``shard_id``'s); by default wait until discord.py has
        RESUMEd."""
        await self.gateway.drop(code, shard_id=shard_id)
        if wait_resumed:
            try:
                await asyncio.wait_for(self.gateway.resumed.wait(), timeout)
            except TimeoutError:
                raise AssertionError(f"the bot did not RESUME within {timeout}s") from None

    def _upload_limit_for(self, request: RequestRecord) -> int:
        """Interaction responses: the interaction's ``attachment_size_limit``; else ``upload_limit``."""
        if request.route and request.route.startswith(("/interactions/", "/webhooks/")):
            return self.attachment_size_limit
        return self.upload_limit

    def _on_request(self, request: RequestRecord, params: dict[str, str]) -> None:
        token = params.get("interaction_token") or params.get("webhook_token")
        record = self._interactions_by_token.get(token or "")
        if record is not None:
            record.requests.append(request)
        self._changes.notify()

    # -- commands -------------------------------------------------------------------------------

    def _record_sync(self, guild_id: int | None, commands: list[dict[str, Any]]) -> None:
        self.command_syncs.append(CommandSync(guild_id, commands, self.clock()))
        self._changes.notify()

    def synced_commands(self, guild: FakeGuild | int | None = None) -> list[dict[str, Any]]:
        """The commands as last registered (global, or for ``guild``)."""
        return self.commands.list(_id(guild))

    async def wait_for_commands_synced(
        self,
        guild: FakeGuild | int | object | None = _DEFAULT,
        *,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> list[CommandSync]:
        """Wait until ``count`` command syncs happened (for ``guild``: None = global; default: any scope)."""

        def syncs() -> list[CommandSync]:
            if guild is _DEFAULT:
                return self.command_syncs
            return [s for s in self.command_syncs if s.guild_id == _id(guild)]  # type: ignore[arg-type]

        return await self._changes.wait_until(
            lambda: syncs() if len(syncs()) >= count else None, timeout, f"{count} command sync(s)"
        )

    # -- interactions ---------------------------------------------------------------------------

    @property
    def default_user(self) -> FakeUser:
        """The user interactions come from when no ``user=`` is given."""
        if self._default_user is None:
            self._default_user = self.add_user("tester")
        return self._default_user

    def _where(self, user: FakeUser, channel: FakeChannel | None, guild: Any) -> FakeChannel:
        if channel is not None:
            return channel
        if guild is None:
            return self.world.dm_channel(user)
        target = self.guild if guild is _DEFAULT else guild
        text = next((c for c in target.channels if c.type == 0), None)
        if text is None:
            raise AssertionError(f"guild {target.name!r} has no text channel; pass channel=")
        return text

    async def _dispatch_interaction(
        self,
        kind: int,
        name: str,
        data: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        message: FakeMessage | None = None,
    ) -> InteractionRecord:
        # discord.py reckons a token's expiry from the interaction's snowflake: date it so that the bot's
        # clock and the fake's token_ttl agree (unless told otherwise).
        backdate = TOKEN_LIFETIME - self.token_ttl if self.honest_expiry else 0.0
        interaction_id = self.world.ids.dated(time.time() - backdate) if backdate > 0 else self.world.ids.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
        payload = interaction_payload(
            self.world,
            interaction_id=interaction_id,
            token=token,
            type=kind,
            data=data,
            user=user,
            channel=channel,
            attachment_size_limit=self.attachment_size_limit,
            message=message,
        )
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            name=name,
            user=user,
            channel=channel,
            payload=payload,
            created_at=self.clock(),
            source_message=message,
            _changes=self._changes,
        )
        self.interactions.append(record)
        self._interactions_by_id[interaction_id] = record
        self._interactions_by_token[token] = record
        await self._flush_events()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return record

    async def invoke(
        self,
        command: str,
        *,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
        guild: FakeGuild | Any | None = _DEFAULT,
        options: dict[str, OptionValue] | None = None,
        **more_options: OptionValue,
    ) -> InteractionRecord:
        """Run a slash command as Discord's client would (``"draw"``, ``"settings channels add"``).

        ``user``/``channel``/``guild`` say who runs it where (``guild=None``: in the user's DM); command
        options are keyword arguments, or ``options={...}`` for options named user/channel/guild/options.
        They are checked against the synced definition (names, types, choices, ranges, required).
        """
        user = user or self.default_user
        channel = self._where(user, channel, guild)
        values = {**(options or {}), **more_options}
        invocation = build_invocation(self.world, self.commands, command, values, channel=channel, user=user)
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, invocation.qualified_name, invocation.data, user, channel
        )

    async def click(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        user: FakeUser | None = None,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        """Press a button (or pick ``values`` in a select) on a message the bot posted."""
        if isinstance(message, int):
            found = self.world.messages.get(message)
            if found is None:
                raise AssertionError(f"no message {message}")
            message = found
        if message.deleted:
            raise AssertionError(f"message {message.id} was deleted")
        user = user or self.default_user
        if message.ephemeral:
            owner = self._interactions_by_id.get(message.interaction_id or 0)
            if owner is not None and owner.user is not user:
                raise AssertionError(f"only {owner.user.name} can see ephemeral message {message.id}")
        data = component_data(message, custom_id, values)
        channel = self.world.channels[message.channel_id]
        return await self._dispatch_interaction(MESSAGE_COMPONENT, custom_id, data, user, channel, message)

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, str | list[str]],
        *,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
    ) -> InteractionRecord:
        """Submit the modal ``custom_id`` (as last shown by the bot, if it was) with ``values``."""
        shown_by = self._modals.get(custom_id)
        if shown_by is not None:
            user = user or shown_by.user
            channel = channel or shown_by.channel
        user = user or self.default_user
        channel = self._where(user, channel, _DEFAULT)
        modal = None if shown_by is None else shown_by.modal
        data = {"custom_id": custom_id, "components": modal_components(modal, values)}
        message = None if shown_by is None else shown_by.source_message
        return await self._dispatch_interaction(MODAL_SUBMIT, custom_id, data, user, channel, message)

    # -- observing ------------------------------------------------------------------------------

    def channel_messages(self, channel: FakeChannel, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Messages visible in ``channel``, oldest first (ephemeral ones are not in any channel)."""
        return [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel.id and not m.ephemeral and (include_deleted or not m.deleted)
        ]

    async def wait_for_channel_message(
        self,
        channel: FakeChannel,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - timeout= is the test API
    ) -> FakeMessage:
        """The first message in ``channel`` matching ``predicate`` not returned by an earlier call.

        "Thinking..." messages never match; an edited message is checked again.
        """
        returned = self._returned.setdefault(channel.id, set())

        def check() -> FakeMessage | None:
            for message in self.channel_messages(channel):
                if message.id in returned or message.loading:
                    continue
                if predicate is None or predicate(message):
                    returned.add(message.id)
                    return message
            return None

        return await self._changes.wait_until(check, timeout, f"a message in #{channel.name}")

    def message(self, message_id: int) -> FakeMessage:
        return self.world.messages[message_id]

    def open_command(self, name: str, guild: FakeGuild | None = None) -> None:
        """Let everyone in ``guild`` use ``/name`` whatever its default permissions, as a server admin can in
        Server Settings > Integrations (the bot must still check permissions itself)."""
        self.commands.opened.add(((guild or self.guild).id, name))

    def rate_limit_next(
        self, route: RoutePattern, retry_after: float = 0.05, global_: bool = False, *, times: int = 1
    ) -> None:
        """Answer the next ``times`` matching requests with 429.

        ``route`` is ``"POST /channels/{channel_id}/messages"`` (a template; parameter names do not matter),
        a glob on the concrete path (``"POST /webhooks/*"``), or a callable taking the ``RequestRecord``.
        """
        self._api.rate_limit_next(route, retry_after, global_, times)

    def hold_next(self, route: RoutePattern) -> HeldAnswer:
        """Keep back the answer to the next request matching ``route`` (as in ``rate_limit_next``) until the test
        calls ``release()`` on what this returns: what the request made is already visible, as when Discord's
        answer is slow to arrive. ``reached`` is set once the request was handled."""
        return self._api.hold_next(route)

    def all_request_text(self) -> str:
        """Everything the bot sent (REST bodies, file names and bytes, headers except Authorization,
        and gateway payloads with the token redacted), as one string to search."""
        parts = [r.text() for r in self.requests]
        parts += [json.dumps(p) for p in self.gateway.received]
        return "\n".join(parts)

    def assert_no_violations(self) -> None:
        """Fail if the bot sent anything Discord would reject (schema, form rules, unknown routes)."""
        if self.violations:
            lines = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(f"the bot sent {len(self.violations)} request(s) Discord would reject:\n{lines}")

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RequestRecord(
            "GET",
            request.path,
            "/attachments/{attachment_id}/{filename}",
            {},
            headers,
            None,
            [],
            "",
            self.clock(),
        )
        self.requests.append(record)
        attachment_id = request.match_info["attachment_id"]
        attachment = self.world.attachments.get(int(attachment_id)) if attachment_id.isdigit() else None
        if attachment is None or attachment.filename != request.match_info["filename"]:
            record.status = 404
            raise web.HTTPNotFound()
        record.status = 200
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, content_type=content_type.split(";")[0])

    @contextlib.contextmanager
    def expect_violations(self) -> Iterator[list[Violation]]:
        """For tests of bad behaviour: violations inside the block are handed over, not failures."""
        start = len(self.violations)
        found: list[Violation] = []
        try:
            yield found
        finally:
            found.extend(self.violations[start:])
            del self.violations[start:]


def _id(guild: FakeGuild | int | None) -> int | None:
    return guild.id if isinstance(guild, FakeGuild) else guild
