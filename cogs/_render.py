"""What a finished image looks like in Discord."""

from __future__ import annotations

import io

import discord

from cogs._replies import text
from core.jobs import GenerationResult
from core.params import Command, DrawParams

PROMPT_SHOWN_CHARS = 1000  # an embed description holds 4096; keep the message compact


def trim(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def result_embed(interaction: discord.Interaction, result: GenerationResult) -> discord.Embed:
    params = result.params
    embed = discord.Embed(
        description=trim(params.prompt, PROMPT_SHOWN_CHARS), colour=discord.Colour.blurple()
    )
    embed.add_field(name=text(interaction, "result.requested_by"), value=f"<@{result.request.user_id}>")
    embed.add_field(name=text(interaction, "result.size"), value=f"{params.width}×{params.height}")
    embed.add_field(name=text(interaction, "result.seed"), value=str(params.seed))
    if isinstance(params, DrawParams):
        embed.add_field(name=text(interaction, "result.model"), value=params.model_version)
    embed.add_field(
        name=text(interaction, "result.remaining"),
        value=text(
            interaction, "result.remaining_value", remaining=result.quota.remaining, limit=result.quota.limit
        ),
    )
    footer = "result.footer_draw" if result.request.command is Command.DRAW else "result.footer_character"
    embed.set_footer(text=text(interaction, footer))
    embed.set_image(url=f"attachment://{result.image.filename}")
    return embed


def result_file(result: GenerationResult) -> discord.File:
    return discord.File(io.BytesIO(result.image.data), filename=result.image.filename)
