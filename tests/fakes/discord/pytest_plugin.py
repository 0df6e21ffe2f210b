"""Pytest fixture for the fake Discord.

Register it in tests/conftest.py with ``pytest_plugins = ["tests.fakes.discord.pytest_plugin"]``.

``fake_discord`` is a started ``FakeDiscord`` (defaults); at teardown it is closed and any violation
(a request Discord would reject) fails the test that caused it. Tests that need other settings can
build their own ``FakeDiscord`` and call ``assert_no_violations()`` themselves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from .fake import FakeDiscord

log = logging.getLogger(__name__)


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
    fake.assert_no_violations()
