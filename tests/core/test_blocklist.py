"""The prompt blocklist: normalising, built-in terms and the evasions they must see through, custom entries."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from core.blocklist import (
    BUILTIN_TERMS,
    MAX_PATTERN_LENGTH,
    BlockEntry,
    Blocklist,
    InvalidPattern,
    normalize,
    squash,
    validate,
)

ZWSP = "\u200b"
SOFT_HYPHEN = "\u00ad"

INVISIBLES = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space / BOM
    "\u00ad",  # soft hyphen
    "\ufe0f",  # variation selector 16
    "\U000e0100",  # variation selector 17
    "\u034f",  # combining grapheme joiner
    "\u180e",  # Mongolian vowel separator
    "\u200e",  # left-to-right mark
    "\u202e",  # right-to-left override
    "\u3164",  # Hangul filler
    "\uffa0",  # half-width Hangul filler
    "\U000e0041",  # tag latin capital letter A
]


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def between(separator: str) -> Callable[[str], str]:
    return lambda text: separator.join(text)


def alternate_case(text: str) -> str:
    return "".join(ch.upper() if i % 2 else ch.lower() for i, ch in enumerate(text))


EVASIONS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "mixed case": alternate_case,
    "spaces": between(" "),
    "many spaces": between("   "),
    "tabs and newlines": between("\t\n"),
    "ideographic spaces": between("\u3000"),
    "dots": between("."),
    "hyphens": between("-"),
    "underscores": between("_"),
    "slashes and stars": between("/*"),
    "full width": full_width,
    "zero-width spaces": between(ZWSP),
    "zero-width joiners": between("\u200d"),
    "word joiners": between("\u2060"),
    "BOMs": between("\ufeff"),
    "soft hyphens": between(SOFT_HYPHEN),
    "variation selectors": between("\ufe0f"),
    "combining low lines": lambda text: "".join(ch + "\u0332" for ch in text),
    "full width, mixed case, zero-width": lambda text: between(ZWSP)(full_width(alternate_case(text))),
    "spaces and soft hyphens, upper": lambda text: between(" " + SOFT_HYPHEN)(text.upper()),
    "dots and full width": lambda text: full_width(between(".")(text)),
    "zero-width inside one word only": lambda text: text[:1] + ZWSP + text[1:],
}


# normalize and squash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＮｓＦｗ", "nsfw"),
        ("ｎｓｆｗ　ａｒｔ", "nsfw art"),
        ("Straße", "strasse"),
        ("  a \t\n\r b  ", "a b"),
        ("a\u00a0\u2003\u3000b", "a b"),
        (f"a {ZWSP} b", "a b"),
        ("ﬁne", "fine"),
        ("①②", "12"),
        ("色情", "色情"),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize("invisible", INVISIBLES)
def test_normalize_removes_invisible_characters(invisible: str) -> None:
    assert normalize(f"n{invisible}s{invisible * 3}fw") == "nsfw"
    assert normalize(invisible * 5) == ""


@pytest.mark.parametrize("text", ["Ａ  ｂ\u200bC", "ǰ\u0301", "ß ẞ ﬀ", "\ufdfa", "e\u200b\u0301", " ǅ "])
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n s f w", "nsfw"),
        ("n.s.f.w", "nsfw"),
        ("n_s_f_w", "nsfw"),
        ("n-s f/w!", "nsfw"),
        ("(N)[S]{F}<W>", "nsfw"),
        ("ｎ・ｓ・ｆ・ｗ", "nsfw"),
        (f"n{ZWSP}s{SOFT_HYPHEN}f w", "nsfw"),
        ("n̲s̲f̲w̲", "nsfw"),
        ("A1 b2 ★ ✓", "a1b2"),
        ("色 情。", "色情"),
        ("🍆 !!!", ""),
    ],
)
def test_squash(text: str, expected: str) -> None:
    assert squash(text) == expected


# Built-in terms


def test_builtin_terms_are_stored_normalized_and_valid() -> None:
    assert len(BUILTIN_TERMS) == len(set(BUILTIN_TERMS))
    for term in BUILTIN_TERMS:
        assert validate(BlockEntry(term)) == BlockEntry(term)


@pytest.mark.parametrize("term", BUILTIN_TERMS)
@pytest.mark.parametrize("template", ["{}", "a picture, {}, 4k", "{}!!", "(({}))", "draw {}"])
def test_builtin_term_caught_plainly(term: str, template: str) -> None:
    assert Blocklist().first_match(template.format(term)) == BlockEntry(term)


@pytest.mark.parametrize("term", BUILTIN_TERMS)
@pytest.mark.parametrize("evasion", EVASIONS.values(), ids=EVASIONS.keys())
def test_builtin_term_caught_through_evasion(term: str, evasion: Callable[[str], str]) -> None:
    disguised = evasion(term)
    assert Blocklist().first_match(f"a drawing of {disguised}, highly detailed") == BlockEntry(term)


@pytest.mark.parametrize(
    ("prompt", "term"),
    [
        ("pornographic art", "porn"),
        ("NSFWart", "nsfw"),
        ("nudes", "nude"),
        ("por nography", "porn"),
        ("hen tai style girls", "hentai"),
        ("a n i m e h e n t a i", "hentai"),
        ("lolita", "loli"),
        ("childporn", "child porn"),
        ("dismembered body", "dismember"),
        ("色情片", "色情"),
        ("Ｈｅｎｔａｉ\u200b漫画", "hentai"),
    ],
)
def test_builtin_term_caught_inside_a_word_or_spaced_from_a_word_edge(prompt: str, term: str) -> None:
    assert Blocklist().first_match(prompt) == BlockEntry(term)


@pytest.mark.parametrize(
    "prompt",
    [
        "a classic glass of water",
        "assassin's creed style poster",
        "halo lighting over a calm sea",
        "solo lighting, polo lime shirt",
        "a brass lamp ornament on a shelf",
        "vapor neon city at night",
        "a dog with an orange",
        "a hen in the farmyard",
        "a man in a Gore-Tex jacket",
        "a plate of nasi goreng",
        "a portrait of a snail on a leaf, naturalistic",
        "a sunset over the snowy mountains",
        "一个女孩在公园里玩",
        "红色的情人节卡片",
        "裸露的岩石和蓝天",
        "可爱的小猫",
        "",
    ],
)
def test_innocent_prompt_not_flagged(prompt: str) -> None:
    assert Blocklist().first_match(prompt) is None


@pytest.mark.parametrize(
    ("prompt", "term"),
    [
        ("a nude-coloured dress", "nude"),
        ("a naked cake with berries", "naked"),
        ("a denuded hillside", "nude"),
        ("具有地方特色情调的咖啡馆", "色情"),
        ("一个年幼女孩在放风筝", "幼女"),
        ("一杯血腥玛丽鸡尾酒", "血腥"),
    ],
)
def test_known_false_positives_of_the_builtin_terms(prompt: str, term: str) -> None:
    assert Blocklist().first_match(prompt) == BlockEntry(term)
    assert Blocklist(include_builtin=False).first_match(prompt) is None


def test_include_builtin_false_turns_the_builtin_terms_off_but_keeps_custom_entries() -> None:
    blocklist = Blocklist([BlockEntry("red panda"), BlockEntry("k[i1]tten", is_regex=True)], include_builtin=False)
    assert blocklist.first_match("nsfw porn hentai 色情") is None
    assert blocklist.first_match("a RED PANDA") == BlockEntry("red panda")
    assert blocklist.first_match("a k1tten") == BlockEntry("k[i1]tten", is_regex=True)
    assert Blocklist().first_match("nsfw") == BlockEntry("nsfw")


def test_custom_entries_come_before_the_builtin_terms() -> None:
    blocklist = Blocklist([BlockEntry("nsfw art")])
    assert blocklist.first_match("NSFW art") == BlockEntry("nsfw art")
    assert blocklist.first_match("nsfw photo") == BlockEntry("nsfw")


# Custom words


@pytest.mark.parametrize(
    ("prompt", "matched"),
    [
        ("a red panda", True),
        ("RED   PANDA!", True),
        ("red-panda", True),
        ("Ｒｅｄ\u200bPanda", True),
        ("r e d p a n d a", True),
        ("redpanda", True),
        ("red\npanda", True),
        ("a bored pandas' club", False),
        ("a red and a panda", False),
        ("a panda, red", False),
    ],
)
def test_custom_phrase(prompt: str, matched: bool) -> None:
    entry = BlockEntry("red panda")
    assert Blocklist([entry], include_builtin=False).first_match(prompt) == (entry if matched else None)


@pytest.mark.parametrize(
    ("prompt", "matched"),
    [
        ("a cat", True),
        ("CAT!", True),
        ("cat_photo", True),
        ("ｃａｔ", True),
        ("c\u200bat", True),
        ("concatenate", False),
        ("a cathedral", False),
        ("bobcat", False),
        ("c a t", False),  # too short for the spacing rule
        ("c.a.t", False),
    ],
)
def test_short_custom_word_is_matched_as_a_whole_word_only(prompt: str, matched: bool) -> None:
    entry = BlockEntry("cat")
    assert Blocklist([entry], include_builtin=False).first_match(prompt) == (entry if matched else None)


@pytest.mark.parametrize(
    ("entry", "prompt", "matched"),
    [
        ("熊猫", "一只大熊猫", True),
        ("熊猫", "熊 猫", True),
        ("熊猫", f"熊{ZWSP}猫", True),
        ("熊猫", "熊、猫", True),
        ("熊猫", "熊和猫", False),
        ("猫", "小猫咪", True),
        ("パンダ", "かわいいパ ン ダ", True),
        ("🍆", "an 🍆 emoji", True),
        ("🍆", "x🍆x", True),
        ("🍆", "an eggplant", False),
        ("c++", "I like c++ and C++17", True),
        ("c++", "abc", False),
    ],
)
def test_custom_cjk_and_symbol_words(entry: str, prompt: str, matched: bool) -> None:
    block = BlockEntry(entry)
    assert Blocklist([block], include_builtin=False).first_match(prompt) == (block if matched else None)


def test_custom_word_comes_back_as_given() -> None:
    entry = BlockEntry("  Red\u200b  PANDA ")
    assert Blocklist([entry], include_builtin=False).first_match("red panda") is entry


# Regexes


@pytest.mark.parametrize(
    ("pattern", "prompt", "matched"),
    [
        (r"K[I1]TTEN", "a kitten", True),
        (r"k[i1]tten", "A K1TTEN", True),
        (r"k[i1]tten", "ｋ１ｔｔｅｎ", True),
        (r"k[i1]tten", "k 1 t t e n", True),  # only the squashed text matches
        (r"k[i1]tten", "k.i.t.t.e.n", True),
        (r"k[i1]tten", f"k{ZWSP}itten", True),
        (r"^kitten$", "kit-ten", True),
        (r"\bcat\b", "a cat", True),  # only the normalized text matches: the squashed one is "acat"
        (r"\bcat\b", "a c a t", False),
        (r"\d{3}-\d{4}", "call 555-1234", True),
        (r"a b", "A   B", True),
        (r"k[i1]tten", "a puppy", False),
    ],
)
def test_regex_entry(pattern: str, prompt: str, matched: bool) -> None:
    entry = BlockEntry(pattern, is_regex=True)
    assert Blocklist([entry], include_builtin=False).first_match(prompt) == (entry if matched else None)


def test_stored_unusable_entries_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    entries = [
        BlockEntry("(unclosed", is_regex=True),
        BlockEntry("x*", is_regex=True),
        BlockEntry(ZWSP * 3),
        BlockEntry("kitten"),
    ]
    with caplog.at_level(logging.WARNING, logger="core.blocklist"):
        blocklist = Blocklist(entries, include_builtin=False)
    assert blocklist.first_match("a puppy (unclosed") is None
    assert blocklist.first_match("a kitten") == BlockEntry("kitten")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "(unclosed" in warnings[0].getMessage()


# validate


@pytest.mark.parametrize(
    "entry",
    [
        BlockEntry(""),
        BlockEntry("   \t\n"),
        BlockEntry(ZWSP + "\u200d\ufeff\u2060"),
        BlockEntry(SOFT_HYPHEN + " \ufe0f "),
        BlockEntry("x" * (MAX_PATTERN_LENGTH + 1)),
        BlockEntry("\ufdfa" * 12),  # 12 characters that normalize to 216
        BlockEntry("", is_regex=True),
        BlockEntry("  ", is_regex=True),
        BlockEntry("x" * (MAX_PATTERN_LENGTH + 1), is_regex=True),
        BlockEntry("(", is_regex=True),
        BlockEntry("[a-", is_regex=True),
        BlockEntry("*kitten", is_regex=True),
        BlockEntry("x*", is_regex=True),
        BlockEntry("|kitten", is_regex=True),
        BlockEntry("(?:kitten)?", is_regex=True),
    ],
)
def test_validate_refuses_unusable_patterns(entry: BlockEntry) -> None:
    with pytest.raises(InvalidPattern) as caught:
        validate(entry)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert 0 < len(message) <= 120
    assert "\n" not in message


def test_validate_explains_a_regex_that_does_not_compile() -> None:
    with pytest.raises(InvalidPattern, match="does not compile: missing \\) at position 7"):
        validate(BlockEntry("(kitten", is_regex=True))


@pytest.mark.parametrize(
    ("entry", "stored"),
    [
        (BlockEntry("  ＮＳＦＷ\u200b  Art "), BlockEntry("nsfw art")),
        (BlockEntry("Red\tPanda"), BlockEntry("red panda")),
        (BlockEntry("Straße"), BlockEntry("strasse")),
        (BlockEntry("熊\u200b猫"), BlockEntry("熊猫")),
        (BlockEntry("a" + ZWSP * 300), BlockEntry("a")),
        (BlockEntry("x" * MAX_PATTERN_LENGTH), BlockEntry("x" * MAX_PATTERN_LENGTH)),
        (BlockEntry(r"  K[I1]tten\s+ ", is_regex=True), BlockEntry(r"  K[I1]tten\s+ ", is_regex=True)),
        (BlockEntry("x" * MAX_PATTERN_LENGTH, is_regex=True), BlockEntry("x" * MAX_PATTERN_LENGTH, is_regex=True)),
    ],
)
def test_validate_returns_the_entry_to_store(entry: BlockEntry, stored: BlockEntry) -> None:
    assert validate(entry) == stored


def test_a_validated_word_still_matches_what_it_was_written_as() -> None:
    stored = validate(BlockEntry("Ｒｅｄ PANDA"))
    assert Blocklist([stored], include_builtin=False).first_match("Ｒｅｄ PANDA") == stored


@pytest.mark.parametrize("pattern", [r"(a|aa)+$", r"((a|aa)+)+b", r"(?:(?:1|1)+)+x"])
def test_catastrophic_regex_is_refused_when_added(pattern: str) -> None:
    with pytest.raises(InvalidPattern, match="too slow"):
        validate(BlockEntry(pattern, is_regex=True))


def test_a_regex_that_runs_out_of_time_on_a_prompt_refuses_it_quickly() -> None:
    import time

    # Quick on the probes validate() tries (no "x" in them), explosive on this particular prompt.
    entry = validate(BlockEntry(r"(x|xx)+$", is_regex=True))
    blocklist = Blocklist([entry], include_builtin=False)
    started = time.monotonic()
    assert blocklist.first_match("x" * 60 + "q") == entry
    assert time.monotonic() - started < 2
    assert blocklist.first_match("a short prompt") is None
