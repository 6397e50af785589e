"""The AssumeRoot part of the break-glass form: which member account, which root task.

Shown only while an AssumeRoot profile is chosen.  The accounts are those of the configured
AssumeRoot profiles (the daemon's ``status``); each task is listed with one line saying what it
permits.  The daemon checks the pick again (and the ``vaultd:AssumeRoot`` policy) before any
touch is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select

from vaultd.core.assume_root import ROOT_TASKS, TASK_ARN_PREFIX

from .data import ProfileRow

ASSUME_ROOT_KIND = "assume_root"
TASK_CHOICES = tuple(
    (f"{name} — {text}", TASK_ARN_PREFIX + name) for name, text in ROOT_TASKS.items()
)


class RootTarget(Horizontal):
    """Account and task pickers for an AssumeRoot profile (hidden for stored root keys)."""

    DEFAULT_CSS = """
    RootTarget { height: auto; display: none; }
    RootTarget #account { width: 36; }
    RootTarget #task { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Select[str]([], prompt="member account…", id="account")
        yield Select[str](TASK_CHOICES, prompt="root task…", id="task")

    def show(self, profile: ProfileRow | None, profiles: Sequence[ProfileRow]) -> None:
        """Offer the accounts of ``profiles`` and preselect ``profile``'s account and task."""
        self.display = profile is not None and profile.kind == ASSUME_ROOT_KIND
        if profile is None or not self.display:
            return
        accounts: dict[str, str] = {}
        for p in profiles:
            if p.kind == ASSUME_ROOT_KIND and p.target_account:
                accounts.setdefault(p.target_account, f"{p.target_account} ({p.name})")
        account = self.query_one("#account", Select)
        account.set_options((label, value) for value, label in accounts.items())
        if profile.target_account in accounts:
            account.value = profile.target_account
        if profile.root_task in dict((v, k) for k, v in TASK_CHOICES):
            self.query_one("#task", Select).value = profile.root_task

    def picked(self) -> tuple[str, str] | None:
        """``(account, task ARN)`` while shown and complete; None for root keys.

        Raises ``LookupError`` when shown but incomplete."""
        if not self.display:
            return None
        account = self.query_one("#account", Select).selection
        task = self.query_one("#task", Select).selection
        if account is None or task is None:
            raise LookupError("choose the member account and the root task")
        return str(account), str(task)
