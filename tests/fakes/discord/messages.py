"""Creating and editing the bot's messages from request bodies, with Discord's message rules.

Rules beyond the OpenAPI schema: a message needs content, embeds, components, files, a poll or stickers
(50006); ``allowed_mentions`` cannot both parse a kind and list it, and an edit of the content without it
reads the mentions with the defaults (all of them), whatever the message was created with; embeds total at
most 6000 characters; IS_COMPONENTS_V2 messages have no content or embeds. Discord numbers components
(``id``) when the bot does not, and sets the content type of uploads from the file name.
"""

from __future__ import annotations

import copy
import io
import logging
import mimetypes
from typing import Any

from .interactions import APPLICATION_COMMAND, InteractionRecord
from .models import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    FakeAttachment,
    FakeChannel,
    FakeMessage,
    UploadedFile,
    resolve_mentions,
    utcnow,
    walk_components,
)
from .rest import DiscordError, invalid_form
from .world import World

log = logging.getLogger(__name__)

SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS = 1 << 2, 1 << 12
SETTABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
EMBED_TOTAL_LIMIT = 6000
CHAT_INPUT_COMMAND_MESSAGE, REPLY_MESSAGE = 20, 19


class MessageBuilder:
    """Turns message bodies (channel posts, interaction responses, followups, edits) into FakeMessages."""

    def __init__(self, world: World) -> None:
        self.world = world

    def create(
        self,
        channel: FakeChannel,
        body: dict[str, Any],
        uploads: list[UploadedFile],
        *,
        interaction: InteractionRecord | None = None,
        flags: int | None = None,
        allow_empty: bool = False,
    ) -> FakeMessage:
        """A new message by the bot; ``flags`` overrides ``body["flags"]`` (deferrals)."""
        if flags is None:
            flags = body.get("flags") or 0
        allowed_flags = SETTABLE_FLAGS | (EPHEMERAL | LOADING if interaction is not None else 0)
        message = FakeMessage(
            id=self.world.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.world.bot,
            flags=flags & allowed_flags,
            tts=bool(body.get("tts")),
            message_reference=body.get("message_reference"),
        )
        if interaction is not None:
            message.webhook_id = self.world.application_id
            message.interaction_id = interaction.id
            if interaction.type == APPLICATION_COMMAND:
                message.type = CHAT_INPUT_COMMAND_MESSAGE
            message.interaction_metadata = _interaction_metadata(interaction)
        elif message.message_reference:
            message.type = REPLY_MESSAGE
        self._apply(message, body, uploads, creating=True, allow_empty=allow_empty)
        if not message.ephemeral and not message.loading:
            message.pinged = message.mentions  # only new, visible messages notify anyone
        self.world.messages[message.id] = message
        return message

    def edit(self, message: FakeMessage, body: dict[str, Any], uploads: list[UploadedFile]) -> None:
        """Edit in place (the previous state goes to ``message.edits``); filling a "thinking" message
        is not shown as an edit."""
        before = message.snapshot()
        was_loading = message.loading
        self._apply(message, body, uploads, creating=False)
        message.edits.append(before)
        message.flags &= ~LOADING
        if not was_loading:
            message.edited_at = utcnow()

    def _apply(
        self,
        message: FakeMessage,
        body: dict[str, Any],
        uploads: list[UploadedFile],
        *,
        creating: bool,
        allow_empty: bool = False,
    ) -> None:
        """Apply the message fields of ``body``; raises before changing anything if Discord would refuse."""
        new: dict[str, Any] = {}
        for key, empty in (("content", ""), ("embeds", []), ("components", []), ("poll", None)):
            if key in body:
                new[key] = body[key] if body[key] is not None else empty
        if new.get("components"):
            new["components"] = _numbered(new["components"])
        flags = message.flags
        if not creating and body.get("flags") is not None:
            flags = (flags & (EPHEMERAL | LOADING)) | (body["flags"] & SETTABLE_FLAGS)
        attachments = list(message.attachments)
        if body.get("attachments") is not None:
            keep = {str(a["id"]) for a in body["attachments"]}
            attachments = [a for a in attachments if str(a.id) in keep]
        content = new.get("content", message.content)
        embeds = new.get("embeds", message.embeds)
        components = new.get("components", message.components)
        poll = new.get("poll", message.poll)
        problems = _message_problems(content, embeds, body.get("allowed_mentions"), flags)
        if problems:
            raise invalid_form(problems)
        has_body = content or embeds or components or attachments or uploads or poll or body.get("sticker_ids")
        if not allow_empty and not has_body:
            raise DiscordError(400, 50006, "Cannot send an empty message", violation="form")
        attachments += self._uploads(uploads, body.get("attachments") or [])
        message.content, message.embeds, message.components, message.poll = content, embeds, components, poll
        message.attachments, message.flags = attachments, flags
        if "allowed_mentions" in body or "content" in body or creating:
            # Discord re-reads the mentions of edited content with the edit's allowed_mentions; without one, with
            # the defaults (everything), whatever the message was created with.
            message.allowed_mentions = body.get("allowed_mentions")
        message.mentions = resolve_mentions(message.content, message.allowed_mentions)

    def _uploads(self, uploads: list[UploadedFile], described: list[dict[str, Any]]) -> list[FakeAttachment]:
        """Attachments for ``files[n]``, named and described by the ``attachments`` entry with id n."""
        by_index = {str(a.get("id")): a for a in described}
        out = []
        for index, upload in enumerate(uploads):
            meta = by_index.get(str(index), {})
            filename = meta.get("filename") or upload.filename
            content_type = mimetypes.guess_type(filename)[0] or upload.content_type
            is_image = (content_type or "").startswith("image/")
            width, height = _image_size(upload.data) if is_image else (None, None)
            attachment = self.world.add_attachment(
                filename,
                upload.data,
                content_type=content_type,
                width=width,
                height=height,
                description=meta.get("description"),
            )
            out.append(attachment)
        return out


def _interaction_metadata(record: InteractionRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(record.id),
        "type": record.type,
        "user": record.user.payload(),
        "authorizing_integration_owners": record.payload["authorizing_integration_owners"],
    }
    if record.type == APPLICATION_COMMAND:
        data.update(name=record.name, command_type=1)
    if record.original is not None:
        data["original_response_message_id"] = str(record.original.id)
    if record.source_message is not None:
        data["interacted_message_id"] = str(record.source_message.id)
    return data


def _message_problems(
    content: str, embeds: list[dict[str, Any]], allowed: dict[str, Any] | None, flags: int
) -> list[str]:
    """Discord's message rules that the OpenAPI schema does not express."""
    problems = []
    for kind in ("users", "roles"):
        if allowed and kind in (allowed.get("parse") or []) and allowed.get(kind):
            problems.append(f"allowed_mentions: parse '{kind}' and a '{kind}' list are mutually exclusive")
    total = sum(_embed_length(e) for e in embeds)
    if total > EMBED_TOTAL_LIMIT:
        problems.append(f"embeds: {total} characters in total, Discord allows {EMBED_TOTAL_LIMIT}")
    if flags & IS_COMPONENTS_V2 and (content or embeds):
        problems.append("IS_COMPONENTS_V2 messages cannot have content or embeds")
    return problems


def _numbered(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy with Discord's numeric component ``id``s (depth-first, from 1) where the bot set none."""
    copied = copy.deepcopy(components)
    used = {c["id"] for c in walk_components(copied) if isinstance(c.get("id"), int)}
    next_id = 1
    for comp in walk_components(copied):
        if comp.get("id") is None:
            while next_id in used:
                next_id += 1
            comp["id"] = next_id
            used.add(next_id)
    return copied


def _embed_length(embed: dict[str, Any]) -> int:
    texts = [embed.get("title"), embed.get("description")]
    texts += [(embed.get("footer") or {}).get("text"), (embed.get("author") or {}).get("name")]
    for f in embed.get("fields") or []:
        texts += [f.get("name"), f.get("value")]
    return sum(len(t or "") for t in texts)


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # not an image Pillow can read, or no Pillow
        return None, None
