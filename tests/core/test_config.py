"""Settings from the environment: defaults, parsing, and one clear line for each bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import ConfigError, Secret, load_settings

ROOT = Path(__file__).resolve().parents[2]
README, ENV_EXAMPLE = ROOT / "README.md", ROOT / ".env.example"
REQUIRED = {"DISCORD_TOKEN": "discord-token-value", "AI302_API_KEY": "sk-api-key-value"}


def test_defaults() -> None:
    settings = load_settings(REQUIRED)
    assert settings.ai302_base_url == "https://api.302.ai"
    assert settings.database_url == Secret("sqlite:///data/bot.sqlite3")
    assert settings.database_pool_size == 10
    assert settings.daily_quota == 20
    assert settings.max_concurrent_jobs == 4
    assert settings.max_jobs_per_user == 2
    assert settings.max_queue == 100
    assert settings.shutdown_grace == 30.0
    assert settings.status_edit_interval == 2.0
    assert settings.approval_sweep_interval == 15.0
    assert settings.lease_seconds == 60.0
    assert (settings.shard_count, settings.shard_ids, settings.max_concurrent_jobs_per_process) == (None, None, None)
    assert settings.dev_guild_id is None
    assert settings.log_level == "INFO"
    assert settings.api_timeout == 120.0
    assert (settings.api_max_attempts, settings.api_retry_backoff) == (3, 1.0)
    assert settings.max_reference_bytes == 10 * 1024 * 1024
    assert settings.api_extras.watermark.enabled is False


def documented_defaults() -> list[tuple[str, str, str]]:
    """(where, variable, value) for each default the README's table and .env.example give."""
    found = []
    for row in re.findall(r"^\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \| ([^|]+) \|", README.read_text(), re.M):
        names, values = re.findall(r"`([A-Z0-9_]+)`", row[0]), re.findall(r"`([^`]+)`", row[1])
        if len(values) == len(names):  # not "(required)", "(none)", "off", "API defaults"
            found += [("README.md", name, value) for name, value in zip(names, values, strict=True)]
    for name, value in re.findall(r"^# ([A-Z0-9_]+)=(\S+)$", ENV_EXAMPLE.read_text(), re.M):
        found.append((".env.example", name, value))
    return found


def test_the_documented_defaults_are_the_defaults() -> None:
    documented = documented_defaults()
    names = {name for _, name, _ in documented}
    assert {"MAX_JOBS_PER_USER", "SHUTDOWN_GRACE_SECONDS", "DAILY_QUOTA", "MAX_QUEUE"} <= names, documented
    defaults = load_settings(REQUIRED)
    for where, name, value in documented:
        assert load_settings(REQUIRED | {name: value}) == defaults, f"{where} gives {name}={value}"


def test_values_are_parsed() -> None:
    settings = load_settings(
        REQUIRED
        | {
            "AI302_BASE_URL": "http://127.0.0.1:8080/",
            "DATABASE_URL": "sqlite:////srv/bot.db",
            "DATABASE_POOL_SIZE": "25",
            "DAILY_QUOTA": "5",
            "MAX_CONCURRENT_JOBS": "2",
            "DEV_GUILD_ID": "123456789012345678",
            "LOG_LEVEL": "debug",
            "API_TIMEOUT_SECONDS": "30",
            "MAX_REFERENCE_MB": "2",
            "WATERMARK_ENABLED": "yes",
            "WATERMARK_TEXT": "made by our bot",
            "WATERMARK_POSITION": "top-left",
            "WATERMARK_LANGUAGE": "en",
            "WATERMARK_OPACITY": "0.5",
            "SR_STEPS": "20",
        }
    )
    assert settings.ai302_base_url == "http://127.0.0.1:8080"
    assert settings.database_url.reveal() == "sqlite:////srv/bot.db"
    assert settings.database_pool_size == 25
    assert (settings.daily_quota, settings.max_concurrent_jobs) == (5, 2)
    assert settings.dev_guild_id == 123456789012345678
    assert settings.log_level == "DEBUG"
    assert settings.api_timeout == 30.0
    assert settings.max_reference_bytes == 2 * 1024 * 1024
    mark = settings.api_extras.watermark
    assert (mark.enabled, mark.text, mark.position, mark.language, mark.opacity) == (
        True,
        "made by our bot",
        2,
        1,
        0.5,
    )
    assert settings.api_extras.sr_steps == 20


@pytest.mark.parametrize("missing", ["DISCORD_TOKEN", "AI302_API_KEY"])
def test_missing_secret_names_the_variable(missing: str) -> None:
    env = dict(REQUIRED)
    env[missing] = "   "
    with pytest.raises(ConfigError, match=f"^{missing} is required"):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DAILY_QUOTA", "twenty"),
        ("DAILY_QUOTA", "-1"),
        ("MAX_CONCURRENT_JOBS", "0"),
        ("DEV_GUILD_ID", "my-guild"),
        ("LOG_LEVEL", "LOUD"),
        ("AI302_BASE_URL", "api.302.ai"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "sqlite:///"),
        ("DATABASE_URL", "postgresql://bot:pw@db:port/doubao"),
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_POOL_SIZE", "many"),
        ("API_TIMEOUT_SECONDS", "soon"),
        ("WATERMARK_ENABLED", "maybe"),
        ("WATERMARK_POSITION", "middle"),
        ("WATERMARK_OPACITY", "2"),
    ],
)
def test_malformed_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} is malformed") as caught:
        load_settings(REQUIRED | {name: value})
    assert "\n" not in str(caught.value)


def test_secrets_stay_out_of_reprs() -> None:
    settings = load_settings(REQUIRED)
    shown = repr(settings) + str(settings)
    assert "discord-token-value" not in shown
    assert "sk-api-key-value" not in shown
    assert settings.discord_token.reveal() == "discord-token-value"
    assert settings.ai302_api_key == Secret("sk-api-key-value")
    assert f"{settings.ai302_api_key}" == "Secret('********')"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_is_accepted_and_its_password_kept_out_of_sight(scheme: str) -> None:
    url = f"{scheme}://bot:db-password-value@db.example:5432/doubao"
    settings = load_settings(REQUIRED | {"DATABASE_URL": url})
    assert settings.database_url.reveal() == url
    assert "db-password-value" not in repr(settings) + str(settings)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bot:db-password-value@db.example:port/doubao",
        "postgresql://bot:db-password-value@db.example/doubao?colour=blue",
        "postgresq://bot:db-password-value@db.example/doubao",
    ],
)
def test_a_malformed_database_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is malformed") as caught:
        load_settings(REQUIRED | {"DATABASE_URL": url})
    assert "db-password-value" not in str(caught.value)
    assert "bot:***@db.example" in str(caught.value)


@pytest.mark.parametrize(
    ("ids", "expected"), [("0", (0,)), ("0,1", (0, 1)), ("0-3", (0, 1, 2, 3)), ("6, 0-2", (0, 1, 2, 6))]
)
def test_shard_ids_are_lists_and_ranges(ids: str, expected: tuple[int, ...]) -> None:
    settings = load_settings(REQUIRED | {"SHARD_COUNT": "8", "SHARD_IDS": ids})
    assert (settings.shard_count, settings.shard_ids) == (8, expected)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_IDS": "0,1"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1,2"}, "SHARD_IDS is malformed: shard ids go from 0 to 1"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,0"}, "SHARD_IDS is malformed: expected distinct"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "a-b"}, "SHARD_IDS is malformed"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT is malformed"),
    ],
)
def test_bad_shard_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(REQUIRED | env)


def test_the_metrics_server_is_off_unless_a_port_is_set() -> None:
    settings = load_settings(REQUIRED)
    assert (settings.metrics_port, settings.metrics_host) == (None, "127.0.0.1")
    settings = load_settings(REQUIRED | {"METRICS_PORT": "9108", "METRICS_HOST": "0.0.0.0"})
    assert (settings.metrics_port, settings.metrics_host) == (9108, "0.0.0.0")


@pytest.mark.parametrize("value", ["0", "65536", "metrics"])
def test_a_malformed_metrics_port_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^METRICS_PORT is malformed"):
        load_settings(REQUIRED | {"METRICS_PORT": value})
