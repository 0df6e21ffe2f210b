"""DATABASE_URL: which backend it names and what it holds. No message made here shows a password."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
EXPECTED = "sqlite:///path or postgresql://user:password@host:port/database"


def redact_url(url: str) -> str:
    """The URL with the password (everything between the user's ':' and the last '@', and any `password=` in
    the query) replaced by '***'."""
    url = re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    userinfo, _, location = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{location}"


def is_postgres_url(url: str) -> bool:
    return url.partition("://")[0].lower() in POSTGRES_SCHEMES


def sqlite_path(database_url: str) -> Path:
    """`sqlite:///data/bot.sqlite3` is relative to the working folder; `sqlite:////srv/bot.db` is absolute."""
    if not database_url.startswith(SQLITE_PREFIX) or database_url == SQLITE_PREFIX:
        raise ValueError(f"expected {EXPECTED}, got {redact_url(database_url)!r}")
    return Path(database_url[len(SQLITE_PREFIX) :])


def postgres_connect_args(database_url: str) -> dict[str, Any]:
    """asyncpg.connect() keywords for a `postgresql://` (or `postgres://`) URL.

    The URL is never given to asyncpg whole, so none of its errors can quote it; the password is passed as a
    function, so the connection parameters asyncpg keeps do not hold it either. Besides user, password, host,
    port and database, the query may set `host` (a Unix socket folder), `port` and `sslmode`. Without a host,
    asyncpg tries the usual local sockets, then localhost.
    """
    if not is_postgres_url(database_url):
        raise ValueError(f"expected {EXPECTED}, got {redact_url(database_url)!r}")
    parts = urlsplit(database_url)
    if "@" in parts.path:
        raise ValueError(
            "characters such as / in the user name or password must be percent-encoded (/ is %2F)"
            f" in {redact_url(database_url)!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port is not a number in {redact_url(database_url)!r}") from None
    args: dict[str, Any] = {}
    if parts.hostname:
        args["host"] = parts.hostname
    if port is not None:
        args["port"] = port
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password is not None:
        args["password"] = _hidden(unquote(parts.password))
    database = unquote(parts.path.lstrip("/"))
    if database:
        args["database"] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "host":
            args["host"] = value
        elif key == "port" and value.isdigit():
            args["port"] = int(value)
        elif key == "sslmode" and value in SSL_MODES:
            args["ssl"] = value
        else:
            raise ValueError(f"unsupported option {key!r} in {redact_url(database_url)!r}")
    return args


def _hidden(password: str) -> Callable[[], str]:
    def password_for_asyncpg() -> str:
        return password

    return password_for_asyncpg
