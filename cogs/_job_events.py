"""How a job shows itself in Discord: its status message while it waits and runs, then its image.

Edits go through the interaction's webhook while its token lives (they work without the Interaction
object, so after a restart too); after that, through the channel, mentioning only the requester.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from cogs._approval import approval_view
from cogs._buttons import result_view, status_view
from cogs._modlog import ModLog, job_embed
from cogs._render import result_embed, result_file
from cogs._replies import NO_PINGS, mentioning_only, token_rejected
from core.i18n import t
from core.images import DownloadedImage
from core.job import DeliveryError, Job, JobState
from core.quota import QuotaStatus, utc_now
from core.throttle import EditThrottle

if TYPE_CHECKING:
    from bot import DoubaoBot

log = logging.getLogger(__name__)

T = TypeVar("T")
RECOVERY_HISTORY = 50  # recent channel messages searched for a late delivery after a crash


def _carries(message: discord.Message, job_id: str) -> bool:
    """The message shows the job's image: an attachment, and the result buttons of that job."""
    result_button = f"job:reroll:{job_id}"
    return bool(message.attachments) and any(
        getattr(item, "custom_id", None) == result_button
        for row in message.components
        if isinstance(row, discord.ActionRow)
        for item in row.children
    )


class DiscordJobEvents:
    def __init__(self, bot: DoubaoBot, modlog: ModLog, *, edit_interval: float) -> None:
        self.bot = bot
        self.modlog = modlog
        self.throttle = EditThrottle(edit_interval, turn=bot.acknowledgements.later)

    # -- JobEvents ------------------------------------------------------------------------------

    def progress(self, job: Job, position: int | None) -> None:
        state = job.state
        self.throttle.submit(job.id, lambda: self._show_progress(job, state, position))

    async def _show_progress(self, job: Job, state: JobState, position: int | None) -> None:
        """Built only when sent: most progress in a long queue is superseded before its turn."""
        if state is JobState.PENDING:
            content, view = t(job.language, "status.pending"), None
        elif position is None:
            content, view = t(job.language, "status.running"), None
        else:
            content, view = t(job.language, "status.queued", position=position), status_view(job)
        await self._edit_status(job, content=content, view=view)

    def stop_progress(self, job: Job) -> None:
        self.throttle.drop(job.id)

    async def deliver(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        try:
            message_id = await self.throttle.finish(job.id, lambda: self._post_result(job, image, quota))
        except discord.HTTPException as error:
            raise DeliveryError(f"Discord refused the image: {error.status} {error.code}") from error
        self.modlog.later(self._log(replace(job, state=JobState.DONE, result_message_id=message_id), cost=1))
        return message_id

    async def finished(self, job: Job) -> None:
        content = t(job.language, job.outcome_key or "error.unexpected", reason=job.note or "-")
        await self.throttle.finish(job.id, lambda: self._tell(job, content))
        self.modlog.later(self._log(job, cost=0))

    async def _log(self, job: Job, *, cost: int) -> None:
        """The mod log is a record, not part of the job: its failure never fails a delivery."""
        try:
            await self.modlog.job(job, cost=cost)
        except Exception:
            log.warning("could not log job %s in the mod log", job.id, exc_info=True)

    async def awaiting_approval(self, job: Job) -> int | None:
        language = await self.modlog.server_language(job.guild_id)
        embed = job_embed(job, language)
        embed.title = t(language, "approval.request_title", command=job.command.value)
        if job.approval_expires_at:
            embed.add_field(
                name=t(language, "approval.expires"), value=discord.utils.format_dt(job.approval_expires_at, "R")
            )
        return await self.modlog.post(job.guild_id, embed, approval_view(job, language))

    async def approval_decided(self, job: Job, decision: str, moderator_id: int | None) -> None:
        policy = await self.bot.policy.get(job.guild_id)
        if policy.mod_log_channel_id is None or job.approval_message_id is None:
            return
        language = await self.modlog.server_language(job.guild_id)
        who = f"<@{moderator_id}>" if moderator_id else "-"
        text = t(language, f"approval.marked_{decision}", moderator=who, reason=job.note or "-")
        message = self.bot.get_partial_messageable(policy.mod_log_channel_id).get_partial_message(
            job.approval_message_id
        )
        try:
            await message.edit(content=text, view=None, allowed_mentions=NO_PINGS)
        except discord.HTTPException as error:
            log.warning("could not mark the approval request of job %s: %s", job.id, error)

    async def posted_result(self, job: Job) -> int | None:
        """The status message with the image on it, or a late delivery in the channel carrying the job's buttons."""
        channel = self.bot.get_partial_messageable(job.channel_id)
        status_id = job.reply.status_message_id
        if status_id is not None:
            status = await self._via_webhook(job, lambda webhook: webhook.fetch_message(status_id))
            try:
                status = status or await channel.fetch_message(status_id)
            except discord.HTTPException as error:
                log.info("could not read the status message of job %s: %s", job.id, error)
            if status is not None and status.attachments:
                return status.id
        try:
            async for message in channel.history(limit=RECOVERY_HISTORY):
                if self.bot.user and message.author.id == self.bot.user.id and _carries(message, job.id):
                    return message.id
        except discord.HTTPException as error:
            log.info("could not read the channel of job %s: %s", job.id, error)
        return None

    # -- the three ways to write ----------------------------------------------------------------

    async def _via_webhook(self, job: Job, action: Callable[[discord.Webhook], Awaitable[T]]) -> T | None:
        """Runs `action` on the interaction's webhook; None when the token is gone (or turns out to be)."""
        reply = job.reply
        if not reply.token_usable(utc_now()) or reply.application_id is None or reply.token is None:
            return None
        webhook = discord.Webhook.partial(reply.application_id, reply.token, client=self.bot)
        try:
            return await action(webhook)
        except discord.HTTPException as error:
            if not token_rejected(error):
                raise
            log.info("the interaction token of job %s was refused; writing to the channel", job.id)
            return None

    async def _edit_status(self, job: Job, **fields: Any) -> None:
        message_id = job.reply.status_message_id
        if message_id is None:
            return

        async def edit(webhook: discord.Webhook) -> bool:
            await webhook.edit_message(message_id, allowed_mentions=NO_PINGS, **fields)
            return True

        if await self._via_webhook(job, edit) is None:
            # Late status edits are best effort: the bot may edit its own message through the channel.
            message = self.bot.get_partial_messageable(job.channel_id).get_partial_message(message_id)
            try:
                await message.edit(allowed_mentions=NO_PINGS, **fields)
            except discord.HTTPException as error:
                log.debug("could not edit the status of job %s: %s", job.id, error)

    async def _post_result(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        embed = result_embed(job, image, quota)
        view = result_view(job)
        message_id = job.reply.status_message_id

        async def edit(webhook: discord.Webhook) -> int:
            assert message_id is not None
            message = await webhook.edit_message(
                message_id,
                content=None,
                embed=embed,
                attachments=[result_file(image)],
                view=view,
                allowed_mentions=NO_PINGS,
            )
            return message.id

        if message_id is not None and (posted := await self._via_webhook(job, edit)) is not None:
            return posted
        channel = self.bot.get_partial_messageable(job.channel_id)
        message = await channel.send(
            t(job.language, "result.late_delivery", mention=f"<@{job.user_id}>"),
            embed=embed,
            file=result_file(image),
            view=view,
            allowed_mentions=mentioning_only(job.user_id),
        )
        if message_id is not None:
            await self._retire_status(job, message_id)
        return message.id

    async def _tell(self, job: Job, content: str) -> None:
        async def edit(webhook: discord.Webhook) -> bool:
            assert job.reply.status_message_id is not None
            await webhook.edit_message(
                job.reply.status_message_id,
                content=content,
                embed=None,
                attachments=[],
                view=None,
                allowed_mentions=NO_PINGS,
            )
            return True

        if job.reply.status_message_id is not None:
            try:
                if await self._via_webhook(job, edit):
                    return
            except discord.HTTPException as error:
                # Whatever Discord said, the requester must hear how the job ended: try the channel.
                log.warning("could not edit the status of job %s (%s); writing to the channel", job.id, error)
        channel = self.bot.get_partial_messageable(job.channel_id)
        await channel.send(f"<@{job.user_id}> {content}", allowed_mentions=mentioning_only(job.user_id))
        if job.reply.status_message_id is not None:
            await self._retire_status(job, job.reply.status_message_id)

    async def _retire_status(self, job: Job, message_id: int) -> None:
        """The status message no longer tells the truth once the answer went elsewhere: remove it."""
        message = self.bot.get_partial_messageable(job.channel_id).get_partial_message(message_id)
        try:
            await message.delete()
        except discord.HTTPException as error:
            log.debug("could not remove the status message of job %s: %s", job.id, error)
