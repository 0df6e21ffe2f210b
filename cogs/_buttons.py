"""Buttons on status and result messages. The job id is in the custom_id and the state in the database,
so they keep working after a restart (`discord.ui.DynamicItem`). Approve/Reject are in `cogs/_approval.py`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from cogs._render import details_embed
from cogs._replies import language_of, load_fallback_language, text
from cogs._submit import start_job
from cogs._tree import explain_error
from core.errors import UserFacingError
from core.i18n import t
from core.job import Job, rerolled, reusable_params
from core.params import MAX_PROMPT_CHARS, CharacterParams, Command, clean_prompt

if TYPE_CHECKING:
    from bot import DoubaoBot

MODAL_TIMEOUT = 3600  # a modal left open longer is not answered; the member can click again


def may_manage(interaction: discord.Interaction[DoubaoBot], job: Job) -> bool:
    """The requester, or someone who may manage messages in the channel."""
    return interaction.user.id == job.user_id or interaction.permissions.manage_messages


async def cancel(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    if not may_manage(interaction, job):
        raise UserFacingError("error.not_your_job")
    await interaction.response.defer()
    if not await interaction.client.jobs.cancel(job.id):
        await interaction.followup.send(text(interaction, "error.too_late_to_cancel"), ephemeral=True)


async def reroll(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    await start_job(interaction, job.command, rerolled(job))


async def vary(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    reusable_params(job)
    await interaction.response.send_modal(PromptModal(job, language_of(interaction), opened_by=interaction.id))


async def use_as_reference(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    message = interaction.message
    image = message.attachments[0] if message and message.attachments else None
    if image is None:
        raise UserFacingError("error.job_not_found")
    modal = PromptModal(job, language_of(interaction), reference_url=image.url, opened_by=interaction.id)
    await interaction.response.send_modal(modal)


async def details(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    await interaction.response.send_message(embed=details_embed(job, language_of(interaction)), ephemeral=True)


async def delete(interaction: discord.Interaction[DoubaoBot], job: Job) -> None:
    if not may_manage(interaction, job):
        raise UserFacingError("error.not_your_job")
    await interaction.response.defer()
    await interaction.delete_original_response()  # after a deferred update, "original" is the clicked message
    await interaction.followup.send(text(interaction, "result.deleted"), ephemeral=True)


@dataclass(frozen=True)
class JobAction:
    """A button on a job's messages: how it looks (its label is the catalogue's `button.<name>`), whether it sits
    under the image or on the status message while the job waits, and what a click does."""

    style: discord.ButtonStyle
    emoji: str
    handler: Callable[[discord.Interaction[DoubaoBot], Job], Awaitable[Any]]
    on_result: bool = True


# Every job button, by the name its custom_id carries (`job:<name>:<job id>`), in the order they are shown. Buttons
# posted long ago carry these names: rename one and they stop working.
ACTIONS: dict[str, JobAction] = {
    "cancel": JobAction(discord.ButtonStyle.secondary, "✖️", cancel, on_result=False),
    "reroll": JobAction(discord.ButtonStyle.primary, "🎲", reroll),
    "vary": JobAction(discord.ButtonStyle.secondary, "✏️", vary),
    "ref": JobAction(discord.ButtonStyle.secondary, "🧬", use_as_reference),
    "details": JobAction(discord.ButtonStyle.secondary, "ℹ️", details),
    "delete": JobAction(discord.ButtonStyle.danger, "🗑️", delete),
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"job:(?P<action>{'|'.join(ACTIONS)}):(?P<job_id>[0-9a-f]{{32}})",
):
    def __init__(self, action: str, job_id: str, language: str = "en") -> None:
        super().__init__(
            discord.ui.Button(
                label=t(language, f"button.{action}"),
                emoji=ACTIONS[action].emoji,
                style=ACTIONS[action].style,
                custom_id=f"job:{action}:{job_id}",
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[DoubaoBot]) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        try:
            await load_fallback_language(interaction)
            job = await interaction.client.jobs.load(self.job_id)
            if job is None:
                raise UserFacingError("error.job_not_found")
            await ACTIONS[self.action].handler(interaction, job)
        except Exception as error:
            await explain_error(interaction, error)


def status_view(job: Job) -> discord.ui.View:
    return _view(job, on_result=False)


def result_view(job: Job) -> discord.ui.View:
    return _view(job, on_result=True)


def _view(job: Job, *, on_result: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for name, action in ACTIONS.items():
        if action.on_result == on_result:
            view.add_item(JobButton(name, job.id, job.language))
    return view


class PromptModal(discord.ui.Modal):
    """Edit the prompt, then run it again: with the same seed (Vary) or with the image as the reference."""

    def __init__(self, job: Job, language: str, *, opened_by: int, reference_url: str | None = None) -> None:
        title_key = "modal.reference_title" if reference_url else "modal.vary_title"
        # One modal per click: discord.py keys open modals by custom_id, and several members may vary the
        # same public result at once.
        custom_id = f"prompt:{job.id}:{opened_by}"
        super().__init__(title=t(language, title_key), custom_id=custom_id, timeout=MODAL_TIMEOUT)
        self.job = job
        self.reference_url = reference_url
        self.prompt = discord.ui.TextInput(
            label=t(language, "modal.prompt_label"),
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=None if reference_url else job.params.prompt,
            max_length=MAX_PROMPT_CHARS,
            required=True,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[DoubaoBot]) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        await load_fallback_language(interaction)
        prompt = clean_prompt(self.prompt.value)
        if self.reference_url is None:
            await start_job(interaction, self.job.command, replace(self.job.params, prompt=prompt))
            return
        params = CharacterParams(prompt=prompt, reference_url=self.reference_url)
        await start_job(interaction, Command.CHARACTER, params)

    async def on_error(self, interaction: discord.Interaction[DoubaoBot], error: Exception) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        await explain_error(interaction, error)
