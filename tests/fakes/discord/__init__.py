"""A fake Discord (REST + gateway on 127.0.0.1) that the real, unmodified discord.py client logs into.

Tour::

    fake = FakeDiscord(ack_deadline=3.0)          # one guild "Test Guild" with #general, the bot a member
    await fake.start()
    async with fake.running(bot):                  # patches discord.py, starts the bot, waits for READY
        await fake.wait_for_commands_synced()
        alice = fake.add_user("alice", locale="fr")
        record = await fake.invoke("draw", user=alice, prompt="a cat", reference=fake.attachment())
        await record.wait_for_ack()
        message = await record.wait_for_message()
        button = await fake.click(message, message.custom_ids[0], user=alice)
    fake.assert_no_violations()                    # every body was valid for Discord's OpenAPI spec
    await fake.close()

Sharding: ``FakeDiscord(shard_count=2)`` recommends two shards; each IDENTIFY with ``shard: [id, count]`` gets a
session of its own, and each guild's events go to the session of shard ``(guild_id >> 22) % count``
(``fake.add_guild(shard=1)`` makes a guild on shard 1; ``fake.wait_for_shards([1], 2)`` waits for its session).

Modules: ``fake`` (the façade), ``world`` (users, guilds, permissions), ``commands`` (synced commands,
invocation data), ``interactions`` (records, payloads), ``routes`` + ``rest`` (HTTP), ``gateway``,
``openapi`` (validation), ``models`` (records), ``pytest_plugin`` (the ``fake_discord`` fixture).
"""

from .fake import FakeDiscord
from .interactions import InteractionRecord
from .models import (
    CommandSync,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Mentions,
    RequestRecord,
    UploadedFile,
    Violation,
)
from .rest import DiscordError

__all__ = [
    "CommandSync",
    "DiscordError",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "InteractionRecord",
    "Mentions",
    "RequestRecord",
    "UploadedFile",
    "Violation",
]
