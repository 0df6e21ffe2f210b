"""Turning an interaction (a command, a button, a modal) into a queued job."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from cogs._guards import require_guild
from cogs._replies import language_of
from core.admission import Admitted
from core.errors import UserFacingError
from core.job import Job, JobRequest, ReplyTarget
from core.params import Command, Params
from core.policy import PolicyRefusal, Requester
from core.quota import utc_now

if TYPE_CHECKING:
    from bot import DoubaoBot


# A job's answer may come after the 15-minute interaction token, through the channel, which needs these.
CHANNEL_PERMISSIONS = ("view_channel", "send_messages", "embed_links", "attach_files", "read_message_history")


def missing_channel_permissions(interaction: discord.Interaction) -> list[str]:
    permissions = interaction.app_permissions
    return [name for name in CHANNEL_PERMISSIONS if not getattr(permissions, name)]


def requester_of(interaction: discord.Interaction) -> Requester:
    roles = getattr(interaction.user, "roles", ())
    return Requester(
        guild_id=require_guild(interaction),
        channel_id=interaction.channel_id or 0,
        user_id=interaction.user.id,
        role_ids=frozenset(role.id for role in roles),
    )


async def start_job(interaction: discord.Interaction[DoubaoBot], command: Command, params: Params) -> Job:
    """Checks what can be said privately, defers well inside Discord's 3 s, then queues the job.

    The server's policy, the quota and the queue limits are checked first (one read of the store), so a refusal
    is private and costs nothing. The deferred "thinking" message becomes the job's status message.
    """
    bot = interaction.client
    who = requester_of(interaction)
    async with bot.acknowledgements.acknowledging():
        admitted = await _admit(interaction, who, params)
        callback = await interaction.response.defer(thinking=True)
    # Creating the job can wait for the requests still waiting for their deferral: this one has its own.
    async with bot.acknowledgements.later():
        return await _submit(interaction, command, who, admitted, callback)


async def _submit(
    interaction: discord.Interaction[DoubaoBot],
    command: Command,
    who: Requester,
    admitted: Admitted,
    callback: discord.InteractionCallbackResponse[DoubaoBot] | None,
) -> Job:
    bot = interaction.client
    status_id = callback.message_id if callback is not None else None
    if status_id is None:  # a Discord that did not say which message the deferral made
        status_id = (await interaction.original_response()).id
    reply = ReplyTarget(
        application_id=interaction.application_id,
        token=interaction.token,
        token_expires_at=interaction.expires_at,
        status_message_id=status_id,
        upload_limit=interaction.filesize_limit,
    )
    admission = admitted.admission
    request = JobRequest(
        command=command,
        params=admission.params,
        guild_id=who.guild_id,
        channel_id=who.channel_id,
        user_id=who.user_id,
        language=language_of(interaction),
        reply=reply,
        role_ids=who.role_ids,
        quota_limit=admitted.quota.limit,
        needs_approval=admission.needs_approval,
        approval_timeout=admission.approval_timeout,
    )
    return await bot.jobs.submit(request)


async def _admit(interaction: discord.Interaction[DoubaoBot], who: Requester, params: Params) -> Admitted:
    """The checks before the deferral: a refusal raises, and is answered privately."""
    bot = interaction.client
    missing = missing_channel_permissions(interaction)
    if missing:
        raise UserFacingError("error.missing_permissions", permissions=", ".join(missing))
    try:
        admitted = await bot.gate.admit(who, params, now=utc_now())
    except PolicyRefusal as refusal:
        if refusal.logged:
            # In the background: the member's answer must not wait for a busy mod-log channel.
            bot.modlog.later(
                bot.modlog.refusal(
                    who.guild_id,
                    user_id=who.user_id,
                    channel_id=who.channel_id,
                    prompt=params.prompt,
                    reason_key="modlog.refused_blocklist",
                    **refusal.params,
                )
            )
        raise
    interaction.extras.setdefault("server_language", admitted.policy.language)
    return admitted
