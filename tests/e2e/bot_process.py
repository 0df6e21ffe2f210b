"""Runs the real `bot.main()` in a child process aimed at the fakes, so a test can kill it like a crash.

The only difference from `python bot.py` is where discord.py connects: the fake Discord named by
FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY. Everything else (settings, .env, signals) is the bot's own.

With BOT_LOOP_LAG_FILE set (the benchmark does), a probe in the bot's event loop appends a line
`<time.monotonic()> <longest lag in seconds>` to that file every LOOP_LAG_REPORT seconds: how late a
short sleep woke up, i.e. how long the loop was kept from running anything else.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import yarl

LOOP_LAG_TICK = 0.005
LOOP_LAG_REPORT = 0.25


async def probe_loop_lag(path: Path) -> None:
    loop = asyncio.get_running_loop()
    with path.open("a", buffering=1) as out:
        worst, report_at = 0.0, loop.time() + LOOP_LAG_REPORT
        while True:
            due = loop.time() + LOOP_LAG_TICK
            await asyncio.sleep(LOOP_LAG_TICK)
            now = loop.time()
            worst = max(worst, now - due)
            if now >= report_at:
                out.write(f"{time.monotonic():.6f} {worst:.6f}\n")
                worst, report_at = 0.0, now + LOOP_LAG_REPORT


def with_loop_lag_probe(run: Callable[[Any], Awaitable[None]], path: Path) -> Callable[[Any], Awaitable[None]]:
    async def probed(settings: Any) -> None:
        probe = asyncio.create_task(probe_loop_lag(path), name="loop-lag-probe")
        try:
            await run(settings)
        finally:
            probe.cancel()

    return probed


def main() -> int:
    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])
    import bot

    if lag_file := os.environ.get("BOT_LOOP_LAG_FILE"):
        bot.run = with_loop_lag_probe(bot.run, Path(lag_file))  # type: ignore[assignment]
    return bot.main()


if __name__ == "__main__":
    sys.exit(main())
