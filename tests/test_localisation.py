"""Every user-visible text comes from a catalogue in both languages; command localisations follow Discord's rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from discord import app_commands

import bot as bot_module
from cogs._approval import APPROVAL_STYLES
from cogs._buttons import ACTIONS
from cogs._translator import command_catalogue, command_key
from core.config import load_settings
from core.i18n import LANGUAGES, catalogue

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("cogs/**/*.py"), *ROOT.glob("core/*.py"), ROOT / "bot.py"])
KEY = re.compile(
    r"^(error|settings|status|approval|modlog|quota|privacy|modal|button|state|details|history|result)\.[a-z0-9_.]+$"
)
# Keys built at run time from a known set of values.
DYNAMIC_KEYS = {
    "button.{}": [*ACTIONS, *APPROVAL_STYLES],
    "state.{}": ["pending", "queued", "running", "delivering", "done", "failed", "cancelled"],
    "quota.source_{}": ["default", "server", "role", "user"],
    "approval.marked_{}": ["approved", "rejected", "expired"],
    "result.footer_{}": ["draw", "character"],
}
# Where a literal string would reach a user.
SINKS = {
    "send_message",
    "send",
    "edit_message",
    "edit_original_response",
    "reply",
    "Embed",
    "add_field",
    "set_footer",
    "Button",
    "TextInput",
    "Modal",
    "edit",
}
SINK_KEYWORDS = {"content", "title", "description", "name", "value", "text", "label", "placeholder"}
WORDS = re.compile(r"[A-Za-z]{2,}|[\u4e00-\u9fff]")


def string_constants(tree: ast.AST) -> set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_every_key_the_code_uses_exists_in_every_catalogue() -> None:
    used = set()
    for source in SOURCES:
        constants = string_constants(ast.parse(source.read_text()))
        # Parts of f-strings such as "quota.source_" are the prefixes of DYNAMIC_KEYS, not keys.
        used |= {value for value in constants if KEY.match(value) and not value.endswith(("_", "."))}
    for pattern, values in DYNAMIC_KEYS.items():
        used |= {pattern.format(value) for value in values}
    assert len(used) > 100
    for language in LANGUAGES:
        missing = sorted(used - set(catalogue(language)))
        assert not missing, f"{language} lacks {missing}"


def literal_text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value for part in node.values if isinstance(part, ast.Constant))
    return ""


def test_no_user_visible_text_is_written_in_the_code() -> None:
    found = []
    for source in SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name not in SINKS:
                continue
            arguments = [*node.args, *(kw.value for kw in node.keywords if kw.arg in SINK_KEYWORDS)]
            for argument in arguments:
                text = literal_text(argument)
                if WORDS.search(text) and not KEY.match(text):
                    found.append(f"{source.name}:{node.lineno}: {text!r}")
    assert not found, "user-visible text outside the catalogues:\n" + "\n".join(found)


@pytest.fixture
async def tree() -> app_commands.CommandTree:
    settings = load_settings({"DISCORD_TOKEN": "t", "AI302_API_KEY": "k"})
    bot = bot_module.DoubaoBot(settings=settings, store=None, policy=None, quota=None, gate=None, jobs=None)  # type: ignore[arg-type]
    for extension in bot_module.EXTENSIONS:
        await bot.load_extension(extension)
    return bot.tree


def command_strings(tree: app_commands.CommandTree) -> dict[str, str]:
    """Every localisable command string, by the key the translator looks up, with its English default."""
    strings: dict[str, str] = {}
    for command in tree.walk_commands():
        strings[f"{command.qualified_name}.name"] = command.name
        strings[f"{command.qualified_name}.description"] = command.description
        if isinstance(command, app_commands.Command):
            for parameter in command.parameters:
                strings[f"{command.qualified_name}.{parameter.name}.name"] = parameter.display_name
                strings[f"{command.qualified_name}.{parameter.name}.description"] = parameter.description
                for choice in parameter.choices:
                    strings[f"choice.{choice.value}"] = choice.name
    return strings


NAME_RULE = re.compile(r"^[-_\w]{1,32}$")


async def test_every_command_string_is_translated(tree) -> None:
    strings = command_strings(tree)
    translations = command_catalogue("zh-CN")
    assert sorted(set(strings) - set(translations)) == []
    assert sorted(set(translations) - set(strings)) == []  # nothing stale


async def test_translated_names_follow_discords_rules(tree) -> None:
    translations = command_catalogue("zh-CN")
    for key, value in translations.items():
        if key.endswith(".name"):
            assert NAME_RULE.match(value) and value == value.lower(), key
        elif key.startswith("choice."):
            assert 1 <= len(value) <= 100, key
        else:
            assert 1 <= len(value) <= 100, key
    for command in tree.walk_commands():
        if isinstance(command, app_commands.Command):
            names = [translations[f"{command.qualified_name}.{p.name}.name"] for p in command.parameters]
            assert len(names) == len(set(names)), command.qualified_name
        if isinstance(command, app_commands.Group):
            names = [translations[f"{child.qualified_name}.name"] for child in command.commands]
            assert len(names) == len(set(names)), command.qualified_name


async def test_the_translator_reads_the_catalogue(tree) -> None:
    translator = bot_module.CatalogueTranslator()
    draw = tree.get_command("draw")
    payload = await draw.get_translated_payload(tree, translator)
    assert payload["name_localizations"] == {"zh-CN": "绘图"}
    assert payload["description_localizations"]["zh-CN"] == "根据文字提示词生成图片"
    size = next(option for option in payload["options"] if option["name"] == "size")
    assert size["name_localizations"] == {"zh-CN": "尺寸"}
    assert size["choices"][0]["name_localizations"] == {"zh-CN": "1:1 方形 (768×768)"}
    assert "zh-TW" not in payload["name_localizations"]


def test_command_keys_are_stable() -> None:
    assert command_key(app_commands.TranslationContext(app_commands.TranslationContextLocation.other, None)) is None
