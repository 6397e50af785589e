"""Every path of the approval dialog, with Pilot over the FakeDaemonClient (T2: deny by default)."""

from __future__ import annotations

from dataclasses import replace

from textual.pilot import Pilot
from textual.widgets import Button, Input, Label
from vaultd.tui.app import VaultApp
from vaultd.tui.approval import CODE_HINT, TOUCH_HINT, ApprovalDialog
from vaultd.tui.events import EventsScreen

from vaultd.core.approvals import ApprovalState
from vaultd.core.model import ApprovalMethod
from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import MFA_DEVICE, REQUESTER, FakeDaemonClient


def dialog(app: VaultApp) -> ApprovalDialog:
    assert isinstance(app.screen, ApprovalDialog)
    return app.screen


def label(app: VaultApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def state(fake: FakeDaemonClient, approval_id: str) -> ApprovalState:
    return fake.book._records[approval_id].approval.state


def shown(app: VaultApp) -> bool:
    """An approval dialog is up and has drawn its countdown."""
    screen = app.screen
    return isinstance(screen, ApprovalDialog) and bool(label(app, "#countdown"))


async def open_dialog(pilot: Pilot[None], app: VaultApp, fake: FakeDaemonClient) -> str:
    """Connect, open an approval for dev and wait for its dialog; returns its id."""
    await wait_for(pilot, lambda: app.connection == "connected", "connected")
    approval = fake.open_approval("dev")
    await wait_for(pilot, lambda: shown(app), "dialog")
    return approval.id


async def test_dialog_shows_requester_and_focuses_code(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        details = str(app.screen.query_one("#details").render())
        for expected in ("dev", "credential_process", "aws s3 ls", "pid 4200", "/home/alice/infra"):
            assert expected in details
        assert "pid 4242 /usr/bin/python3.11" in details
        assert label(app, "#countdown") == "expires in 0:00:50"
        assert app.focused is app.screen.query_one("#code", Input)
        assert dialog(app).approval.id == approval_id


async def test_dialog_shows_the_processes_that_join_it(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    """docs/threat-model.md T31: each process riding this approval is listed (escaped)."""
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        assert not app.screen.query_one("#joined").display
        for pid, executable in ((5151, "/usr/bin/terraform"), (5152, "[red]/tmp/x")):
            fake.book.join(approval_id, replace(REQUESTER, pid=pid, executable=executable))
        joined = app.screen.query_one("#joined")
        await wait_for(pilot, lambda: "5152" in str(joined.render()), "joiners shown")
        assert str(joined.render()).splitlines() == [
            "also waiting: pid 5151 (/usr/bin/terraform)",
            "also waiting: pid 5152 ([red]/tmp/x)",
        ]
        assert joined.display and dialog(app).approval.id == approval_id


async def test_dialog_names_the_mfa_device(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_dialog(pilot, app, fake)
        details = str(app.screen.query_one("#details").render())
        assert f"MFA device {MFA_DEVICE}" in details.splitlines()


async def test_approve_by_code_sends_it_to_the_daemon(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        await pilot.press(*"123456", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ApprovalDialog), "closed")
        await wait_for(pilot, lambda: fake.requests("approve"), "approve sent")
        assert fake.requests("approve") == [{"id": approval_id, "code": "123456"}]
        assert state(fake, approval_id) is ApprovalState.APPROVED
        assert fake.requests("deny") == []


async def test_approve_button_with_a_complete_code(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        await pilot.press(*"654321")
        await pilot.click("#approve")
        await wait_for(pilot, lambda: fake.requests("approve"), "approve sent")
        assert fake.requests("approve") == [{"id": approval_id, "code": "654321"}]


async def test_enter_with_incomplete_code_does_not_approve(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        await pilot.press("enter")  # untouched dialog: Enter on the initial focus
        await pilot.press(*"123", "enter")
        await pilot.press("x", "y", "enter")  # letters are refused by the field
        await pilot.click("#approve")
        await pilot.pause()
        assert isinstance(app.screen, ApprovalDialog)
        assert label(app, "#hint") == CODE_HINT
        assert app.screen.query_one("#code", Input).value == "123"
        assert fake.requests("approve") == []
        assert state(fake, approval_id) is ApprovalState.PENDING


async def test_escape_denies(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        await pilot.press("1", "2", "escape")
        await wait_for(pilot, lambda: fake.requests("deny"), "deny sent")
        assert fake.requests("deny") == [{"id": approval_id}]
        assert fake.requests("approve") == []
        assert state(fake, approval_id) is ApprovalState.DENIED
        assert not isinstance(app.screen, ApprovalDialog)


async def test_deny_button_denies(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        await pilot.click("#deny")
        await wait_for(pilot, lambda: fake.requests("deny"), "deny sent")
        assert fake.requests("deny") == [{"id": approval_id}]
        assert state(fake, approval_id) is ApprovalState.DENIED


async def test_timeout_closes_without_approving(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_dialog(pilot, app, fake)
        await pilot.press(*"123456")  # typed but never submitted
        clock.advance(49)
        await wait_for(pilot, lambda: label(app, "#countdown") == "expires in 0:00:01", "1 s")
        clock.advance(1)
        await wait_for(pilot, lambda: not isinstance(app.screen, ApprovalDialog), "closed")
        await wait_for(
            pilot,
            lambda: any("dev timed out" in str(n.message) for n in app._notifications),
            "timed-out notice",
        )
        assert fake.requests("approve") == []
        assert fake.requests("deny") == []
        assert app.pending == ()


async def test_three_pending_requests_queue_visibly(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        first = await open_dialog(pilot, app, fake)
        second = fake.open_approval("admin").id
        fake.open_approval("ops")
        await wait_for(pilot, lambda: label(app, "#queue") == "request 1 of 3", "1 of 3")
        assert dialog(app).approval.id == first
        await pilot.press("escape")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ApprovalDialog) and app.screen.approval.id == second,
            "the next request",
        )
        await wait_for(pilot, lambda: label(app, "#queue") == "request 1 of 2", "1 of 2")
        assert fake.requests("deny") == [{"id": first}]


async def test_resolved_elsewhere_closes_the_dialog(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        approval_id = await open_dialog(pilot, app, fake)
        fake.book.approve(approval_id, code="111111")  # e.g. `vaultd approve ID --code ...`
        await wait_for(pilot, lambda: not isinstance(app.screen, ApprovalDialog), "closed")
        assert fake.requests("approve") == [] and fake.requests("deny") == []


async def test_touch_approval_has_no_code_field(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        fake.open_approval("ops", ApprovalMethod.TOUCH)
        await wait_for(pilot, lambda: shown(app), "dialog")
        assert label(app, "#touch") == TOUCH_HINT
        assert not app.screen.query("#code") and not app.screen.query("#approve")
        assert app.focused is app.screen.query_one("#deny", Button)
        await pilot.press("enter")  # Enter on Deny denies
        await wait_for(pilot, lambda: fake.requests("deny"), "deny sent")
        assert fake.requests("approve") == []


async def test_pops_up_over_the_events_view(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("a")
        assert isinstance(app.screen, EventsScreen)
        fake.open_approval("dev")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalDialog), "dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "back to events")


async def test_poll_finds_an_approval_opened_before_start(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    approval = fake.open_approval("admin")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: shown(app), "dialog")
        assert dialog(app).approval.id == approval.id


async def test_requester_text_is_shown_literally_not_as_markup(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    """A process picks its own command line and cwd: markup in them must not restyle the dialog."""
    sneaky = replace(
        REQUESTER, parent_command="[on white][white]rm -rf ~[/] [b]ls", cwd="/tmp/[red]x[/red]"
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        fake.open_approval("dev", requester=sneaky)
        await wait_for(pilot, lambda: shown(app), "dialog")
        details = str(app.screen.query_one("#details").render())
        assert "[on white][white]rm -rf ~[/] [b]ls (pid 4200)" in details
        assert "/tmp/[red]x[/red]" in details
