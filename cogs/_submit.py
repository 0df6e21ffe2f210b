"""Turning an interaction (a command, a button, a modal) into a queued job."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from cogs._guards import require_guild
from cogs._replies import language_of
from core.jobs import Job, JobRequest, ReplyTarget
from core.params import Command, Params

if TYPE_CHECKING:
    from bot import DoubaoBot


async def start_job(interaction: discord.Interaction[DoubaoBot], command: Command, params: Params) -> Job:
    """Checks what can be said privately, defers well inside Discord's 3 s, then queues the job.

    The deferred "thinking" message becomes the job's status message: queued, generating, then the image.
    """
    bot = interaction.client
    guild_id = require_guild(interaction)
    await bot.quota.check(guild_id=guild_id, user_id=interaction.user.id)
    bot.jobs.check_admission(interaction.user.id)
    await interaction.response.defer(thinking=True)
    status = await interaction.original_response()
    reply = ReplyTarget(
        application_id=interaction.application_id,
        token=interaction.token,
        token_expires_at=interaction.expires_at,
        status_message_id=status.id,
        upload_limit=interaction.filesize_limit,
    )
    request = JobRequest(
        command=command,
        params=params,
        guild_id=guild_id,
        channel_id=interaction.channel_id or status.channel.id,
        user_id=interaction.user.id,
        language=language_of(interaction),
        reply=reply,
    )
    return await bot.jobs.submit(request)
