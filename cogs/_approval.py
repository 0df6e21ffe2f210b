"""Approve / Reject on a request posted in the mod log, and the modal asking for the reason of a rejection. Like
the job buttons, they carry the job id in their custom_id (`approval:<action>:<job id>`) and keep working after a
restart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from cogs._buttons import MODAL_TIMEOUT
from cogs._replies import answer_in_server_language, language_of, text
from cogs._tree import explain_error
from core.errors import UserFacingError
from core.i18n import t
from core.job import Job

if TYPE_CHECKING:
    from bot import DoubaoBot

# The two buttons, by the name their custom_id carries, in the order they are shown (labels: `button.<name>`).
APPROVAL_STYLES = {"approve": discord.ButtonStyle.success, "reject": discord.ButtonStyle.danger}


class ApprovalButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"approval:(?P<action>{'|'.join(APPROVAL_STYLES)}):(?P<job_id>[0-9a-f]{{32}})",
):
    """Approve / Reject on a request posted in the mod channel, for members who may manage messages there."""

    def __init__(self, action: str, job_id: str, language: str = "en") -> None:
        super().__init__(
            discord.ui.Button(
                label=t(language, f"button.{action}"),
                style=APPROVAL_STYLES[action],
                custom_id=f"approval:{action}:{job_id}",
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ApprovalButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[DoubaoBot]) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        try:
            await answer_in_server_language(interaction)
            if not interaction.permissions.manage_messages:
                raise UserFacingError("error.not_a_moderator")
            # The request is clickable before the bot has stored its id: the click says which message it is.
            request_id = interaction.message.id if interaction.message else None
            if self.action == "reject":
                modal = RejectModal(
                    self.job_id, language_of(interaction), opened_by=interaction.id, request_id=request_id
                )
                await interaction.response.send_modal(modal)
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            approved = await interaction.client.jobs.approve(
                self.job_id, interaction.user.id, request_message_id=request_id
            )
            await interaction.followup.send(
                text(interaction, "approval.done" if approved else "error.already_decided"), ephemeral=True
            )
        except Exception as error:
            await explain_error(interaction, error)


def approval_view(job: Job, language: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in APPROVAL_STYLES:
        view.add_item(ApprovalButton(action, job.id, language))
    return view


class RejectModal(discord.ui.Modal):
    def __init__(self, job_id: str, language: str, *, opened_by: int, request_id: int | None) -> None:
        # One modal per click: discord.py keys open modals by custom_id, and two moderators may reject at once.
        super().__init__(
            title=t(language, "modal.reject_title"), custom_id=f"reject:{job_id}:{opened_by}", timeout=MODAL_TIMEOUT
        )
        self.job_id = job_id
        self.request_id = request_id
        self.reason = discord.ui.TextInput(
            label=t(language, "modal.reason_label"),
            custom_id="reason",
            style=discord.TextStyle.paragraph,
            max_length=500,
            required=False,
        )
        self.add_item(self.reason)

    async def on_submit(self, interaction: discord.Interaction[DoubaoBot]) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        await answer_in_server_language(interaction)
        reason = self.reason.value.strip() or None
        await interaction.response.defer(ephemeral=True, thinking=True)  # settling talks to Discord several times
        rejected = await interaction.client.jobs.reject(
            self.job_id, interaction.user.id, reason, request_message_id=self.request_id
        )
        await interaction.followup.send(
            text(interaction, "approval.done" if rejected else "error.already_decided"), ephemeral=True
        )

    async def on_error(self, interaction: discord.Interaction[DoubaoBot], error: Exception) -> None:  # pyright: ignore[reportIncompatibleMethodOverride] - only this bot's interactions reach it
        await explain_error(interaction, error)
