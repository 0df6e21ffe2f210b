"""Shared test set-up: the fake Discord fixture fails any test whose bot sent a body Discord would reject."""

pytest_plugins = ["tests.fakes.discord.pytest_plugin"]
