"""/settings features: /character and upscaling on or off, steps and size caps, the server's watermark."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from cogs.settings._common import SettingsCommands, on_off
from core.config import WATERMARK_POSITIONS, Watermark
from core.params import SIDE_RANGE, STEPS_RANGE

POSITION_CHOICES = [Choice(name=name, value=value) for name, value in WATERMARK_POSITIONS.items()]


class FeatureCommands(SettingsCommands):
    features = app_commands.Group(name="features", description="What members may ask for")

    @features.command(name="character", description="Allow /character (it takes photos of people)")
    @app_commands.describe(enabled="On or off")
    async def features_character(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._update(interaction, character_enabled=enabled)
        await self._done(interaction, "settings.character", state=on_off(interaction, enabled))

    @features.command(name="upscale", description="Allow upscaling (it costs more)")
    @app_commands.describe(enabled="On or off")
    async def features_upscale(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._update(interaction, upscale_enabled=enabled)
        await self._done(interaction, "settings.upscale", state=on_off(interaction, enabled))

    @features.command(name="max-steps", description="The most sampling steps members may ask for")
    @app_commands.describe(steps="Most sampling steps (1-50)")
    async def features_max_steps(
        self, interaction: discord.Interaction, steps: Range[int, STEPS_RANGE[0], STEPS_RANGE[1]]
    ) -> None:
        await self._update(interaction, max_steps=steps)
        await self._done(interaction, "settings.max_steps", steps=steps)

    @features.command(name="max-size", description="The longest side of an image in pixels (sizes are scaled down)")
    @app_commands.describe(pixels="Longest side in pixels (256-768)")
    async def features_max_size(
        self, interaction: discord.Interaction, pixels: Range[int, SIDE_RANGE[0], SIDE_RANGE[1]]
    ) -> None:
        await self._update(interaction, max_side=pixels)
        await self._done(interaction, "settings.max_size", pixels=pixels)

    @features.command(name="watermark", description="The visible watermark on this server's images")
    @app_commands.choices(position=POSITION_CHOICES)
    @app_commands.rename(text_="text")
    @app_commands.describe(
        enabled="On or off", text_="Watermark text (up to 50 characters)", position="Corner of the image"
    )
    async def features_watermark(
        self,
        interaction: discord.Interaction,
        enabled: bool,
        text_: app_commands.Range[str, 0, 50] | None = None,
        position: int = 0,
    ) -> None:
        mark = Watermark(enabled=enabled, text=(text_ or "").strip(), position=position)
        await self._update(interaction, watermark=mark)
        await self._done(interaction, "settings.watermark", state=on_off(interaction, enabled), text=mark.text or "-")
