"""Answering an interaction whatever state it is in, in the user's language, without pinging anyone."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from core.i18n import is_served, language_for, t
from core.job import TOKEN_SAFETY_MARGIN

if TYPE_CHECKING:
    from bot import DoubaoBot

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
INVALID_WEBHOOK_TOKEN = 50027
MESSAGE_LIMIT = 2000


def language_of(interaction: discord.Interaction) -> str:
    """The user's Discord language, else the server's configured one, else the server's locale, else English.

    A handler may fix the language for a whole interaction in `interaction.extras["language"]` (the settings
    commands answer in the server's language).
    """
    forced = interaction.extras.get("language")
    if forced:
        return forced
    guild_locale = interaction.guild_locale.value if interaction.guild_locale else None
    return language_for(interaction.locale.value, interaction.extras.get("server_language"), guild_locale)


async def answer_in_server_language(interaction: discord.Interaction[DoubaoBot]) -> None:
    """Answers the whole interaction in the server's language, whatever the member's own (for admins and
    moderators, like the mod log)."""
    interaction.extras["language"] = await interaction.client.modlog.server_language(interaction.guild_id or 0)


async def load_fallback_language(interaction: discord.Interaction[DoubaoBot]) -> None:
    """Reads the server's configured language, the fallback `language_of` uses for a member whose Discord
    language the bot does not speak; once per interaction, and not at all when it speaks the member's own."""
    if is_served(interaction.locale.value):
        return
    if interaction.guild_id is not None and "server_language" not in interaction.extras:
        policy = await interaction.client.policy.get(interaction.guild_id)
        interaction.extras["server_language"] = policy.language


def text(interaction: discord.Interaction, key: str, /, **params: Any) -> str:
    """The catalogue text for this user, with datetimes shown as Discord timestamps."""
    shown = {name: _display(value) for name, value in params.items()}
    return t(language_of(interaction), key, **shown)


def _display(value: Any) -> Any:
    if isinstance(value, datetime):
        return f"{discord.utils.format_dt(value, 'R')} ({discord.utils.format_dt(value, 'f')})"
    return value


def trim(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def mentioning_only(user_id: int) -> discord.AllowedMentions:
    """For a message that must reach one member (a late answer): it pings them and nobody else."""
    return discord.AllowedMentions(users=[discord.Object(user_id)], everyone=False, roles=False)


def token_usable(interaction: discord.Interaction) -> bool:
    return discord.utils.utcnow() < interaction.expires_at - TOKEN_SAFETY_MARGIN


def token_rejected(error: discord.HTTPException) -> bool:
    """Discord refused the interaction token: it expired, or the response was deleted."""
    return isinstance(error, discord.NotFound) or error.code == INVALID_WEBHOOK_TOKEN


async def reply(interaction: discord.Interaction, content: str) -> None:
    """Answers in whatever state the interaction is in.

    Not yet answered: a private message. Deferred: the "thinking" message becomes the answer (Discord keeps
    the deferral's visibility, so checks that concern one user run before deferring). Token gone: a channel
    message that mentions the user only.
    """
    content = trim(content, MESSAGE_LIMIT)
    if not interaction.response.is_done():
        await interaction.response.send_message(content, ephemeral=True, allowed_mentions=NO_PINGS)
        return
    if interaction.response.type is discord.InteractionResponseType.deferred_message_update and token_usable(
        interaction
    ):
        # "original" is the message the button is on (a status or a result): answer beside it, privately.
        await interaction.followup.send(content, ephemeral=True, allowed_mentions=NO_PINGS)
        return
    if token_usable(interaction):
        try:
            await interaction.edit_original_response(
                content=content, embed=None, attachments=[], view=None, allowed_mentions=NO_PINGS
            )
            return
        except discord.HTTPException as error:
            if not token_rejected(error):
                raise
    await _tell_in_channel(interaction, content)


async def _tell_in_channel(interaction: discord.Interaction, content: str) -> None:
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("cannot tell user %s: no channel to write to", interaction.user.id)
        return
    await channel.send(f"{interaction.user.mention} {content}", allowed_mentions=mentioning_only(interaction.user.id))
