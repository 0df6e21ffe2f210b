"""Localised command names, descriptions, options and choices (discord.py's `app_commands.Translator`).

English is the default text in the code; other languages come from `core/locales/commands.<language>.json`,
keyed by where the string sits (see `command_key`), so no decorator needs to name a key.
"""

from __future__ import annotations

import json
import logging
from functools import cache

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from core.i18n import LOCALES_DIR

log = logging.getLogger(__name__)

# Discord locales served, and the catalogue each one reads. zh-TW is left to fall back to the English default
# rather than shown Simplified characters in its command list.
COMMAND_LANGUAGES = {discord.Locale.chinese: "zh-CN"}


@cache
def command_catalogue(language: str) -> dict[str, str]:
    with (LOCALES_DIR / f"commands.{language}.json").open(encoding="utf-8") as file:
        return json.load(file)


def command_key(context: app_commands.TranslationContextTypes) -> str | None:
    """`draw.description`, `settings quota role.limit.name`, `choice.16:9`, ..."""
    if context.location is Where.command_name or context.location is Where.group_name:
        return f"{context.data.qualified_name}.name"
    if context.location is Where.command_description or context.location is Where.group_description:
        return f"{context.data.qualified_name}.description"
    if context.location is Where.parameter_name:
        return f"{context.data.command.qualified_name}.{context.data.name}.name"
    if context.location is Where.parameter_description:
        return f"{context.data.command.qualified_name}.{context.data.name}.description"
    if context.location is Where.choice_name:
        return f"choice.{context.data.value}"
    return None


class CatalogueTranslator(app_commands.Translator):
    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        language = COMMAND_LANGUAGES.get(locale)
        key = command_key(context)
        if language is None or key is None:
            return None
        translated = command_catalogue(language).get(key)
        if translated is None:
            log.warning("no %s translation for %s (%r)", language, key, string.message)
        return translated
