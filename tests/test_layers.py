"""The layers of docs/ARCHITECTURE.md, enforced: what each folder's code may not import, wherever the import sits
(module level, inside a function, under TYPE_CHECKING, or through importlib)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WITHOUT_DISCORD = "core/ and storage/ are what is true without Discord"
BELOW_COGS = "core/ sits below the cogs and bot.py"
OURS = "storage/ imports nothing of ours"
SQLITE = "nothing SQLite-specific leaves storage/"
NO_IO = "no cog calls aiohttp or SQL: the services are passed in"
# Folder -> module (with its submodules) that its code may not import -> the rule of docs/ARCHITECTURE.md it breaks.
BANNED = {
    "core": {"discord": WITHOUT_DISCORD, "cogs": BELOW_COGS, "bot": BELOW_COGS}
    | dict.fromkeys(("aiosqlite", "sqlite3", "storage.sqlite"), SQLITE),
    "storage": {"discord": WITHOUT_DISCORD} | dict.fromkeys(("core", "cogs", "bot"), OURS),
    "cogs": dict.fromkeys(("aiohttp", "aiosqlite", "asyncpg", "sqlite3", "storage.sqlite"), NO_IO),
}
SOURCES = sorted(path for folder in BANNED for path in (ROOT / folder).rglob("*.py"))


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the source of `module` (e.g. `storage.sqlite`)."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            parent = ".".join([*base, *([node.module] if node.module else [])])
            if parent:
                yield node.lineno, parent
            for alias in node.names:  # `from storage import sqlite` imports the module storage.sqlite
                yield node.lineno, f"{parent}.{alias.name}" if parent else alias.name
        elif (
            isinstance(node, ast.Call)
            and (ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"})
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def violations(path: Path) -> list[str]:
    relative = path.relative_to(ROOT)
    module = ".".join(relative.with_suffix("").parts)
    found = {
        f"{relative}:{line} imports {banned}: {rule}"
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module)
        for banned, rule in BANNED[relative.parts[0]].items()
        if name == banned or name.startswith(banned + ".")
    }
    return sorted(found)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_layer_imports_only_what_it_may(path: Path) -> None:
    found = violations(path)
    assert not found, "\n".join(found)


def test_every_layer_has_code_to_check() -> None:
    for folder in BANNED:
        assert any(path.relative_to(ROOT).parts[0] == folder for path in SOURCES), folder


def test_every_kind_of_import_is_seen() -> None:
    source = """
from typing import TYPE_CHECKING
import discord.ui as ui, json
from discord import app_commands
from . import base
from .base import Store
from .. import bot
if TYPE_CHECKING:
    from aiohttp import ClientSession
def later():
    import asyncpg
    importlib.import_module("aiosqlite")
    __import__("sqlite3")
"""
    assert {name for _, name in imported_modules(source, "storage.sqlite")} == {
        "typing",
        "typing.TYPE_CHECKING",
        "discord.ui",
        "json",
        "discord",
        "discord.app_commands",
        "storage",
        "storage.base",
        "storage.base.Store",
        "bot",
        "aiohttp",
        "aiohttp.ClientSession",
        "asyncpg",
        "aiosqlite",
        "sqlite3",
    }


def test_cogs_call_the_services_not_the_store() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "cogs").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "store"
    ]
    assert not found, "cogs reach the store through PolicyService, QuotaService and JobService:\n" + "\n".join(found)
