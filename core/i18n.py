"""All user-facing text, one JSON catalogue per language in core/locales/, with named placeholders."""

from __future__ import annotations

import json
import logging
import string
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "zh-CN")


def language_for(*locales: str | None) -> str:
    """The first supported language among Discord locales such as 'zh-CN', 'zh-TW', 'en-US'; else English."""
    for locale in locales:
        if locale and (language := _served(locale)):
            return language
    return DEFAULT_LANGUAGE


def is_served(locale: str | None) -> bool:
    """Whether the bot speaks this Discord locale (so no fallback needs to be looked up)."""
    return bool(locale) and _served(locale or "") is not None


def _served(locale: str) -> str | None:
    if locale.startswith("zh"):
        return "zh-CN"
    if locale.startswith("en"):
        return "en"
    return None


@cache
def catalogue(language: str) -> dict[str, str]:
    with (LOCALES_DIR / f"{language}.json").open(encoding="utf-8") as file:
        return json.load(file)


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def t(language: str, key: str, /, **params: Any) -> str:
    """The text for `key` in `language` (falling back to English), with its named placeholders filled."""
    text = catalogue(language).get(key) or catalogue(DEFAULT_LANGUAGE).get(key)
    if text is None:
        log.error("missing catalogue key %r", key)
        return key
    try:
        return text.format_map(params)
    except (KeyError, IndexError, ValueError):
        log.exception("catalogue key %r in %s has placeholders the code did not fill", key, language)
        return text
