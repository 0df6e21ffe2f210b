"""Durable state behind a small async interface (`Store`); `open_store` picks the implementation from the URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from storage.base import Store, StoreUnavailable
from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from storage.urls import is_postgres_url, redact_url, sqlite_path

__all__ = ["Store", "StoreUnavailable", "open_store", "redact_url", "sqlite_path"]


@asynccontextmanager
async def open_store(database_url: str, *, pool_size: int = 10) -> AsyncIterator[Store]:
    """`postgresql://` (or `postgres://`) URLs open a PostgreSQL pool of `pool_size` connections; `sqlite:///`
    ones a SQLite file (one connection, `pool_size` does not apply). Migrates the schema; closes on exit."""
    store: Store
    if is_postgres_url(database_url):
        store = await PostgresStore.open(database_url, pool_size=pool_size)
    else:
        store = await SQLiteStore.open(sqlite_path(database_url))
    try:
        yield store
    finally:
        await store.close()
