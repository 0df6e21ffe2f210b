"""The in-process end-to-end tests run on SQLite; those marked `both_databases` on PostgreSQL too (a fresh
database each, from tests/postgres.py). `E2E_DATABASE=postgresql scripts/test tests/e2e` runs every one of them on
PostgreSQL instead, except those marked `sqlite_only` (they rely on what only SQLite's single connection gives).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import DATABASE_URL_VARIABLE, BotHarness, running_harness

BACKEND = os.environ.get("E2E_DATABASE", "sqlite")  # the database of tests not marked both_databases


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_databases: run this end-to-end test on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only(reason): this end-to-end test runs on SQLite only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_databases") and BACKEND == "sqlite":
        metafunc.parametrize("e2e_database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def e2e_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend of this test's bot: E2E_DATABASE_URL names a fresh PostgreSQL database, or is unset."""
    backend = getattr(request, "param", BACKEND)
    if request.node.get_closest_marker("sqlite_only"):
        backend = "sqlite"
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    if backend == "postgresql":
        monkeypatch.setenv(DATABASE_URL_VARIABLE, request.getfixturevalue("postgres_url"))
    elif backend != "sqlite":
        raise pytest.UsageError(f"E2E_DATABASE must be sqlite or postgresql, not {backend!r}")
    yield backend


@pytest.fixture
async def harness(tmp_path: Path, e2e_database: str) -> AsyncIterator[BotHarness]:
    async with running_harness(tmp_path) as running:
        yield running
