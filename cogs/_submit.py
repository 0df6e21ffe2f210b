"""Turning an interaction (a command, a button, a modal) into a queued job."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import discord

from cogs._guards import require_guild
from cogs._replies import language_of
from core.errors import UserFacingError
from core.jobs import Job, JobRequest, ReplyTarget
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

    The server's policy, the quota and the queue limits are checked first, so a refusal is private and costs
    nothing. The deferred "thinking" message becomes the job's status message.
    """
    bot = interaction.client
    who = requester_of(interaction)
    missing = missing_channel_permissions(interaction)
    if missing:
        raise UserFacingError("error.missing_permissions", permissions=", ".join(missing))
    last = await bot.store.last_request_at(guild_id=who.guild_id, user_id=who.user_id)
    try:
        admission = await bot.policy.admit(
            who, params, last_request_at=datetime.fromisoformat(last) if last else None, now=utc_now()
        )
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
    await bot.quota.check(guild_id=who.guild_id, user_id=who.user_id, role_ids=who.role_ids)
    bot.jobs.check_admission(who.user_id)
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
        params=admission.params,
        guild_id=who.guild_id,
        channel_id=who.channel_id or status.channel.id,
        user_id=who.user_id,
        language=language_of(interaction),
        reply=reply,
        role_ids=who.role_ids,
        needs_approval=admission.needs_approval,
        approval_timeout=admission.approval_timeout,
    )
    return await bot.jobs.submit(request)
