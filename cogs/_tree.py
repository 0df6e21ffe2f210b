"""The command tree, and the one place that turns any error into a message for the user."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from cogs._guards import NotAllowed
from cogs._replies import load_fallback_language, reply, text
from core.errors import UserFacingError

if TYPE_CHECKING:
    from bot import DoubaoBot

log = logging.getLogger(__name__)


async def explain_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tells the user what went wrong, for commands, buttons and modals alike."""
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(cause, UserFacingError):
        content = text(interaction, cause.key, **cause.params)
    elif isinstance(cause, NotAllowed):
        content = text(interaction, cause.key)
    elif isinstance(cause, app_commands.TransformerError | app_commands.CheckFailure):
        content = text(interaction, "error.bad_choice", option=getattr(cause, "value", "?"))
    else:
        where = interaction.command.qualified_name if interaction.command else interaction.data
        log.error("interaction %s failed", where, exc_info=cause)
        content = text(interaction, "error.command_failed")
    try:
        await reply(interaction, content)
    except discord.HTTPException:
        log.exception("could not tell user %s about an error", interaction.user.id)


class BotTree(app_commands.CommandTree["DoubaoBot"]):
    async def interaction_check(self, interaction: discord.Interaction[DoubaoBot]) -> bool:
        await load_fallback_language(interaction)
        return True

    async def on_error(self, interaction: discord.Interaction[DoubaoBot], error: app_commands.AppCommandError) -> None:
        await explain_error(interaction, error)
