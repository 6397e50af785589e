"""approval.prompt: which dialog asks a client with a display but no terminal, and what its
answer does (docs/threat-model.md T2: cancel denies, a failure releases nothing).

The rule (`prompt_dialog`) and `VaultService` with fakes at every port (the core is tested with
fakes alone); the dialog port is a fake answering as a dialog would.  The real dialogs are run
in tests/unit/system/test_prompt_drivers.py and, through a real daemon and pinentry-curses, in
tests/integration/daemon/test_prompt_pinentry.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

import pytest

from vaultd.core.approvals import prompt_dialog
from vaultd.core.model import (
    ClientDisplay,
    CodePrompt,
    LongTermCredentials,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
)
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.service import Ports, VaultService
from vaultd.errors import ApprovalUnavailable, CodeMalformed, Denied, PromptFailed, VaultError
from vaultd.testing.clock import FakeClock

T = TypeVar("T")
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
IDE = Requester(pid=7, uid=1000, executable="/usr/bin/code")
X11 = ClientDisplay(display=":0")


@pytest.mark.parametrize(
    ("setting", "interactive", "approvers", "display", "expected"),
    [
        ("auto", True, 0, X11, None),  # the client's own terminal asks
        ("auto", False, 1, X11, None),  # a running TUI asks
        ("auto", False, 0, X11, "pinentry"),
        ("auto", False, 0, None, None),  # no display: APPROVAL_UNAVAILABLE as before
        ("zenity", False, 1, X11, "zenity"),  # a named dialog is used even with a TUI open
        ("kdialog", True, 0, X11, None),
        ("osascript", False, 0, ClientDisplay(display="aqua"), "osascript"),
        ("pinentry", False, 0, None, None),
        ("terminal", False, 0, X11, None),
        ("none", False, 0, X11, None),
    ],
)
def test_which_dialog(
    setting: str,
    interactive: bool,
    approvers: int,
    display: ClientDisplay | None,
    expected: str | None,
) -> None:
    got = prompt_dialog(setting, interactive=interactive, approvers=approvers, display=display)
    assert got == expected


class Sts:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.codes: list[object] = []

    def get_session_token(
        self, credentials: LongTermCredentials, **kw: object
    ) -> SessionCredentials:
        self.codes.append(kw["token_code"])
        return SessionCredentials("ASIAFAKE", "s", "t", self.clock.now() + timedelta(hours=1))


class Secrets:
    def key_pair(self, name: str) -> LongTermCredentials:
        return LongTermCredentials("AKIAEXAMPLE000000001", "x" * 40)


class Audit:
    def __init__(self) -> None:
        self.events: list[str] = []

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        self.events.append(event)

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        self.record(event, fields)


class State:
    def save_ledger(self, data: dict[str, object]) -> None:
        pass


class Dialog:
    """A fake dialog: answers ``answer`` (a code, None for cancel, or an error to raise), or
    stays open until cancelled when ``answer`` is ``...``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.asked: list[CodePrompt] = []
        self.closed = False

    async def ask_code(self, prompt: CodePrompt) -> str | None:
        self.asked.append(prompt)
        if self.answer is ...:
            try:
                await asyncio.Event().wait()
            finally:
                self.closed = True
        if isinstance(self.answer, VaultError):
            raise self.answer
        assert self.answer is None or isinstance(self.answer, str)
        return self.answer


async def run(fn: Callable[[], T]) -> T:
    return fn()


class World:
    def __init__(self, answer: object, *, setting: str = "auto", approvers: int = 0) -> None:
        self.clock = FakeClock()
        self.sts = Sts(self.clock)
        self.audit = Audit()
        self.dialog = Dialog(answer)
        ports = Ports(
            self.clock, self.sts, Secrets(), self.audit, State(), run, run, prompter=self.dialog
        )  # type: ignore[arg-type]  # Sts fakes only the call made here
        dev = Profile("dev", ProfileKind.SESSION, credentials="dev", mfa_serial=SERIAL)
        self.service = VaultService(
            {"dev": dev}, ports, ledger=OtpLedger(), prompt=setting, approvers=lambda: approvers
        )

    async def ask(self, display: ClientDisplay | None = X11) -> SessionCredentials:
        return await asyncio.wait_for(self.service.credentials("dev", IDE, display=display), 10)


async def test_the_code_typed_in_the_dialog_releases_the_session() -> None:
    world = World("493817")
    creds = await world.ask()
    assert creds.access_key_id == "ASIAFAKE" and world.sts.codes == ["493817"]
    (prompt,) = world.dialog.asked
    assert (prompt.driver, prompt.profile, prompt.serial) == ("pinentry", "dev", SERIAL)
    assert prompt.requester == IDE and prompt.where == X11 and prompt.timeout > 0
    assert "approval_granted" in world.audit.events


async def test_cancel_denies() -> None:
    world = World(None)
    with pytest.raises(Denied):
        await world.ask()
    assert world.sts.codes == [] and "approval_denied" in world.audit.events


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (PromptFailed("pinentry exited before it answered"), PromptFailed),
        ("12ab", CodeMalformed),
        ("1234567", CodeMalformed),
        ("", CodeMalformed),
    ],
)
async def test_a_failed_dialog_or_a_bad_answer_releases_nothing(
    answer: object, error: type[VaultError]
) -> None:
    world = World(answer)
    with pytest.raises(error):
        await world.ask()
    assert world.sts.codes == [] and world.service.approvals.pending() == []
    assert "release" not in world.audit.events


async def test_no_display_is_unavailable_as_before() -> None:
    world = World("493817")
    with pytest.raises(ApprovalUnavailable):
        await world.ask(display=None)
    assert world.dialog.asked == []


async def test_a_tui_is_preferred_by_auto_and_a_named_dialog_is_not() -> None:
    world = World("493817", approvers=1)
    task = asyncio.create_task(world.ask())
    for _ in range(100):
        await asyncio.sleep(0)
    assert world.dialog.asked == [] and len(world.service.approvals.pending()) == 1
    task.cancel()
    named = World("493817", setting="zenity", approvers=1)
    await named.ask()
    assert [p.driver for p in named.dialog.asked] == ["zenity"]


async def test_an_answer_from_elsewhere_closes_the_dialog() -> None:
    world = World(...)
    task = asyncio.create_task(world.ask())
    for _ in range(100):
        await asyncio.sleep(0)
    (pending,) = world.service.approvals.pending()
    await world.service.approve(pending.id, "493817")
    await task
    assert world.dialog.closed and world.sts.codes == ["493817"]
