"""Durable state behind a small async interface (`Store`); `open_store` picks the implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from storage.base import Store
from storage.sqlite import SQLiteStore

__all__ = ["Store", "open_store", "sqlite_path"]


def sqlite_path(database_url: str) -> Path:
    """`sqlite:///data/bot.sqlite3` is relative to the working folder; `sqlite:////srv/bot.db` is absolute."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        raise ValueError("only sqlite:/// URLs are supported")
    return Path(database_url[len(prefix) :])


@asynccontextmanager
async def open_store(database_url: str) -> AsyncIterator[Store]:
    store = await SQLiteStore.open(sqlite_path(database_url))
    try:
        yield store
    finally:
        await store.close()
