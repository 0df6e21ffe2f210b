"""Self-tests of the fake Discord, driven through a tiny discord.py bot defined here (not the project's)."""

from __future__ import annotations

import asyncio
import datetime
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakes.discord import FakeDiscord, FakeMessage, InteractionRecord
from tests.fakes.discord.openapi import load_spec


def png_bytes(size: tuple[int, int] = (8, 4)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, format="PNG")
    return out.getvalue()


class AgainButton(discord.ui.DynamicItem[discord.ui.Button], template=r"again:(?P<job>\d+)"):
    """A button that survives restarts: its state is in the custom_id."""

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Again", custom_id=f"again:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> AgainButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"again {self.job}", ephemeral=True)


class Counter(discord.ui.View):
    """Edits the message its button is on (UPDATE_MESSAGE)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.count = 0

    @discord.ui.button(label="+1", custom_id="count")
    async def bump(self, interaction: discord.Interaction, button: discord.ui.Button[Counter]) -> None:
        self.count += 1
        await interaction.response.edit_message(content=f"count {self.count}", view=self)


class Feedback(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="Text", custom_id="text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


class TinyBot(commands.Bot):
    """Syncs its commands only when they differ from what Discord has (like a careful bot)."""

    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.errors: list[Exception] = []
        self.seen: list[discord.Interaction] = []
        self.add_commands()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton)
        remote = {c.name for c in await self.tree.fetch_commands()}
        if remote != {c.name for c in self.tree.get_commands()}:
            await self.tree.sync()

    def add_commands(self) -> None:
        tree = self.tree

        @tree.command(description="Draw a picture")
        @app_commands.choices(size=[app_commands.Choice(name=s, value=s) for s in ("1:1", "16:9")])
        async def draw(
            interaction: discord.Interaction,
            prompt: str,
            size: str,
            reference: discord.Attachment | None = None,
        ) -> None:
            self.seen.append(interaction)
            await interaction.response.defer(thinking=True)
            ref = b"" if reference is None else await reference.read()
            await interaction.followup.send(
                f"{prompt} ({len(ref)} bytes)",
                file=discord.File(io.BytesIO(png_bytes()), "out.png"),
                view=discord.ui.View().add_item(AgainButton(7)),
                allowed_mentions=discord.AllowedMentions.none(),
            )

        @tree.command(description="Never answers")
        async def silent(interaction: discord.Interaction) -> None:
            self.seen.append(interaction)

        @tree.command(description="Answers too late")
        async def slow(interaction: discord.Interaction, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await interaction.response.send_message("late")
            except discord.HTTPException as exc:
                self.errors.append(exc)

        @tree.command(description="Echo with a followup")
        async def echo(interaction: discord.Interaction, text: str, safe: bool = True, private: bool = False) -> None:
            await interaction.response.send_message("ok", ephemeral=True)
            mentions = discord.AllowedMentions.none() if safe else discord.AllowedMentions.all()
            await interaction.followup.send(text, allowed_mentions=mentions, ephemeral=private)

        @tree.command(description="Defers publicly, then follows up ephemerally")
        async def whisper(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send("first", ephemeral=True)
            await interaction.followup.send("second", ephemeral=True)

        @tree.command(description="Show the caller's permissions")
        @app_commands.default_permissions(manage_guild=True)
        async def perms(interaction: discord.Interaction, member: discord.Member) -> None:
            assert isinstance(interaction.user, discord.Member)
            perms, app_perms = interaction.permissions, interaction.app_permissions
            text = f"{perms.manage_guild} {app_perms.attach_files} {member.name}"
            await interaction.response.send_message(text)

        @tree.command(description="Send something")
        async def send(interaction: discord.Interaction, length: int = 10, size: int = 0) -> None:
            await interaction.response.defer(ephemeral=True)
            file = discord.File(io.BytesIO(b"x" * size), "blob.bin") if size else discord.utils.MISSING
            try:
                await interaction.followup.send("y" * length, file=file)
            except discord.HTTPException as exc:
                self.errors.append(exc)

        @tree.command(description="A counter")
        async def counter(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("count 0", view=Counter())

        @tree.command(description="Edit then delete the response")
        async def cleanup(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("temporary")
            message = await interaction.original_response()
            await message.edit(content="edited")
            await interaction.delete_original_response()

        @tree.command(description="Ask for feedback")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(Feedback())

        @tree.command(description="Post to a channel")
        async def post(interaction: discord.Interaction, channel: discord.TextChannel) -> None:
            await interaction.response.defer(ephemeral=True)
            try:
                await channel.send("posted")
                await interaction.edit_original_response(content="done")
            except discord.HTTPException as exc:
                self.errors.append(exc)
                await interaction.edit_original_response(content=f"failed {exc.code}")

        settings = app_commands.Group(name="settings", description="Settings")
        channels = app_commands.Group(name="channels", description="Channels", parent=settings)

        @channels.command(name="add", description="Add a channel")
        async def add(interaction: discord.Interaction, channel: discord.TextChannel, role: discord.Role) -> None:
            await interaction.response.send_message(f"{channel.id} {role.name} {interaction.locale}")

        tree.add_command(settings)


@pytest.fixture
async def bot(fake_discord: FakeDiscord) -> AsyncIterator[TinyBot]:
    async with fake_discord.running(TinyBot()) as client:
        yield client


async def start_fake(**kwargs: Any) -> FakeDiscord:
    fake = FakeDiscord(**kwargs)
    await fake.start()
    return fake


# -- login, sync, gateway ---------------------------------------------------------------------------


async def test_login_sync_and_guild_cache(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    syncs = await fake_discord.wait_for_commands_synced()
    assert len(syncs) == 1 and syncs[0].guild_id is None
    names = {c["name"] for c in fake_discord.synced_commands()}
    assert names == {
        "counter",
        "cleanup",
        "draw",
        "silent",
        "slow",
        "echo",
        "whisper",
        "perms",
        "send",
        "feedback",
        "post",
        "settings",
    }
    assert all(c["id"] and c["application_id"] == str(fake_discord.application_id) for c in syncs[0].commands)
    assert bot.user is not None and bot.user.id == fake_discord.bot_user.id
    assert bot.application_id == fake_discord.application_id
    await bot.wait_until_ready()
    guild = bot.get_guild(fake_discord.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert [c.name for c in guild.text_channels] == ["general"]
    assert guild.me.guild_permissions.send_messages
    assert fake_discord.gateway.heartbeat_count >= 1
    routes = {(r.method, r.route) for r in fake_discord.requests}
    assert ("GET", "/users/@me") in routes and ("GET", "/oauth2/applications/@me") in routes


async def test_restarted_bot_sees_its_commands_and_does_not_resync(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    await fake_discord.wait_for_commands_synced()
    record = await fake_discord.invoke("draw", prompt="before", size="1:1")
    message = await record.wait_for_message()
    await bot.close()
    async with fake_discord.running(TinyBot()):
        assert len(fake_discord.command_syncs) == 1
        click = await fake_discord.click(message, "again:7")  # a DynamicItem survives the restart
        assert (await click.wait_for_message()).content == "again 7"
    assert fake_discord.gateway.identify_count == 2


async def test_rest_requires_the_bot_token(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake_discord.api_base}/users/@me") as resp:
            assert resp.status == 401
            assert (await resp.json())["message"] == "401: Unauthorized"
        headers = {"Authorization": f"Bot {fake_discord.bot_token}"}
        async with http.get(f"{fake_discord.api_base}/gateway/bot", headers=headers) as resp:
            assert (await resp.json())["url"] == fake_discord.gateway_url


async def test_an_edit_without_allowed_mentions_reads_the_mentions_with_the_defaults(
    fake_discord: FakeDiscord,
) -> None:
    bob = fake_discord.add_user("bob")
    url = f"{fake_discord.api_base}/channels/{fake_discord.general.id}/messages"
    headers = {"Authorization": f"Bot {fake_discord.bot_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        quiet = {"content": f"hi {bob.mention}", "allowed_mentions": {"parse": []}}
        async with http.post(url, json=quiet) as resp:
            message = fake_discord.message(int((await resp.json())["id"]))
        assert not message.mentions
        async with http.patch(f"{url}/{message.id}", json={"embeds": []}) as resp:
            assert resp.status == 200
        assert not message.mentions  # the content was not edited
        async with http.patch(f"{url}/{message.id}", json={"content": f"hello {bob.mention}"}) as resp:
            assert resp.status == 200
        assert message.mentions.users == {bob.id}
        assert not message.pinged  # an edit notifies nobody


async def test_dropped_gateway_resumes_and_replays_missed_events(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    await fake_discord.drop_gateway()
    assert fake_discord.gateway.resume_count == 1
    await fake_discord.drop_gateway(wait_resumed=False)
    record = await fake_discord.invoke("echo", text="after the blip")  # sent while disconnected
    await record.wait_for_message(lambda m: m.content == "after the blip")
    assert fake_discord.gateway.identify_count == 1


# -- interactions -----------------------------------------------------------------------------------


async def test_deferred_followup_with_file_fills_the_thinking_message(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    alice = fake_discord.add_user("alice", locale="fr")
    reference = fake_discord.attachment("ref.png", png_bytes((64, 64)), width=64, height=64)
    record = await fake_discord.invoke("draw", user=alice, prompt="a cat", size="1:1", reference=reference)
    assert (await record.wait_for_ack())["type"] == 5
    assert record.ack_delay is not None and record.ack_delay < fake_discord.ack_deadline
    message = await record.wait_for_message()
    assert message.content == f"a cat ({len(png_bytes((64, 64)))} bytes)"
    assert [a.filename for a in message.attachments] == ["out.png"]
    assert message.attachments[0].bytes == png_bytes()
    assert message.attachments[0].content_type == "image/png"
    assert (message.attachments[0].width, message.attachments[0].height) == (8, 4)
    assert message.allowed_mentions == {"parse": []}
    assert record.original is message and record.followups == [message] and not message.loading
    assert fake_discord.channel_messages(fake_discord.general) == [message]
    assert message.custom_ids == ["again:7"]
    interaction = bot.seen[-1]
    assert interaction.locale == discord.Locale.french and interaction.filesize_limit == 10 * 1024 * 1024
    assert fake_discord.bot_token not in fake_discord.all_request_text()
    assert "a cat" in fake_discord.all_request_text()


async def test_dynamic_button_and_ephemeral_reply(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("draw", prompt="a dog", size="16:9")
    message = await record.wait_for_message()
    click = await fake_discord.click(message, "again:7")
    reply = await click.wait_for_message()
    assert reply.content == "again 7" and reply.ephemeral
    assert reply not in fake_discord.channel_messages(fake_discord.general)
    assert click.response_type == 4 and click.original is reply
    with pytest.raises(AssertionError, match="no component"):
        await fake_discord.click(message, "nope")


async def test_default_attachment_is_a_real_png(fake_discord: FakeDiscord) -> None:
    attachment = fake_discord.attachment(width=5, height=3)
    async with aiohttp.ClientSession() as http, http.get(attachment.url) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        data = await resp.read()
    assert Image.open(io.BytesIO(data)).size == (5, 3) and attachment.size == len(data)
    assert fake_discord.requests[-1].route == "/attachments/{attachment_id}/{filename}"


async def test_followup_allowed_mentions_are_recorded(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    bob = fake_discord.add_user("bob")
    record = await fake_discord.invoke("echo", text=f"hi {bob.mention} @everyone")
    await record.wait_for_ack()
    quiet = await record.wait_for_message(lambda m: not m.ephemeral)
    assert quiet.allowed_mentions == {"parse": []} and not quiet.pinged
    loud_record = await fake_discord.invoke("echo", text=f"hi {bob.mention} @everyone", safe=False)
    loud = await loud_record.wait_for_message(lambda m: not m.ephemeral)
    assert loud.pinged.users == {bob.id} and loud.pinged.everyone
    sent = [r.json for r in fake_discord.requests if r.route == "/webhooks/{webhook_id}/{webhook_token}"]
    assert sent[0]["allowed_mentions"] == {"parse": []}
    assert [m.content for m in fake_discord.channel_messages(fake_discord.general)] == [quiet.content] * 2


async def test_subcommands_options_and_resolved_data(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    role = fake_discord.add_role(name="artists")
    extra = fake_discord.add_channel(name="art")
    carol = fake_discord.add_user("carol", locale="de")
    options = {"channel": extra, "role": role}
    record = await fake_discord.invoke("settings channels add", user=carol, channel=extra, options=options)
    message = await record.wait_for_message()
    assert message.content == f"{extra.id} artists de" and message.channel_id == extra.id
    data = record.payload["data"]
    assert data["options"][0]["options"][0]["name"] == "add"
    assert set(data["resolved"]) == {"channels", "roles"}
    with pytest.raises(AssertionError, match="was not synced"):
        await fake_discord.invoke("paint")
    with pytest.raises(AssertionError, match="no option"):
        await fake_discord.invoke("draw", prompt="x", size="1:1", colour="red")
    with pytest.raises(AssertionError, match="not one of the choices"):
        await fake_discord.invoke("draw", prompt="x", size="4:3")
    with pytest.raises(AssertionError, match="needs a subcommand"):
        await fake_discord.invoke("settings channels")


async def test_dm_interaction_has_no_guild(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    dave = fake_discord.add_user("dave")
    record = await fake_discord.invoke("draw", user=dave, guild=None, prompt="dm", size="1:1")
    message = await record.wait_for_message()
    assert "guild_id" not in record.payload and record.payload["user"]["id"] == str(dave.id)
    assert bot.seen[-1].guild is None and message.guild_id is None
    assert message.channel_id == fake_discord.dm_channel(dave).id


async def test_modal_round_trip(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("feedback")
    body = await record.wait_for_ack()
    assert body["type"] == 9 and record.modal is not None
    submit = await fake_discord.submit_modal(record.modal["custom_id"], {"text": "lovely"})
    reply = await submit.wait_for_message()
    assert reply.content == "thanks: lovely"
    with pytest.raises(AssertionError, match="required"):
        await fake_discord.submit_modal(record.modal["custom_id"], {"text": ""})


async def test_channel_permissions_are_enforced(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    locked = fake_discord.add_channel(name="locked")
    fake_discord.set_overwrite(locked, fake_discord.bot_member, deny=discord.Permissions(send_messages=True).value)
    record = await fake_discord.invoke("post", options={"channel": locked})
    assert (await record.wait_for_message()).content == "failed 50013"
    ok = await fake_discord.invoke("post", options={"channel": fake_discord.general})
    assert (await ok.wait_for_message()).content == "done"
    posted = await fake_discord.wait_for_channel_message(fake_discord.general, lambda m: m.content == "posted")
    assert posted.interaction_id is None and posted.author is fake_discord.bot_user


# -- Discord's rules --------------------------------------------------------------------------------


async def test_unacknowledged_interaction_expires() -> None:
    fake = await start_fake(ack_deadline=0.2)
    try:
        async with fake.running(TinyBot()) as client:
            bot = client
            silent = await fake.invoke("silent")
            with pytest.raises(AssertionError, match="timed out"):
                await silent.wait_for_ack(timeout=0.25)
            assert silent.callbacks == [] and silent.ack_delay is None
            late = await fake.invoke("slow", delay=0.3)
            await late.wait_for(lambda r: r.errors(), timeout=2)
            assert late.errors()[0].error_code == 10062 and late.errors()[0].status == 404
            assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
        fake.assert_no_violations()
    finally:
        await fake.close()


async def test_double_ack_and_expired_token(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    fake_discord.token_ttl = 0.3
    record = await fake_discord.invoke("echo", text="hello")
    await record.wait_for_message(lambda m: m.content == "hello")
    base = fake_discord.api_base
    async with aiohttp.ClientSession() as http:
        url = f"{base}/interactions/{record.id}/{record.token}/callback"
        async with http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
        await asyncio.sleep(0.35)
        url = f"{base}/webhooks/{fake_discord.application_id}/{record.token}?wait=true"
        async with http.post(url, json={"content": "too late"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 50027


async def test_discord_py_reckons_the_same_token_expiry_as_the_fake(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    fake_discord.token_ttl = 40.0
    honest = await fake_discord.invoke("echo", text="hello")
    fake_discord.honest_expiry = False
    skewed = await fake_discord.invoke("echo", text="hello")
    expected = discord.utils.utcnow() + datetime.timedelta(seconds=40)
    seen = discord.utils.snowflake_time(honest.id) + datetime.timedelta(minutes=15)  # Interaction.expires_at
    assert abs((seen - expected).total_seconds()) < 1
    seen = discord.utils.snowflake_time(skewed.id) + datetime.timedelta(minutes=15)
    assert (seen - expected).total_seconds() > 800
    assert len({honest.id, skewed.id, *fake_discord.world.messages}) == 2 + len(fake_discord.world.messages)


async def test_upload_limit_gives_413() -> None:
    fake = await start_fake(upload_limit=1000)
    try:
        async with fake.running(TinyBot()) as bot:
            record = await fake.invoke("send", size=1001)
            await record.wait_for(lambda r: r.errors(), timeout=2)
            assert record.errors()[0].status == 413 and record.errors()[0].error_code == 40005
            assert record.payload["attachment_size_limit"] == 1000
            assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].code == 40005
        fake.assert_no_violations()
    finally:
        await fake.close()


async def test_rate_limited_request_is_retried(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    fake_discord.rate_limit_next("POST /webhooks/{id}/{token}", retry_after=0.05)
    record = await fake_discord.invoke("echo", text="patience")
    message = await record.wait_for_message(lambda m: m.content == "patience")
    statuses = [r.status for r in fake_discord.requests if r.route == "/webhooks/{webhook_id}/{webhook_token}"]
    assert statuses == [429, 200] and message in record.followups
    fake_discord.rate_limit_next("POST /channels/*/messages", retry_after=0.05, global_=True)
    post = await fake_discord.invoke("post", options={"channel": fake_discord.general})
    assert (await post.wait_for_message(lambda m: m.content == "done")).content == "done"
    posts = [r for r in fake_discord.requests if r.route == "/channels/{channel_id}/messages"]
    assert [r.status for r in posts] == [429, 200] and posts[0].response["global"] is True


async def test_a_held_answer_comes_when_released_after_its_message_is_there(
    fake_discord: FakeDiscord, bot: TinyBot
) -> None:
    held = fake_discord.hold_next("POST /channels/*/messages")
    record = await fake_discord.invoke("post", options={"channel": fake_discord.general})
    await asyncio.wait_for(held.reached.wait(), 5)
    posted = await fake_discord.wait_for_channel_message(fake_discord.general, lambda m: m.content == "posted")
    assert posted.author is fake_discord.bot_user
    await record.wait_for_ack()
    assert record.message is None or record.message.content != "done"  # the bot still waits for the answer
    held.release()
    assert (await record.wait_for_message(lambda m: m.content == "done")).content == "done"
    again = await fake_discord.invoke("post", options={"channel": fake_discord.general})
    assert (await again.wait_for_message(lambda m: m.content == "done")).content == "done"  # held only once


async def test_schema_violation_is_recorded_and_answered_50035(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    with fake_discord.expect_violations() as violations:
        record = await fake_discord.invoke("send", length=2001)
        await record.wait_for(lambda r: r.errors(), timeout=2)
    assert record.errors()[0].error_code == 50035
    assert len(violations) == 1 and violations[0].kind == "schema"
    assert "content" in violations[0].message and "2000" in violations[0].message
    assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].code == 50035


async def test_unknown_route_is_a_violation(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    with fake_discord.expect_violations() as violations, pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/voice/regions"))
    assert violations[0].kind == "unknown_route" and violations[0].route == "/voice/regions"


async def test_message_records_and_waiters(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("draw", prompt="history", size="1:1")
    message: FakeMessage = await fake_discord.wait_for_channel_message(fake_discord.general)
    assert message.content.startswith("history") and message.interaction_id == record.id
    assert message.edits and message.edits[0]["flags"] & 128  # the "thinking" state it replaced
    assert isinstance(record, InteractionRecord) and record.messages == [message]
    with pytest.raises(AssertionError, match="timed out"):
        await fake_discord.wait_for_channel_message(fake_discord.general, timeout=0.05)


async def test_ephemeral_followups_and_the_deferral_rule(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("echo", text="just for you", private=True)
    secret = await record.wait_for_message(lambda m: m.content == "just for you")
    assert secret.ephemeral and secret in record.followups
    assert secret not in fake_discord.channel_messages(fake_discord.general)
    # Discord: the first followup after a public deferral replaces the "thinking" message and stays public.
    whisper = await fake_discord.invoke("whisper")
    first = await whisper.wait_for_message()
    second = await whisper.wait_for_message()
    assert (first.content, first.ephemeral, first is whisper.original) == ("first", False, True)
    assert (second.content, second.ephemeral) == ("second", True)
    assert fake_discord.channel_messages(fake_discord.general) == [first]


async def test_guild_commands_and_member_permissions(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    guild = discord.Object(id=fake_discord.guild.id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)
    assert {c["name"] for c in fake_discord.synced_commands(fake_discord.guild)} >= {"perms", "draw"}
    erin, frank = fake_discord.add_user("erin"), fake_discord.add_user("frank")
    with pytest.raises(AssertionError, match="default_member_permissions"):
        await fake_discord.invoke("perms", user=erin, member=frank)
    fake_discord.add_member(fake_discord.guild, erin, permissions=discord.Permissions(manage_guild=True))
    fake_discord.add_member(fake_discord.guild, frank)
    record = await fake_discord.invoke("perms", user=erin, member=frank)
    assert record.payload["data"]["guild_id"] == str(fake_discord.guild.id)
    assert (await record.wait_for_message()).content == "True True frank"
    assert set(record.payload["data"]["resolved"]) == {"users", "members"}


async def test_discords_form_rules_beyond_the_schema(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    app_id = fake_discord.application_id
    with fake_discord.expect_violations() as violations:
        with pytest.raises(discord.HTTPException) as caught:
            await bot.http.bulk_upsert_global_commands(app_id, [{"name": "Draw", "description": "x"}])
        with pytest.raises(discord.HTTPException, match="empty message"):
            channel = bot.get_channel(fake_discord.general.id)
            assert isinstance(channel, discord.TextChannel)
            await channel.send(embeds=[])
    assert caught.value.code == 50035 and "lowercase" in violations[0].message
    assert [v.kind for v in violations] == ["form", "form"]
    assert len(fake_discord.command_syncs) == 1


async def test_the_fakes_answers_match_discords_response_schemas(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    spec = load_spec()
    record = await fake_discord.invoke("draw", prompt="schema", size="1:1")
    message = await record.wait_for_message()
    click = await fake_discord.click(message, "again:7")
    await click.wait_for_message()
    callback = next(r for r in click.requests if r.route and r.route.endswith("/callback"))
    world = fake_discord.world
    checks = {
        "MessageResponse": message.payload(world.users),
        "InteractionCallbackResponse": callback.response,
        "GuildResponse": world.guild_payload(fake_discord.guild),
        "GuildChannelResponse": fake_discord.general.payload(),
        "PrivateChannelResponse": fake_discord.dm_channel(fake_discord.default_user).payload(),
        "GuildMemberResponse": fake_discord.bot_member.payload(),
        "PrivateApplicationResponse": world.application_payload(),
    }
    errors = {name: spec.schema_errors(name, body) for name, body in checks.items()}
    assert errors == {name: [] for name in checks}
    assert message.components[0]["id"] == 1  # Discord numbers components


async def test_patch_can_be_undone_by_calling_it(fake_discord: FakeDiscord) -> None:
    before = discord.http.Route.BASE
    undo = fake_discord.patch_discord_py()
    assert fake_discord.api_base == discord.http.Route.BASE
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake_discord.gateway_url
    undo()
    assert before == discord.http.Route.BASE


async def test_update_message_from_a_button(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("counter")
    message = await record.wait_for_message()
    click = await fake_discord.click(message, "count")
    assert (await click.wait_for_message()) is message and click.response_type == 7
    assert message.content == "count 1" and message.edits[-1]["content"] == "count 0"
    assert click.original is message and message.edited_at is not None
    await fake_discord.click(message, "count")
    await record.wait_for(lambda _r: message.content == "count 2")


async def test_original_response_edit_and_delete(fake_discord: FakeDiscord, bot: TinyBot) -> None:
    record = await fake_discord.invoke("cleanup")
    await record.wait_for(lambda r: r.original is not None and r.original.deleted)
    original = record.original
    assert original is not None and original.content == "edited"
    assert [e["content"] for e in original.edits] == ["temporary"]
    assert fake_discord.channel_messages(fake_discord.general) == []
    assert [r.method for r in record.requests] == ["POST", "GET", "PATCH", "DELETE"]
