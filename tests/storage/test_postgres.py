"""What only the PostgreSQL store does: its URL, its pool, and keeping the password to itself."""

from __future__ import annotations

import asyncio
import logging
import traceback
from urllib.parse import quote

import asyncpg
import pytest

from storage import StoreUnavailable, open_store
from storage.postgres import PostgresStore
from storage.urls import is_postgres_url, postgres_connect_args, redact_url
from tests.postgres import PostgresCluster
from tests.storage.helpers import DAY, GUILD, USER, job, reserve

PASSWORD = "s3cret:@/pass"
ENCODED = quote(PASSWORD, safe="")


def revealed(args: dict) -> dict:
    return {key: value() if callable(value) else value for key, value in args.items()}


def test_both_schemes_and_their_parts() -> None:
    url = f"postgresql://bot:{ENCODED}@db.example:5433/doubao?sslmode=require"
    assert revealed(postgres_connect_args(url)) == {
        "host": "db.example",
        "port": 5433,
        "user": "bot",
        "password": PASSWORD,
        "database": "doubao",
        "ssl": "require",
    }
    assert revealed(postgres_connect_args("postgres://bot@/doubao?host=/run/postgresql")) == {
        "host": "/run/postgresql",
        "user": "bot",
        "database": "doubao",
    }
    assert is_postgres_url("postgres://x/y") and is_postgres_url("postgresql://x/y")
    assert not is_postgres_url("sqlite:///data/bot.sqlite3")


def test_the_password_is_handed_over_as_a_function() -> None:
    args = postgres_connect_args(f"postgresql://bot:{ENCODED}@db/doubao")
    assert args["password"]() == PASSWORD
    assert PASSWORD not in repr(args)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bot:{ENCODED}@db:notaport/doubao",
        f"postgresql://bot:{ENCODED}@db/doubao?options=-csearch_path%3Dx",
        f"postgresql://bot:{ENCODED}@db/doubao?sslmode=sometimes",
        f"mysql://bot:{ENCODED}@db/doubao",
        f"postgresql://bot:{PASSWORD}@db/doubao",  # not percent-encoded
        f"postgresql://bot:{ENCODED}@db/doubao?user=bot&password=s3cret",
    ],
)
def test_bad_urls_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        postgres_connect_args(url)
    assert "s3cret" not in str(refused.value)
    assert "bot:***@db" in str(refused.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://bot:pw@db:5432/x") == "postgresql://bot:***@db:5432/x"
    assert redact_url("postgresql://bot:p@ss@db/x") == "postgresql://bot:***@db/x"
    assert redact_url("postgresql://bot@db/x") == "postgresql://bot@db/x"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
    assert redact_url("sqlite:///data/bot.sqlite3") == "sqlite:///data/bot.sqlite3"
    assert redact_url("postgresql://db/x?user=u&Password=pw&sslmode=require") == (
        "postgresql://db/x?user=u&Password=***&sslmode=require"
    )


async def test_the_pool_has_the_configured_size(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with open_store(postgres_url, pool_size=3) as store:
            assert isinstance(store, PostgresStore)
            assert store._pool.get_max_size() == 3
            assert await reserve(store, "job-1")
    assert "bot:***@127.0.0.1" in caplog.text


async def test_a_pool_of_one_serves_many_requests_at_once(postgres_url: str) -> None:
    async with open_store(postgres_url, pool_size=1) as store:
        results = await asyncio.gather(*(reserve(store, f"job-{n}", limit=5) for n in range(20)))
        assert results.count(True) == 5
        assert await store.used_quota(guild_id=GUILD, user_id=USER, window=DAY) == 5


async def test_no_password_in_logs_reprs_or_errors(
    postgres_cluster: PostgresCluster, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = postgres_cluster.password
    wrong = postgres_url.replace(quote(password, safe=""), quote("wrong-" + password, safe=""))
    unreachable = postgres_url.replace(f":{postgres_cluster.port}/", ":1/")
    with caplog.at_level(logging.DEBUG):
        async with open_store(postgres_url) as store:
            assert await reserve(store, "job-1")
            shown = repr(store) + repr(store._pool)
        for bad in (wrong, unreachable):
            with pytest.raises(StoreUnavailable) as refused:
                async with open_store(bad):
                    pass
            shown += "".join(traceback.format_exception(refused.value))
            assert "bot:***@127.0.0.1" in str(refused.value)
    shown += caplog.text
    assert password not in shown and quote(password, safe="") not in shown
    assert "s3cret" not in shown


async def test_a_claim_waits_for_a_queued_job_locked_for_a_moment_instead_of_serving_the_next_turn(
    postgres_url: str,
) -> None:
    # A lease renewal locks the queued rows it updates; a claim passing over them would serve a later turn first.
    async with open_store(postgres_url) as store:
        for job_id, user in (("first", 1), ("second", 2)):
            assert await store.create_job(job(job_id, user=user), window=DAY, limit=5)
        renewing = await asyncpg.connect(**postgres_connect_args(postgres_url))
        try:
            transaction = renewing.transaction()
            await transaction.start()
            await renewing.execute("UPDATE jobs SET lease_expires_at = '2999-01-01' WHERE id = 'first'")
            claim = asyncio.create_task(store.claim_job(owner="p1", lease_until="2999-01-01", max_running=5))
            await asyncio.sleep(0.3)
            assert not claim.done()  # waits for the renewal's row lock
            await transaction.commit()
            claimed = await asyncio.wait_for(claim, 5)
        finally:
            await renewing.close()
        assert claimed is not None and claimed.id == "first"
