"""/draw and /character: turn the options into a request, defer at once, then post the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from cogs._guards import require_guild
from cogs._submit import start_job
from core.params import (
    DEFAULT_MODEL,
    DEFAULT_SIZE,
    MAX_PROMPT_CHARS,
    MODELS,
    SCALE_RANGE,
    SEED_MAX,
    SIZE_PRESETS,
    STEPS_RANGE,
    STRENGTH_RANGE,
    STYLES,
    CharacterParams,
    Command,
    DrawParams,
    Model,
    Style,
    check_choice,
    check_range,
    check_reference,
    clean_prompt,
    size_for,
)

if TYPE_CHECKING:
    from bot import DoubaoBot

SIZE_CHOICES = [Choice(name=f"{ratio} ({w}×{h})", value=ratio) for ratio, (w, h) in SIZE_PRESETS.items()]

Prompt = Range[str, 1, MAX_PROMPT_CHARS]
Seed = Range[int, 0, SEED_MAX]
Scale = Range[float, SCALE_RANGE[0], SCALE_RANGE[1]]
Steps = Range[int, STEPS_RANGE[0], STEPS_RANGE[1]]
Strength = Range[float, STRENGTH_RANGE[0], STRENGTH_RANGE[1]]


def check_common(seed: int | None, scale: float | None, steps: int | None) -> None:
    check_range("seed", seed, 0, SEED_MAX)
    check_range("scale", scale, *SCALE_RANGE)
    check_range("steps", steps, *STEPS_RANGE)


class Generate(commands.Cog):
    def __init__(self, bot: DoubaoBot) -> None:
        self.bot = bot

    @app_commands.command(name="draw", description="Draw an image from a text prompt")
    @app_commands.describe(
        prompt="What to draw (English or Chinese; put text to write in the image in quotes)",
        size="Aspect ratio and size",
        model="Model version",
        style="Standard or aesthetic rendering",
        seed="Seed for a repeatable result (random when left out)",
        scale="How closely to follow the prompt (1-10, default 3.5)",
        steps="Sampling steps (1-50, default 25)",
        upscale="Upscale the result (slower)",
        rewrite_prompt="Let the model expand the prompt first (default on)",
    )
    @app_commands.choices(size=SIZE_CHOICES)
    async def draw(
        self,
        interaction: discord.Interaction[DoubaoBot],
        prompt: Prompt,
        size: str = DEFAULT_SIZE,
        model: Model = DEFAULT_MODEL,
        style: Style | None = None,
        seed: Seed | None = None,
        scale: Scale = DrawParams.scale,
        steps: Steps = DrawParams.steps,
        upscale: bool = False,
        rewrite_prompt: bool = True,
    ) -> None:
        require_guild(interaction)
        check_common(seed, scale, steps)
        check_choice("model", model, MODELS)
        check_choice("style", style, STYLES)
        width, height = size_for(size)
        params = DrawParams(
            prompt=clean_prompt(prompt),
            width=width,
            height=height,
            model_version=model,
            style=style,
            seed=-1 if seed is None else seed,  # -1: a random seed, picked when the job is submitted
            scale=scale,
            steps=steps,
            upscale=upscale,
            rewrite_prompt=rewrite_prompt,
        )
        await start_job(interaction, Command.DRAW, params)

    @app_commands.command(name="character", description="Draw an image that keeps the subject or face of a reference")
    @app_commands.describe(
        prompt="What to draw with the subject of the reference",
        reference="A PNG, JPEG or WEBP image of the subject",
        size="Aspect ratio and size",
        subject_strength="How closely to keep the subject's appearance (0-1, default 0.7)",
        face_strength="How closely to keep the face (0-1, default 0.36)",
        seed="Seed for a repeatable result (random when left out)",
        scale="How closely to follow the prompt (1-10, default 3.5)",
        steps="Sampling steps (1-50, default 9)",
        upscale="Upscale the result (slower)",
    )
    @app_commands.choices(size=SIZE_CHOICES)
    async def character(
        self,
        interaction: discord.Interaction[DoubaoBot],
        prompt: Prompt,
        reference: discord.Attachment,
        size: str = DEFAULT_SIZE,
        subject_strength: Strength = CharacterParams.subject_strength,
        face_strength: Strength = CharacterParams.face_strength,
        seed: Seed | None = None,
        scale: Scale = CharacterParams.scale,
        steps: Steps = CharacterParams.steps,
        upscale: bool = False,
    ) -> None:
        require_guild(interaction)
        check_common(seed, scale, steps)
        check_range("subject_strength", subject_strength, *STRENGTH_RANGE)
        check_range("face_strength", face_strength, *STRENGTH_RANGE)
        cleaned = clean_prompt(prompt)
        check_reference(
            content_type=reference.content_type,
            width=reference.width,
            height=reference.height,
            size=reference.size,
            max_bytes=self.bot.settings.max_reference_bytes,
        )
        width, height = size_for(size)
        params = CharacterParams(
            prompt=cleaned,
            reference_url=reference.url,
            width=width,
            height=height,
            subject_strength=subject_strength,
            face_strength=face_strength,
            seed=-1 if seed is None else seed,  # -1: a random seed, picked when the job is submitted
            scale=scale,
            steps=steps,
            upscale=upscale,
        )
        await start_job(interaction, Command.CHARACTER, params)


async def setup(bot: DoubaoBot) -> None:
    await bot.add_cog(Generate(bot))
