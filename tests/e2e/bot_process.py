"""Runs the real `bot.main()` in a child process aimed at the fakes, so a test can kill it like a crash.

The only difference from `python bot.py` is where discord.py connects: the fake Discord named by
FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY. Everything else (settings, .env, signals) is the bot's own.
"""

from __future__ import annotations

import os
import sys

import discord
import yarl


def main() -> int:
    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])
    import bot

    return bot.main()


if __name__ == "__main__":
    sys.exit(main())
