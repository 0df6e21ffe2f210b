"""The REST routes discord.py uses, with Discord's behaviour where bots go wrong.

Interaction rules modelled: the callback must come within ``ack_deadline`` (else 404 10062) and only once
(else 400 40060); webhook calls need an acknowledged interaction (else 404 10015) and a token younger than
``token_ttl`` (else 401 50027); the first followup after a deferred (type 5) response fills the "thinking"
message, keeping the deferral's ephemeral flag, as Discord does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .commands import command_problems
from .interactions import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    MODAL,
    TYPE_NAMES,
    UPDATE_MESSAGE,
    InteractionRecord,
)
from .messages import MessageBuilder
from .models import (
    DM,
    EPHEMERAL,
    LOADING,
    FakeChannel,
    FakeGuild,
    FakeMessage,
    FakeUser,
)
from .rest import DiscordError, Incoming, Reply, RestApi, invalid_form

if TYPE_CHECKING:
    from .fake import FakeDiscord

log = logging.getLogger(__name__)

GUILD_MESSAGES_INTENT, DIRECT_MESSAGES_INTENT = 1 << 9, 1 << 12
SEND_MESSAGES, ATTACH_FILES, VIEW_CHANNEL = 1 << 11, 1 << 15, 1 << 10


def unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")


class Routes:
    """Route handlers; state lives in the FakeDiscord they serve."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.world = fake.world
        self.messages = MessageBuilder(fake.world)

    def register(self, api: RestApi) -> None:
        add = api.add
        add("GET", "/gateway", self.get_gateway, auth=False)
        add("GET", "/gateway/bot", self.get_gateway_bot)
        add("GET", "/users/@me", self.get_me)
        add("GET", "/users/{user_id}", self.get_user)
        add("POST", "/users/@me/channels", self.create_dm)
        add("GET", "/oauth2/applications/@me", self.get_application)
        add("GET", "/applications/@me", self.get_application)
        for scope in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            add("GET", f"{scope}/commands", self.list_commands)
            add("PUT", f"{scope}/commands", self.put_commands)
            add("POST", f"{scope}/commands", self.create_command)
            add("GET", f"{scope}/commands/{{command_id}}", self.get_command)
            add("PATCH", f"{scope}/commands/{{command_id}}", self.edit_command)
            add("DELETE", f"{scope}/commands/{{command_id}}", self.delete_command)
        add(
            "GET",
            "/applications/{application_id}/guilds/{guild_id}/commands/permissions",
            self.no_permissions,
        )
        add("GET", "/guilds/{guild_id}", self.get_guild)
        add("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        add("GET", "/guilds/{guild_id}/roles", self.get_guild_roles)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        add("GET", "/channels/{channel_id}", self.get_channel)
        add("GET", "/channels/{channel_id}/messages", self.list_channel_messages)
        add("POST", "/channels/{channel_id}/messages", self.create_channel_message)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self.get_channel_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_channel_message)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_channel_message)
        add("POST", "/channels/{channel_id}/typing", self.typing)
        callback = "/interactions/{interaction_id}/{interaction_token}/callback"
        add("POST", callback, self.interaction_callback, auth=False)
        webhook = "/webhooks/{webhook_id}/{webhook_token}"
        add("POST", webhook, self.create_followup, auth=False)
        for target in ("@original", "{message_id}"):
            add("GET", f"{webhook}/messages/{target}", self.get_webhook_message, auth=False)
            add("PATCH", f"{webhook}/messages/{target}", self.edit_webhook_message, auth=False)
            add("DELETE", f"{webhook}/messages/{target}", self.delete_webhook_message, auth=False)

    # -- users, application, gateway ------------------------------------------------------------

    async def get_gateway(self, inc: Incoming) -> Reply:
        return Reply({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, inc: Incoming) -> Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return Reply({"url": self.fake.gateway_url, "shards": self.fake.shard_count, "session_start_limit": limit})

    async def get_me(self, inc: Incoming) -> Reply:
        return Reply({**self.world.bot.payload(), "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def get_user(self, inc: Incoming) -> Reply:
        return Reply(self._user(inc.params["user_id"]).payload())

    async def create_dm(self, inc: Incoming) -> Reply:
        try:
            user = self._user(str(inc.json["recipient_id"]))
        except DiscordError:
            raise DiscordError(400, 50033, "Invalid Recipient(s)") from None
        return Reply(self.world.dm_channel(user).payload())

    async def get_application(self, inc: Incoming) -> Reply:
        return Reply(self.world.application_payload())

    def _user(self, user_id: str) -> FakeUser:
        user = self.world.users.get(_int(user_id))
        if user is None:
            raise unknown("User", 10013)
        return user

    # -- application commands -------------------------------------------------------------------

    def _scope(self, inc: Incoming) -> int | None:
        if _int(inc.params["application_id"]) != self.world.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in inc.params:
            return None
        guild_id = _int(inc.params["guild_id"])
        if guild_id not in self.world.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    async def list_commands(self, inc: Incoming) -> Reply:
        return Reply(self.fake.commands.list(self._scope(inc)))

    async def put_commands(self, inc: Incoming) -> Reply:
        scope = self._scope(inc)
        bodies = inc.json or []
        problems = [p for i, body in enumerate(bodies) for p in command_problems(body, f"[{i}].")]
        names = [(b.get("type") or 1, b["name"]) for b in bodies]
        problems += [f"duplicate command {n!r}" for n in {n for n in names if names.count(n) > 1}]
        if problems:
            raise invalid_form(problems)
        stored = self.fake.commands.put(scope, bodies)
        self.fake._record_sync(scope, stored)
        return Reply(stored)

    async def create_command(self, inc: Incoming) -> Reply:
        scope = self._scope(inc)
        problems = command_problems(inc.json)
        if problems:
            raise invalid_form(problems)
        stored, created = self.fake.commands.upsert(scope, inc.json)
        self.fake._record_sync(scope, self.fake.commands.list(scope))
        return Reply(stored, 201 if created else 200)

    def _command(self, inc: Incoming) -> tuple[int | None, dict[str, Any]]:
        scope = self._scope(inc)
        found = self.fake.commands.get(scope, _int(inc.params["command_id"]))
        if found is None:
            raise unknown("application command", 10063)
        return scope, found

    async def get_command(self, inc: Incoming) -> Reply:
        return Reply(self._command(inc)[1])

    async def edit_command(self, inc: Incoming) -> Reply:
        scope, found = self._command(inc)
        merged = {**found, **inc.json}
        problems = command_problems(merged)
        if problems:
            raise invalid_form(problems)
        self.fake.commands.delete(scope, int(found["id"]))
        stored, _ = self.fake.commands.upsert(scope, merged)
        return Reply(stored)

    async def delete_command(self, inc: Incoming) -> Reply:
        scope, found = self._command(inc)
        self.fake.commands.delete(scope, int(found["id"]))
        return Reply(None, 204)

    async def no_permissions(self, inc: Incoming) -> Reply:
        self._scope(inc)
        return Reply([])

    # -- guilds and channels --------------------------------------------------------------------

    def _guild(self, inc: Incoming) -> FakeGuild:
        guild = self.world.guilds.get(_int(inc.params["guild_id"]))
        if guild is None:
            raise unknown("Guild", 10004)
        return guild

    async def get_guild(self, inc: Incoming) -> Reply:
        return Reply(self.world.guild_payload(self._guild(inc)))

    async def get_guild_channels(self, inc: Incoming) -> Reply:
        return Reply([c.payload() for c in self._guild(inc).channels])

    async def get_guild_roles(self, inc: Incoming) -> Reply:
        return Reply([r.payload() for r in self._guild(inc).roles.values()])

    async def get_member(self, inc: Incoming) -> Reply:
        member = self._guild(inc).members.get(_int(inc.params["user_id"]))
        if member is None:
            raise unknown("Member", 10007)
        return Reply(member.payload())

    def _channel(self, inc: Incoming, needs: int = VIEW_CHANNEL) -> FakeChannel:
        channel = self.world.channels.get(_int(inc.params["channel_id"]))
        if channel is None:
            raise unknown("Channel", 10003)
        perms = self.world.permissions_in(self.world.bot, channel)
        if not perms & VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if perms & needs != needs:
            raise DiscordError(403, 50013, "Missing Permissions")
        return channel

    def _channel_message(self, inc: Incoming, channel: FakeChannel) -> FakeMessage:
        message = self.world.messages.get(_int(inc.params["message_id"]))
        if message is None or message.channel_id != channel.id or message.deleted or message.ephemeral:
            raise unknown("Message", 10008)
        return message

    async def get_channel(self, inc: Incoming) -> Reply:
        return Reply(self._channel(inc).payload())

    async def list_channel_messages(self, inc: Incoming) -> Reply:
        channel = self._channel(inc)
        limit = max(1, min(100, int(inc.query.get("limit", 50))))
        newest_first = list(reversed(self.fake.channel_messages(channel)))[:limit]
        return Reply([self._payload(m) for m in newest_first])

    async def create_channel_message(self, inc: Incoming) -> Reply:
        channel = self._channel(inc, VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if inc.files else 0))
        message = self.messages.create(channel, inc.json or {}, inc.files)
        await self._created(message)
        return Reply(self._payload(message))

    async def get_channel_message(self, inc: Incoming) -> Reply:
        return Reply(self._payload(self._channel_message(inc, self._channel(inc))))

    async def edit_channel_message(self, inc: Incoming) -> Reply:
        message = self._channel_message(inc, self._channel(inc))
        if message.author is not self.world.bot:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self.messages.edit(message, inc.json or {}, inc.files)
        await self._updated(message)
        return Reply(self._payload(message))

    async def delete_channel_message(self, inc: Incoming) -> Reply:
        message = self._channel_message(inc, self._channel(inc))
        await self._delete(message)
        return Reply(None, 204)

    async def typing(self, inc: Incoming) -> Reply:
        self._channel(inc, VIEW_CHANNEL | SEND_MESSAGES)
        return Reply(None, 204)

    # -- interactions ---------------------------------------------------------------------------

    async def interaction_callback(self, inc: Incoming) -> Reply:
        fake = self.fake
        record = fake._interactions_by_id.get(_int(inc.params["interaction_id"]))
        if record is None or record.token != inc.params["interaction_token"]:
            raise DiscordError(*UNKNOWN_INTERACTION)
        if record.acknowledged:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        now = fake.clock()
        if now - record.created_at > fake.ack_deadline:
            raise DiscordError(*UNKNOWN_INTERACTION)
        body = inc.json or {}
        kind = body.get("type")
        allowed = set(ALLOWED_CALLBACKS.get(record.type, ()))
        if record.type != APPLICATION_COMMAND and record.source_message is None:
            allowed -= {DEFERRED_UPDATE, UPDATE_MESSAGE}
        if kind not in allowed:
            raise invalid_form(
                [
                    f"callback type {kind} is not valid for a {TYPE_NAMES.get(record.type)} interaction"
                    f" (allowed: {sorted(allowed)})"
                ]
            )
        data = body.get("data") or {}
        message: FakeMessage | None = None
        created = kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE)
        if kind == CHANNEL_MESSAGE:
            message = self.messages.create(record.channel, data, inc.files, interaction=record)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            flags = LOADING | ((data.get("flags") or 0) & EPHEMERAL)
            message = self.messages.create(record.channel, {}, [], interaction=record, flags=flags, allow_empty=True)
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            message = record.source_message
            assert message is not None
            if kind == UPDATE_MESSAGE:
                self.messages.edit(message, data, inc.files)
        elif kind == MODAL:
            record.modal = data
            fake._modals[data["custom_id"]] = record
        record.callbacks.append((now, body))
        if message is not None:
            record.original = message
        if message is not None and kind != DEFERRED_UPDATE:
            record._note(message)
            await (self._created(message) if created else self._updated(message))
        else:
            record._note()
        if inc.query.get("with_response", "").lower() not in ("1", "true"):
            return Reply(None, 204)
        return Reply(self._callback_response(record, kind, message))

    def _callback_response(self, record: InteractionRecord, kind: int, message: FakeMessage | None) -> dict:
        interaction: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "activity_instance_id": None,
        }
        response: dict[str, Any] = {"interaction": interaction}
        if message is not None and kind != DEFERRED_UPDATE:
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
                response["resource"] = {"type": kind, "message": self._payload(message)}
        return response

    def _webhook_record(self, inc: Incoming) -> InteractionRecord:
        if _int(inc.params["webhook_id"]) != self.world.application_id:
            raise unknown("Webhook", 10015)
        record = self.fake._interactions_by_token.get(inc.params["webhook_token"])
        if record is None:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if self.fake.clock() - record.created_at > self.fake.token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if not record.acknowledged:
            raise unknown("Webhook", 10015)
        return record

    def _webhook_message(self, inc: Incoming, record: InteractionRecord) -> FakeMessage:
        if inc.template.endswith("@original"):
            message = record.original
        else:
            message = self.world.messages.get(_int(inc.params["message_id"]))
            if message is not None and message not in record.messages and message is not record.original:
                message = None
        if message is None or message.deleted:
            raise unknown("Message", 10008)
        return message

    async def create_followup(self, inc: Incoming) -> Reply:
        record = self._webhook_record(inc)
        original = record.original
        if record.response_type == DEFERRED_CHANNEL_MESSAGE and original is not None and original.loading:
            # Discord: the first followup after a deferral replaces the "thinking" message, ephemeral or not.
            self.messages.edit(original, inc.json or {}, inc.files)
            message = original
            record.followups.append(message)
            record._note(message)
            await self._updated(message)
        else:
            message = self.messages.create(record.channel, inc.json or {}, inc.files, interaction=record)
            record.followups.append(message)
            record._note(message)
            await self._created(message)
        if inc.query.get("wait", "").lower() not in ("1", "true"):
            return Reply(None, 204)
        return Reply(self._payload(message))

    async def get_webhook_message(self, inc: Incoming) -> Reply:
        return Reply(self._payload(self._webhook_message(inc, self._webhook_record(inc))))

    async def edit_webhook_message(self, inc: Incoming) -> Reply:
        record = self._webhook_record(inc)
        message = self._webhook_message(inc, record)
        self.messages.edit(message, inc.json or {}, inc.files)
        record._note(message)
        await self._updated(message)
        return Reply(self._payload(message))

    async def delete_webhook_message(self, inc: Incoming) -> Reply:
        record = self._webhook_record(inc)
        await self._delete(self._webhook_message(inc, record))
        record._note()
        return Reply(None, 204)

    # -- messages -------------------------------------------------------------------------------

    def _payload(self, message: FakeMessage) -> dict[str, Any]:
        return message.payload(self.world.users)

    async def _delete(self, message: FakeMessage) -> None:
        message.deleted = True
        self.fake._changes.notify()
        if not message.ephemeral:
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            await self._gateway_event("MESSAGE_DELETE", message, data)

    async def _created(self, message: FakeMessage) -> None:
        self.fake._changes.notify()
        await self._gateway_event("MESSAGE_CREATE", message, self._event_payload(message))

    async def _updated(self, message: FakeMessage) -> None:
        self.fake._changes.notify()
        await self._gateway_event("MESSAGE_UPDATE", message, self._event_payload(message))

    def _event_payload(self, message: FakeMessage) -> dict[str, Any]:
        data = self._payload(message)
        if message.guild_id is not None:
            member = self.world.guilds[message.guild_id].members.get(message.author.id)
            if member is not None:
                data["member"] = member.payload(with_user=False)
        return data

    async def _gateway_event(self, event: str, message: FakeMessage, data: dict[str, Any]) -> None:
        """Real Discord echoes the bot's own non-ephemeral messages to it when the intents ask for them."""
        gateway = self.fake.gateway
        channel = self.world.channels[message.channel_id]
        intent = DIRECT_MESSAGES_INTENT if channel.type == DM else GUILD_MESSAGES_INTENT
        if message.ephemeral:
            return
        await gateway.dispatch(event, data, intent=intent, required=False)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DiscordError(404, 0, "404: Not Found") from None
