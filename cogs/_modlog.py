"""The mod log: a channel where each server sees every job, refusal and settings change, in its language."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord

from cogs._replies import NO_PINGS, trim
from core.i18n import language_for, t
from core.job import Job
from core.params import params_to_dict
from core.policy import GuildPolicy

if TYPE_CHECKING:
    from bot import DoubaoBot

log = logging.getLogger(__name__)

COLOURS = {"done": discord.Colour.green(), "refused": discord.Colour.orange(), "settings": discord.Colour.blurple()}


class ModLog:
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot
        self._background: set[asyncio.Task[None]] = set()

    def later(self, entry: Coroutine[Any, Any, None]) -> None:
        """Writes an entry without making the caller wait (kept referenced until it is done)."""
        task = asyncio.create_task(entry, name="mod-log")
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("a mod-log entry failed", exc_info=error)

    async def server_language(self, guild_id: int) -> str:
        """The server's configured language, else its Discord locale, else English."""
        return self._language(guild_id, await self.bot.policy.get(guild_id))

    def _language(self, guild_id: int, policy: GuildPolicy) -> str:
        guild = self.bot.get_guild(guild_id)
        return language_for(policy.language, guild.preferred_locale.value if guild else None)

    async def _destination(self, guild_id: int) -> tuple[int, str] | None:
        """The server's mod-log channel and language (one read), or None when it keeps no mod log."""
        policy = await self.bot.policy.get(guild_id)
        if policy.mod_log_channel_id is None:
            return None
        return policy.mod_log_channel_id, self._language(guild_id, policy)

    async def post(self, guild_id: int, embed: discord.Embed, view: discord.ui.View | None = None) -> int | None:
        """Posts in the server's mod-log channel; None when it has none or Discord refuses (logged)."""
        destination = await self._destination(guild_id)
        if destination is None:
            return None
        return await self._send(guild_id, destination[0], embed, view)

    async def _send(
        self, guild_id: int, channel_id: int, embed: discord.Embed, view: discord.ui.View | None = None
    ) -> int | None:
        channel = self.bot.get_partial_messageable(channel_id, guild_id=guild_id)
        try:
            message = await channel.send(embed=embed, view=view or discord.utils.MISSING, allowed_mentions=NO_PINGS)
        except discord.HTTPException as error:
            log.warning("could not write to the mod log of guild %s: %s", guild_id, error)
            return None
        return message.id

    async def job(self, job: Job, *, cost: int) -> None:
        """Who, where, what, with which parameters, the outcome with its link, the job id and the cost."""
        destination = await self._destination(job.guild_id)
        if destination is None:
            return
        channel_id, language = destination
        embed = job_embed(job, language)
        embed.colour = COLOURS["done"] if job.state.value == "done" else COLOURS["refused"]
        embed.add_field(name=t(language, "modlog.outcome"), value=t(language, f"state.{job.state.value}"))
        if job.outcome_key:
            reason = t(language, job.outcome_key, reason=job.note or "-")
            embed.add_field(name=t(language, "modlog.reason"), value=trim(reason, 1000), inline=False)
        if job.result_message_id:
            link = f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.result_message_id}"
            embed.add_field(name=t(language, "modlog.result"), value=link, inline=False)
        embed.add_field(name=t(language, "modlog.cost"), value=str(cost))
        await self._send(job.guild_id, channel_id, embed)

    async def refusal(
        self, guild_id: int, *, user_id: int, channel_id: int, prompt: str, reason_key: str, **details: Any
    ) -> None:
        destination = await self._destination(guild_id)
        if destination is None:
            return
        channel_id, language = destination
        embed = discord.Embed(title=t(language, "modlog.refusal_title"), colour=COLOURS["refused"])
        embed.add_field(name=t(language, "modlog.who"), value=f"<@{user_id}>")
        embed.add_field(name=t(language, "modlog.where"), value=f"<#{channel_id}>")
        embed.add_field(name=t(language, "modlog.reason"), value=t(language, reason_key, **details), inline=False)
        embed.add_field(name=t(language, "modlog.prompt"), value=trim(prompt, 1000), inline=False)
        await self._send(guild_id, channel_id, embed)

    async def change(self, guild_id: int, *, admin_id: int, what: str) -> None:
        destination = await self._destination(guild_id)
        if destination is None:
            return
        channel_id, language = destination
        embed = discord.Embed(title=t(language, "modlog.change_title"), description=what, colour=COLOURS["settings"])
        embed.add_field(name=t(language, "modlog.who"), value=f"<@{admin_id}>")
        await self._send(guild_id, channel_id, embed)


def job_embed(job: Job, language: str) -> discord.Embed:
    params = params_to_dict(job.params)
    shown = ", ".join(
        f"{name}={value}" for name, value in params.items() if name not in ("prompt", "reference_url", "watermark")
    )
    embed = discord.Embed(title=f"/{job.command.value}", description=trim(job.params.prompt, 1500))
    embed.add_field(name=t(language, "modlog.who"), value=f"<@{job.user_id}>")
    embed.add_field(name=t(language, "modlog.where"), value=f"<#{job.channel_id}>")
    embed.add_field(name=t(language, "modlog.parameters"), value=trim(shown, 1000), inline=False)
    embed.set_footer(text=t(language, "details.job_id", job_id=job.id))
    return embed
