"""What the job service tests share: the fake 302.ai, a real SQLite store and an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage import Store, open_store
from tests.fakes.doubao_server import FakeDoubao

API_KEY = "sk-job-test-key-0123456789"


@pytest.fixture
async def api() -> AsyncIterator[FakeDoubao]:
    async with FakeDoubao(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/bot.sqlite3") as opened:
        yield opened


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened
