"""Shared test set-up: the fake Discord fixture fails any test whose bot sent a body Discord would reject; a
throwaway PostgreSQL server (tests/postgres.py) for the tests that ask for one."""

import logging

pytest_plugins = ["tests.fakes.discord.pytest_plugin", "tests.postgres"]

# Every SQL statement at DEBUG drowns the output of a failing test.
logging.getLogger("aiosqlite").setLevel(logging.INFO)
