"""Errors that end a request with a message for the user.

Each carries a catalogue key and named parameters; the cogs translate it into the user's language.
"""

from __future__ import annotations

from typing import Any


class UserFacingError(Exception):
    """A request that cannot go on, with the catalogue key of the message that explains why."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class InvalidInput(UserFacingError):
    """The user's options were refused before anything was spent."""


class QuotaExhausted(UserFacingError):
    """The user has no generations left in the current window."""
