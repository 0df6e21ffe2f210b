"""Blocked words and regular expressions, checked on a prompt before any API call.

Both the prompt and every word entry go through `normalize` (NFKC, so full-width "ｎｓｆｗ" is "nsfw"; casefold;
invisible characters such as zero-width spaces, soft hyphens and variation selectors removed; whitespace runs
collapsed to one space). `squash` then also drops everything that is not a letter or a digit, so "n s f w",
"n.s.f.w" and "n-s_f w" with a zero-width space inside all become "nsfw".

Matching rules (entries are tried in order: the custom entries, then the built-in terms; the first match wins):

1. Word, whole-word rule: the normalized entry occurs in the normalized prompt with no letter or digit right
   before or after it (an entry edge that is itself not a letter or digit, like the end of "c++", needs no
   boundary). So "child porn" matches "Child   PORN!", and "ass" (too short for rule 2) never matches "class".
2. Word, spacing rule: when the squashed entry is at least 4 characters long, it also matches where it occurs in
   the squashed prompt and either lies inside one word of the prompt ("pornhub", "nsfwart") or, if it runs across
   spaces or punctuation, starts at the start or ends at the end of a word ("n s f w", "por nography"). A run
   across words that starts and ends in the middle of words ("halo lighting" for "loli", "lamp ornament" for
   "porn") does not count. This can still flag an innocent word containing an entry ("denuded" for "nude") or
   innocent words run together when one of them is a piece of the entry ("menu de" for "nude").
3. Word containing CJK (Han, kana, Hangul), which has no spaces between words: the squashed entry matches
   anywhere in the squashed prompt, whatever its length ("色 情", "色.情"), and so also inside innocent
   phrases ("特色情调" contains "色情", "年幼女孩" contains "幼女").
4. Regex: compiled with the `regex` module (the syntax of `re`, ignoring case) and searched in both the normalized
   and the squashed prompt; either finding something is a match. Each search has a time limit: one that runs out
   counts as a match (the prompt is refused, the pattern logged), so a pathological pattern cannot freeze the bot.
   Regexes are stored as written. `validate` refuses one that does not compile, that matches empty text (it would
   block every prompt) or that runs out of time on long repetitive probes; a stored one like that is skipped
   with a warning.

Not caught: look-alike letters from other scripts (Cyrillic "р"), accents ("pörn") and digits for letters
("p0rn"); admins can add regexes for those. The built-in list is short on purpose and can be switched off
(`include_builtin=False`) where its false positives ("a nude-coloured dress", "naked cake") matter more.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import regex

log = logging.getLogger(__name__)

MAX_PATTERN_LENGTH = 200

BUILTIN_TERMS: tuple[str, ...] = (
    # Sexual content involving minors (first, so that it is what a prompt matching "porn" too is reported as).
    "child porn",
    "loli",
    # Explicit sexual content.
    "nsfw",
    "porn",
    "hentai",
    "nude",
    "nudity",
    "naked",
    # Gore ("gore" itself is left out: "Gore-Tex", "nasi goreng", "Edward Gorey").
    "dismember",
    "disembowel",
    "decapitated",
    # Simplified Chinese: pornographic, naked body, nude photo, young girl (legal sense: under 14), gory.
    "色情",
    "裸体",
    "裸照",
    "幼女",
    "血腥",
)

_SPACED_MIN_LENGTH = 4

# Invisible characters that are not in category Cf (which covers U+200B-U+200F, U+2060-U+2064, U+FEFF, U+00AD,
# bidi controls and tags): variation selectors, the combining grapheme joiner, Hangul fillers, Khmer inherent vowels.
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
)

_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G and compatibility supplement
)

_WHITESPACE = re.compile(r"\s+")
REGEX_TIME_LIMIT = 0.05  # seconds per search of an admin's regular expression
# Long runs that make a backtracking pattern such as (a+)+$ or (\w+\s?)*$ explode; tried when one is added.
_SLOW_PROBES = (*(ch * 60 + "!" for ch in "a1 "), "ab " * 40 + "!")


def _in_ranges(ch: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in ranges)


# One pass in C over the prompt (a character at a time in Python took ~1.5 µs a character).
# Every search and substitution passes concurrent=False: by default `regex` lets go of the GIL while it matches,
# and taking it back from another thread (aiosqlite's) cost the event loop up to a switch interval (5 ms) a call.
_INVISIBLE = regex.compile("[\\p{Cf}" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in _INVISIBLE_RANGES) + "]")


def _has_cjk(text: str) -> bool:
    return any(_in_ranges(ch, _CJK_RANGES) for ch in text)


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII), casefolded, invisible characters removed, whitespace collapsed, stripped."""
    visible = _INVISIBLE.sub("", text, concurrent=False)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return _WHITESPACE.sub(" ", folded).strip()


def squash(text: str) -> str:
    """normalize(text) with everything that is not a letter or a digit removed: "n.s f_w" → "nsfw"."""
    return "".join(ch for ch in normalize(text) if ch.isalnum())


@dataclass(frozen=True)
class BlockEntry:
    pattern: str
    is_regex: bool = False


class InvalidPattern(ValueError):
    """A pattern that cannot be used; the message is short and safe to show to the admin."""


def _compile(pattern: str) -> regex.Pattern[str]:
    if not pattern.strip():
        raise InvalidPattern("The pattern is empty.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(f"The pattern is longer than {MAX_PATTERN_LENGTH} characters.")
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""  # pyright: ignore[reportAttributeAccessIssue] - regex sets .pos; typeshed's stub omits it
        raise InvalidPattern(f"The regular expression does not compile: {exc.msg}{where}.") from None  # pyright: ignore[reportAttributeAccessIssue] - regex sets .msg; typeshed's stub omits it
    if compiled.search("", concurrent=False) is not None:
        raise InvalidPattern("The regular expression matches empty text, so it would block every prompt.")
    try:
        for probe in _SLOW_PROBES:
            compiled.search(probe, timeout=REGEX_TIME_LIMIT, concurrent=False)
    except TimeoutError:
        raise InvalidPattern("The regular expression is too slow on long prompts; simplify it.") from None
    return compiled


def validate(entry: BlockEntry) -> BlockEntry:
    """The entry as it should be stored (words normalized, regexes as written), or raises InvalidPattern."""
    if entry.is_regex:
        _compile(entry.pattern)
        return entry
    word = normalize(entry.pattern)
    if not word:
        raise InvalidPattern("The word is empty.")
    if len(word) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(f"The word is longer than {MAX_PATTERN_LENGTH} characters.")
    return BlockEntry(word)


@dataclass(frozen=True)
class _Prompt:
    normalized: str
    squashed: str
    # Index in `normalized` of each character of `squashed`.
    origin: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> _Prompt:
        normalized = normalize(text)
        origin = tuple([i for i, ch in enumerate(normalized) if ch.isalnum()])
        return cls(normalized, "".join([normalized[i] for i in origin]), origin)

    def is_word_edge(self, index: int) -> bool:
        """Whether `index` in the normalized text is outside it or not a letter or digit."""
        return not 0 <= index < len(self.normalized) or not self.normalized[index].isalnum()


class _Word:
    def __init__(self, entry: BlockEntry, word: str) -> None:
        self.entry = entry
        self.word = word
        self.squashed = "".join(ch for ch in word if ch.isalnum())
        self.cjk = _has_cjk(word)
        self.bound_start = word[0].isalnum()
        self.bound_end = word[-1].isalnum()

    def matches(self, prompt: _Prompt) -> bool:
        if self.cjk:
            return self.squashed in prompt.squashed
        return self._whole_word(prompt) or (len(self.squashed) >= _SPACED_MIN_LENGTH and self._spaced(prompt))

    def _whole_word(self, prompt: _Prompt) -> bool:
        text, start = prompt.normalized, prompt.normalized.find(self.word)
        while start != -1:
            end = start + len(self.word)
            if (not self.bound_start or prompt.is_word_edge(start - 1)) and (
                not self.bound_end or prompt.is_word_edge(end)
            ):
                return True
            start = text.find(self.word, start + 1)
        return False

    def _spaced(self, prompt: _Prompt) -> bool:
        length, start = len(self.squashed), prompt.squashed.find(self.squashed)
        while start != -1:
            first, last = prompt.origin[start], prompt.origin[start + length - 1]
            in_one_word = last - first == length - 1
            if in_one_word or prompt.is_word_edge(first - 1) or prompt.is_word_edge(last + 1):
                return True
            start = prompt.squashed.find(self.squashed, start + 1)
        return False


class _Regex:
    def __init__(self, entry: BlockEntry, compiled: regex.Pattern[str]) -> None:
        self.entry = entry
        self.compiled = compiled

    def matches(self, prompt: _Prompt) -> bool:
        try:
            return any(
                self.compiled.search(text, timeout=REGEX_TIME_LIMIT, concurrent=False) is not None
                for text in (prompt.normalized, prompt.squashed)
            )
        except TimeoutError:
            # Refuse rather than let a slow pattern through or freeze the bot; the admin can fix the pattern.
            log.warning("blocklist regex %r ran out of time on a prompt; treating it as a match", self.entry.pattern)
            return True


class Blocklist:
    """Custom entries (in the order given), then unless switched off the built-in terms."""

    def __init__(self, entries: Iterable[BlockEntry] = (), *, include_builtin: bool = True) -> None:
        self._matchers: list[_Word | _Regex] = []
        for entry in entries:
            self._add(entry)
        if include_builtin:
            for term in BUILTIN_TERMS:
                self._add(BlockEntry(term))

    def _add(self, entry: BlockEntry) -> None:
        if entry.is_regex:
            try:
                self._matchers.append(_Regex(entry, _compile(entry.pattern)))
            except InvalidPattern as exc:
                log.warning("Skipping blocklist regex %r: %s", entry.pattern, exc)
            return
        word = normalize(entry.pattern)
        if word:
            self._matchers.append(_Word(entry, word))
        else:
            log.warning("Skipping blocklist word %r: empty once normalized", entry.pattern)

    def first_match(self, prompt: str) -> BlockEntry | None:
        """The first entry the prompt matches (built-in terms come back as BlockEntry(term)), or None."""
        seen = _Prompt.of(prompt)
        return next((matcher.entry for matcher in self._matchers if matcher.matches(seen)), None)
