"""The break-glass screen for AssumeRoot profiles (issue 15), over the FakeDaemonClient: the
member account and the task are picked (each task with what it permits) and sent with the
request; stored-root-key profiles show no such pickers."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select
from vaultd.tui.app import VaultApp
from vaultd.tui.breakglass import READY_HINT, SOURCE_CODE_HINT, TARGET_HINT
from vaultd.tui.grant import GrantPanel
from vaultd.tui.root_target import RootTarget

from vaultd.core.assume_root import ROOT_TASKS, TASK_ARN_PREFIX

from .conftest import SIZE, wait_for
from .fakes import ROOT_CODE, FakeDaemonClient, FakeProfile
from .test_breakglass import REASON, fill, open_screen, start_disabled, text

AUDIT = TASK_ARN_PREFIX + "IAMAuditRootUserCredentials"
DELETE = TASK_ARN_PREFIX + "IAMDeleteRootUserCredentials"


@pytest.fixture(autouse=True)
def org_profiles(fake: FakeDaemonClient) -> None:
    fake.profiles += [
        FakeProfile("root", root=True),
        FakeProfile("member-a", kind="assume_root", target_account="111122223333", root_task=AUDIT),
        FakeProfile("member-b", kind="assume_root", target_account="444455556666", root_task=AUDIT),
    ]


async def test_pickers_show_for_assume_root_only_with_the_profiles_defaults(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        target = screen.query_one(RootTarget)
        options = [str(o[0]) for o in screen.query_one("#profile", Select)._options[1:]]
        assert {"root", "member-a", "member-b"} <= set(options) and "admin" not in options
        await fill(pilot, app, profile="root", code=ROOT_CODE)
        assert not target.display
        await fill(pilot, app, profile="member-b", code=ROOT_CODE)
        assert target.display
        account, task = screen.query_one("#account", Select), screen.query_one("#task", Select)
        assert account.selection == "444455556666" and task.selection == AUDIT
        assert [str(o[0]) for o in account._options[1:]] == [
            "111122223333 (member-a)",
            "444455556666 (member-b)",
        ]
        labels = [str(o[0]) for o in task._options[1:]]
        assert labels == [f"{name} — {what}" for name, what in ROOT_TASKS.items()]
        assert text(app, "#bg-hint") == READY_HINT
        await fill(pilot, app, profile="member-b", code="12")
        assert text(app, "#bg-hint") == SOURCE_CODE_HINT


async def test_the_picked_account_and_task_go_with_the_request(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    fake.fido2_pin = "0815"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        await fill(pilot, app, profile="member-a", pin="0815", code=ROOT_CODE)
        screen.query_one("#account", Select).value = "444455556666"
        screen.query_one("#task", Select).value = DELETE
        await pilot.pause()
        screen.query_one("#code", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: fake.requests("breakglass"), "sent")
        assert fake.requests("breakglass") == [
            {"profile": "member-a", "reason": REASON, "code": ROOT_CODE, "pin": "0815",
             "account": "444455556666", "task": DELETE}
        ]  # fmt: skip
        panel = screen.query_one("#grant", GrantPanel)
        await wait_for(pilot, lambda: panel.showing, "credentials shown")


async def test_no_task_sends_nothing(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        await fill(pilot, app, profile="member-a", code=ROOT_CODE)
        screen.query_one("#task", Select).clear()
        await pilot.pause()
        assert start_disabled(app) and text(app, "#bg-hint") == TARGET_HINT
        await pilot.click("#start")
        assert fake.requests("breakglass") == []
