"""English and Simplified Chinese through the fake Discord: every flow answers in the user's language."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from core.i18n import t
from tests.e2e.harness import BotHarness, outcome, running_harness
from tests.fakes.discord import FakeMessage, FakeUser
from tests.fakes.doubao_server import FakeResponse

LOCALES = {"zh-CN": "zh-CN", "en-US": "en"}
ADMIN = discord.Permissions(manage_guild=True).value


def fixed_part(language: str, key: str) -> str:
    """The text of a catalogue entry up to its first placeholder (enough to tell the language and the message)."""
    return t(language, key).split("{")[0].strip()


def says(message: FakeMessage, language: str, key: str) -> None:
    expected = fixed_part(language, key)
    assert expected and expected in message.content, f"{key} in {language}: {message.content!r}"


def person(harness: BotHarness, name: str, locale: str, permissions: int | None = None) -> FakeUser:
    user = harness.discord.add_user(name, locale=locale)
    harness.discord.add_member(harness.discord.guild, user, permissions=permissions)
    return user


@pytest.mark.parametrize("locale", LOCALES)
async def test_result_embed_buttons_and_details_in_the_users_language(harness: BotHarness, locale: str) -> None:
    language = LOCALES[locale]
    user = person(harness, "u", locale)
    message = await outcome(await harness.draw(user))
    names = [field["name"] for field in message.embeds[0]["fields"]]
    assert names[:3] == [t(language, "result.requested_by"), t(language, "result.size"), t(language, "result.seed")]
    assert message.embeds[0]["footer"]["text"] == t(language, "result.footer_draw")
    labels = [c["label"] for row in message.components for c in row["components"]]
    assert labels == [t(language, f"button.{a}") for a in ("reroll", "vary", "ref", "details", "delete")]
    details_id = next(c for c in message.custom_ids if c.startswith("job:details:"))
    details = await outcome(await harness.discord.click(message, details_id, user=user))
    assert details.embeds[0]["title"] == t(language, "details.title")
    quota = await outcome(await harness.discord.invoke("quota", user=user))
    says(quota, language, "quota.status")
    history = await outcome(await harness.discord.invoke("history", user=user))
    assert history.content.startswith(t(language, "history.title"))
    assert t(language, "state.done") in history.content


@pytest.mark.parametrize("locale", LOCALES)
async def test_every_refusal_in_the_users_language(tmp_path: Path, locale: str) -> None:
    language = LOCALES[locale]
    async with running_harness(tmp_path, env={"DAILY_QUOTA": "1", "MAX_JOBS_PER_USER": "1"}) as harness:
        user = person(harness, "u", locale)
        invoke = harness.discord.invoke
        says(await outcome(await harness.draw(user, prompt="  ")), language, "error.prompt_empty")
        text_file = harness.discord.attachment(
            "a.txt", content=b"x", content_type="text/plain", width=None, height=None
        )
        says(
            await outcome(await invoke("character", user=user, prompt="p", reference=text_file)),
            language,
            "error.reference_not_image",
        )
        big = harness.discord.attachment("big.png", size=11 * 1024 * 1024)
        says(
            await outcome(await invoke("character", user=user, prompt="p", reference=big)),
            language,
            "error.reference_too_large",
        )
        dm = await outcome(await invoke("draw", user=user, guild=None, prompt="p"))
        says(dm, language, "error.guild_only")
        await outcome(await harness.draw(user))
        await harness.check_ledger()
        says(await outcome(await harness.draw(user)), language, "error.quota_exhausted")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    ("response", "key"),
    [
        (FakeResponse.business_error(50411), "error.content_rejected"),
        (FakeResponse.http_status(503), "error.service_busy"),
        (FakeResponse.gateway_error(-10004, "balance"), "error.bot_misconfigured"),
        (FakeResponse.no_image(), "error.bad_response"),
    ],
)
async def test_every_failure_in_the_users_language(harness: BotHarness, locale: str, response, key: str) -> None:
    harness.api.default_response = response
    says(await outcome(await harness.draw(person(harness, "u", locale))), LOCALES[locale], key)


@pytest.mark.parametrize("locale", LOCALES)
async def test_status_and_cancel_in_the_users_language(tmp_path: Path, locale: str) -> None:
    language = LOCALES[locale]
    async with running_harness(tmp_path, env={"MAX_CONCURRENT_JOBS": "1"}) as harness:
        # The first job takes long enough for the second to be cancelled while it waits, even on a busy machine.
        harness.api.default_response = lambda _payload: FakeResponse.delay(1.5, then=FakeResponse.success_urls())
        await harness.draw(person(harness, "first", "en-US"))
        user = person(harness, "u", locale)
        record = await harness.draw(user)
        queued_text = fixed_part(language, "status.queued")
        await record.wait_for(lambda r: r.message is not None and queued_text in r.message.content, 5, "queued")
        status = record.message
        assert status is not None
        assert [c["label"] for row in status.components for c in row["components"]] == [t(language, "button.cancel")]
        cancel = next(c for c in status.custom_ids if c.startswith("job:cancel:"))
        await harness.discord.click(status, cancel, user=user)
        cancelled = t(language, "status.cancelled")
        await record.wait_for(lambda r: r.message is not None and r.message.content == cancelled, 5, "cancelled")


@pytest.mark.parametrize(
    ("guild_locale", "server_language", "expected"),
    [
        ("en-US", None, "en"),
        ("zh-CN", None, "zh-CN"),  # the server's locale when the user's language is not served
        ("en-US", "zh-CN", "zh-CN"),  # the server's configured language before its locale
    ],
)
async def test_users_in_other_languages_fall_back_to_the_server(
    harness: BotHarness, guild_locale: str, server_language: str | None, expected: str
) -> None:
    harness.discord.guild.locale = guild_locale
    if server_language:
        admin = person(harness, "admin", "en-US", ADMIN)
        await outcome(await harness.discord.invoke("settings language", user=admin, language=server_language))
    french = person(harness, "fr", "fr")
    says(await outcome(await harness.draw(french, prompt=" ")), expected, "error.prompt_empty")
    chinese = person(harness, "zh", "zh-CN")
    says(await outcome(await harness.draw(chinese, prompt=" ")), "zh-CN", "error.prompt_empty")  # the user first


async def test_zh_tw_users_read_simplified_chinese(harness: BotHarness) -> None:
    says(await outcome(await harness.draw(person(harness, "tw", "zh-TW"), prompt=" ")), "zh-CN", "error.prompt_empty")


async def test_settings_and_mod_log_use_the_servers_language(harness: BotHarness) -> None:
    admin = person(harness, "admin", "en-US", ADMIN)
    log_channel = harness.discord.add_channel(name="mod-log")
    await outcome(
        await harness.discord.invoke("settings moderation log-channel", user=admin, options={"channel": log_channel})
    )
    answer = await outcome(await harness.discord.invoke("settings language", user=admin, language="zh-CN"))
    assert answer.content == t("zh-CN", "settings.language_set", language="zh-CN")
    answer = await outcome(await harness.discord.invoke("settings quota default", user=admin, limit=4))
    assert answer.content == t("zh-CN", "settings.quota_default", limit=4)
    english_user = person(harness, "en", "en-US")
    await outcome(await harness.draw(english_user, prompt="a river"))
    await harness.check_ledger()
    # Entries are written after the admin is answered and as the job ends: wait for each.
    for expected in (t("zh-CN", "settings.quota_default", limit=4), "a river"):
        await harness.discord.wait_for_channel_message(log_channel, lambda m, e=expected: e in str(m.embeds), timeout=5)
    entries = [str(message.embeds) for message in harness.discord.channel_messages(log_channel)]
    assert any(t("zh-CN", "modlog.change_title") in entry for entry in entries)
    job_entry = next(entry for entry in entries if "a river" in entry)
    assert t("zh-CN", "modlog.who") in job_entry and t("zh-CN", "state.done") in job_entry
    refused = await outcome(await harness.draw(english_user, prompt="nsfw"))
    says(refused, "en", "error.prompt_blocked")  # the member still reads their own language


async def test_synced_commands_carry_chinese_localisations(harness: BotHarness) -> None:
    commands = {command["name"]: command for command in harness.discord.synced_commands()}
    assert commands["draw"]["name_localizations"] == {"zh-CN": "绘图"}
    settings = commands["settings"]
    assert settings["description_localizations"]["zh-CN"] == "本服务器的图片生成设置"
    quota_group = next(option for option in settings["options"] if option["name"] == "quota")
    assert quota_group["name_localizations"] == {"zh-CN": "额度"}
