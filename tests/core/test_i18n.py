"""The catalogues: the same keys and placeholders in every language, and the language picked for a user."""

from __future__ import annotations

import pytest

from core.i18n import LANGUAGES, catalogue, language_for, placeholders, t


def test_every_language_has_the_same_keys() -> None:
    english = set(catalogue("en"))
    for language in LANGUAGES:
        assert set(catalogue(language)) == english, language


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_match_english(language: str) -> None:
    for key, english_text in catalogue("en").items():
        assert placeholders(catalogue(language)[key]) == placeholders(english_text), key


def test_placeholders_are_named_never_positional() -> None:
    for language in LANGUAGES:
        for key, value in catalogue(language).items():
            assert all(not name.isdigit() for name in placeholders(value)), (language, key)
            assert "{}" not in value, (language, key)


@pytest.mark.parametrize(
    ("locales", "expected"),
    [
        (("zh-CN",), "zh-CN"),
        (("zh-TW",), "zh-CN"),
        (("en-US",), "en"),
        (("fr", "zh-CN"), "zh-CN"),
        (("fr", None), "en"),
        ((None, "en-GB"), "en"),
    ],
)
def test_language_for(locales, expected) -> None:
    assert language_for(*locales) == expected


def test_text_is_filled_in_each_language() -> None:
    assert "800" in t("en", "error.prompt_too_long", limit=800, length=900)
    assert "800" in t("zh-CN", "error.prompt_too_long", limit=800, length=900)
    assert t("zh-CN", "error.prompt_empty") != t("en", "error.prompt_empty")
