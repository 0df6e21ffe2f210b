"""What jobs look like in Discord: the result embed, the status lines, the details."""

from __future__ import annotations

import io

import discord

from cogs._replies import text, trim
from core.i18n import t
from core.images import DownloadedImage
from core.job import Job
from core.params import CharacterParams, DrawParams
from core.quota import QuotaStatus

PROMPT_SHOWN_CHARS = 1000  # an embed description holds 4096; keep the message compact


def result_embed(job: Job, image: DownloadedImage, quota: QuotaStatus) -> discord.Embed:
    params, language = job.params, job.language
    embed = discord.Embed(description=trim(params.prompt, PROMPT_SHOWN_CHARS), colour=discord.Colour.blurple())
    embed.add_field(name=t(language, "result.requested_by"), value=f"<@{job.user_id}>")
    embed.add_field(name=t(language, "result.size"), value=f"{params.width}×{params.height}")
    embed.add_field(name=t(language, "result.seed"), value=str(params.seed))
    if isinstance(params, DrawParams):
        embed.add_field(name=t(language, "result.model"), value=params.model_version)
    embed.add_field(
        name=t(language, "result.remaining"),
        value=t(language, "result.remaining_value", remaining=quota.remaining, limit=quota.limit),
    )
    embed.set_footer(text=t(language, f"result.footer_{job.command.value}"))
    embed.set_image(url=f"attachment://{image.filename}")
    return embed


def result_file(image: DownloadedImage) -> discord.File:
    return discord.File(io.BytesIO(image.data), filename=image.filename)


def quota_text(interaction: discord.Interaction, status: QuotaStatus, key: str, **extra: object) -> str:
    """A member's limit, where it comes from, what they used and what is left."""
    origin = status.origin
    source = "-"
    if origin is not None:
        source = text(interaction, f"quota.source_{origin.source}", role=f"<@&{origin.role_id}>")
        if origin.granted:
            source += " " + text(interaction, "quota.granted", amount=origin.granted)
    return text(
        interaction,
        key,
        used=status.used,
        limit=status.limit,
        remaining=status.remaining,
        source=source,
        resets=status.resets_at,
        **extra,
    )


def details_embed(job: Job, language: str) -> discord.Embed:
    """Everything about a job: the full prompt and every parameter that was sent."""
    params = job.params
    embed = discord.Embed(title=t(language, "details.title"), description=params.prompt)
    rows: list[tuple[str, object]] = [
        ("details.command", f"/{job.command.value}"),
        ("details.state", t(language, f"state.{job.state.value}")),
        ("result.size", f"{params.width}×{params.height}"),
        ("result.seed", params.seed),
        ("details.scale", params.scale),
        ("details.steps", params.steps),
        ("details.upscale", t(language, "details.yes" if params.upscale else "details.no")),
    ]
    if isinstance(params, DrawParams):
        rows += [
            ("result.model", params.model_version),
            ("details.style", params.style or "-"),
            ("details.rewrite_prompt", t(language, "details.yes" if params.rewrite_prompt else "details.no")),
        ]
    if isinstance(params, CharacterParams):
        rows += [
            ("details.subject_strength", params.subject_strength),
            ("details.face_strength", params.face_strength),
        ]
    for key, value in rows:
        embed.add_field(name=t(language, key), value=str(value))
    embed.set_footer(text=t(language, "details.job_id", job_id=job.id))
    return embed
