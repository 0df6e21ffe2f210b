"""Job buttons that survive restarts, and /history."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs._approval import ApprovalButton
from cogs._buttons import JobButton
from cogs._guards import require_guild
from cogs._replies import language_of, reply, trim
from core.i18n import t
from core.job import Job, JobState

if TYPE_CHECKING:
    from bot import DoubaoBot

HISTORY_SIZE = 10
STATE_ICONS = {
    JobState.PENDING: "🛡️",
    JobState.QUEUED: "⏳",
    JobState.RUNNING: "🎨",
    JobState.DELIVERING: "📤",
    JobState.DONE: "✅",
    JobState.FAILED: "⚠️",
    JobState.CANCELLED: "✖️",
}


def history_line(job: Job, language: str) -> str:
    when = discord.utils.format_dt(job.created_at, "R") if job.created_at else ""
    message_id = job.result_message_id or job.reply.status_message_id
    link = f" · https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id}" if message_id else ""
    prompt = discord.utils.escape_markdown(trim(job.params.prompt, 60))
    state = t(language, f"state.{job.state.value}")
    return f"{STATE_ICONS[job.state]} {state} · {when} · /{job.command.value} · {prompt}{link}"


class Jobs(commands.Cog):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton, ApprovalButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton, ApprovalButton)

    @app_commands.command(name="history", description="Your last 10 generations in this server")
    async def history(self, interaction: discord.Interaction) -> None:
        guild_id = require_guild(interaction)
        language = language_of(interaction)
        jobs = await self.bot.jobs.recent(guild_id=guild_id, user_id=interaction.user.id, limit=HISTORY_SIZE)
        if not jobs:
            await reply(interaction, t(language, "history.empty"))
            return
        lines = "\n".join(history_line(job, language) for job in jobs)
        await reply(interaction, f"{t(language, 'history.title')}\n{lines}")


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Jobs(bot))
