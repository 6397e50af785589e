"""The break-glass screen over the FakeDaemonClient (which mirrors vaultd.core.breakglass).

Nothing is sent before the form is complete; the credentials are read once into the panel,
"End now" and leaving wipe them, a second read gets GRANT_USED, and refusals are shown.
"""

from __future__ import annotations

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TextArea
from textual.widgets._footer import FooterKey
from vaultd.tui.app import VaultApp
from vaultd.tui.approval import ApprovalDialog
from vaultd.tui.breakglass import (
    CODE_HINT,
    PIN_HINT,
    PROFILE_HINT,
    READY_HINT,
    REASON_HINT,
    TOUCH_PROMPT,
    BreakGlassScreen,
)
from vaultd.tui.dashboard import DashboardScreen
from vaultd.tui.grant import SHOWN_ONCE, GrantPanel

from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import ROOT_CODE, ROOT_KEY_ID, ROOT_SECRET, ROOT_TOKEN, FakeDaemonClient, FakeProfile

REASON = "MFA lost"  # 8 characters: the shortest the daemon takes
PIN = "0815"


@pytest.fixture(autouse=True)
def root_profile(fake: FakeDaemonClient) -> None:
    fake.profiles.append(FakeProfile("root", root=True))


def text(app: VaultApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def start_disabled(app: VaultApp) -> bool:
    return app.screen.query_one("#start", Button).disabled


def secret_on_screen(app: VaultApp) -> bool:
    """Whether any widget on the current screen shows the root secret."""
    areas = (a.text for a in app.screen.query(TextArea))
    statics = (str(s.render()) for s in app.screen.query(Static))
    return any(ROOT_SECRET in t or ROOT_TOKEN in t for t in (*areas, *statics))


async def open_screen(pilot: Pilot[None], app: VaultApp) -> BreakGlassScreen:
    await wait_for(pilot, lambda: app.connection == "connected", "connected")
    await wait_for(pilot, lambda: app.daemon_status is not None, "status")
    await pilot.press("b")
    screen = app.screen
    assert isinstance(screen, BreakGlassScreen)
    await pilot.pause()
    return screen


async def fill(
    pilot: Pilot[None],
    app: VaultApp,
    *,
    profile: str = "root",
    reason: str = REASON,
    pin: str = PIN,
    code: str = "",
    typed: bool = False,
) -> None:
    """Fill the form: ``typed`` with the keyboard (slow under Pilot), else by setting values."""
    select = app.screen.query_one("#profile", Select)
    if profile and typed:
        select.focus()
        await pilot.press("enter", *profile, "enter")
    elif profile:
        select.value = profile
    for selector, value in (("#reason", reason), ("#pin", pin), ("#code", code)):
        field = app.screen.query_one(selector, Input)
        field.focus()
        if typed:
            await pilot.press(*value)
        else:
            field.value = value
    await pilot.pause()
    assert select.selection == (profile or None)


async def test_b_and_the_footer_open_the_screen_with_root_profiles_only(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        select = screen.query_one("#profile", Select)
        # Only what the daemon marks root: not the IAM-user session profiles, not roles.
        assert [str(o[0]) for o in select._options[1:]] == ["root"]
        assert start_disabled(app) and text(app, "#bg-hint") == PROFILE_HINT
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        key = next(k for k in app.screen.query(FooterKey) if k.key == "b")
        await pilot.click(key)
        await wait_for(pilot, lambda: isinstance(app.screen, BreakGlassScreen), "by mouse")


@pytest.mark.parametrize(
    ("fields", "hint"),
    [
        ({"reason": "", "code": ROOT_CODE}, REASON_HINT),
        ({"reason": " MFA    ", "code": ROOT_CODE}, REASON_HINT),
        ({"pin": "", "code": ROOT_CODE}, PIN_HINT),
        ({"code": ""}, CODE_HINT),
        ({"code": "24681"}, CODE_HINT),
        ({"profile": "", "code": ROOT_CODE}, PROFILE_HINT),
    ],
    ids=["no-reason", "short-reason", "no-pin", "no-code", "incomplete-code", "no-profile"],
)
async def test_incomplete_form_sends_nothing(
    app: VaultApp, fake: FakeDaemonClient, fields: dict[str, str], hint: str
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, app)
        await fill(pilot, app, **fields)
        assert start_disabled(app)
        await pilot.press("enter")  # Enter in the code field
        await pilot.click("#start")
        await pilot.press("x", "y")  # letters never reach the code field
        await pilot.pause()
        assert text(app, "#bg-hint") == hint
        assert app.screen.query_one("#code", Input).value == fields["code"]
        assert text(app, "#bg-touch") == ""
        assert fake.requests("breakglass") == [] and fake.requests("grant") == []
        assert fake.audit_log == []


async def test_keys_typed_right_after_tab_land_in_the_next_field(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    """A burst of keys, as a terminal delivers fast typing: posted at once, where ``pilot.press``
    would wait for the app to go idle after each key (and so hide the race)."""
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        screen.query_one("#profile", Select).value = "root"
        screen.query_one("#reason", Input).focus()
        await pilot.pause()
        for key in [*REASON, "tab", *PIN, "tab", *ROOT_CODE, "shift+tab"]:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause()
        values = [screen.query_one(s, Input).value for s in ("#reason", "#pin", "#code")]
        assert values == [REASON, PIN, ROOT_CODE]
        assert app.focused is screen.query_one("#pin", Input)
        assert fake.requests("breakglass") == []


async def test_success_shows_the_credentials_once_and_end_now_clears_them(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    fake.fido2_pin = "0815"
    fake.hold_touch = True
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        await fill(pilot, app, code=ROOT_CODE, typed=True)
        assert not start_disabled(app) and text(app, "#bg-hint") == READY_HINT
        await pilot.press("enter")
        await wait_for(pilot, lambda: fake.requests("breakglass"), "sent")
        assert fake.requests("breakglass") == [
            {"profile": "root", "reason": REASON, "code": ROOT_CODE, "pin": "0815"}
        ]
        # Waiting for the touch: said on the screen, no approval dialog for it, factors gone.
        assert text(app, "#bg-touch") == TOUCH_PROMPT
        await wait_for(pilot, lambda: fake.book.pending(), "touch pending")
        await pilot.pause(0.05)
        assert app.screen is screen and not isinstance(app.screen, ApprovalDialog)
        assert start_disabled(app)
        assert [screen.query_one(s, Input).value for s in ("#pin", "#code")] == ["", ""]
        assert fake.requests("grant") == []

        fake.touch()
        panel = screen.query_one("#grant", GrantPanel)
        await wait_for(pilot, lambda: panel.showing, "credentials shown")
        grant_id = next(iter(fake.grants))
        assert fake.requests("grant") == []  # the credentials came in the breakglass reply
        assert screen.query_one("#credentials", TextArea).text.splitlines() == [
            f"export AWS_ACCESS_KEY_ID={ROOT_KEY_ID}",
            f"export AWS_SECRET_ACCESS_KEY={ROOT_SECRET}",
            f"export AWS_SESSION_TOKEN={ROOT_TOKEN}",
            "export AWS_CREDENTIAL_EXPIRATION=2026-01-01T12:15:00Z",
        ]
        assert str(screen.query_one("#shown-once", Label).render()) == SHOWN_ONCE
        assert text(app, "#bg-touch") == "" and text(app, "#bg-error") == ""
        assert text(app, "#grant-countdown") == "session expires in 0:15:00"
        clock.advance(61)
        await wait_for(
            pilot, lambda: text(app, "#grant-countdown") == "session expires in 0:13:59", "tick"
        )
        assert screen.query_one("#reason", Input).value == ""
        assert not any(ROOT_SECRET in str(n.message) for n in app._notifications)

        await pilot.click("#end-now")
        await wait_for(pilot, lambda: fake.requests("grant_end"), "grant_end sent")
        assert fake.requests("grant_end") == [{"id": grant_id}]
        assert not panel.showing and not panel.display and not secret_on_screen(app)
        await wait_for(pilot, lambda: fake.grants == {}, "grant dropped")
        assert [r["event"] for r in fake.audit_log] == [
            "breakglass_requested",
            "breakglass_factor",
            "breakglass_granted",
            "breakglass_read",
            "breakglass_ended",
        ]


async def succeed(pilot: Pilot[None], app: VaultApp, fake: FakeDaemonClient) -> GrantPanel:
    await open_screen(pilot, app)
    await fill(pilot, app, code=ROOT_CODE)
    await pilot.click("#start")
    panel = app.screen.query_one("#grant", GrantPanel)
    await wait_for(pilot, lambda: panel.showing, "credentials shown")
    return panel


async def test_leaving_clears_and_the_grant_cannot_be_shown_again(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        panel = await succeed(pilot, app, fake)
        area = panel.query_one("#credentials", TextArea)
        assert ROOT_SECRET in area.text
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        assert area.text == "" and not panel.showing
        await wait_for(
            pilot,
            lambda: (
                "1 break-glass grant(s) active"
                in str(app.screen.query_one("#daemon", Static).render())
            ),
            "grant on the dashboard",
        )

        screen = await open_screen(pilot, app)
        table = screen.query_one("#grants", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "grant listed")
        assert [str(c) for c in table.get_row_at(0)][1:4] == ["root", "0:15:00", "yes"]
        assert not secret_on_screen(app)
        table.focus()
        await pilot.press("enter")  # nothing shows it again: no op reads a grant by id
        await pilot.pause()
        assert fake.requests("grant") == []
        assert not screen.query_one("#grant", GrantPanel).showing and not secret_on_screen(app)

        await pilot.click("#end-grant")
        await wait_for(pilot, lambda: table.row_count == 0, "grant ended")
        assert len(fake.requests("grant_end")) == 1 and fake.grants == {}


@pytest.mark.parametrize(
    ("profile", "pin", "code", "error"),
    [
        ("root", "9999", ROOT_CODE, "FIDO2_PIN_INVALID: "),
        ("root", "0815", "135790", "MFA_REJECTED: "),
    ],
)
async def test_refusals_are_shown_and_release_nothing(
    app: VaultApp, fake: FakeDaemonClient, profile: str, pin: str, code: str, error: str
) -> None:
    fake.fido2_pin = PIN
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, app)
        await fill(pilot, app, profile=profile, pin=pin, code=code)
        await pilot.press("enter")
        await wait_for(pilot, lambda: text(app, "#bg-error").startswith(error), error)
        assert fake.requests("grant") == [] and fake.grants == {}
        assert text(app, "#bg-touch") == ""
        assert app.screen.query_one("#code", Input).value == ""  # a sent code is not reused
        assert app.screen.query_one("#reason", Input).value == REASON  # kept for a retry
        assert fake.audit_log[-1]["event"] == "breakglass_refused"


async def test_leaving_while_the_touch_is_awaited(app: VaultApp, fake: FakeDaemonClient) -> None:
    fake.hold_touch = True
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, app)
        await fill(pilot, app, code=ROOT_CODE)
        await pilot.press("enter")
        await wait_for(pilot, lambda: fake.book.pending(), "touch pending")
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        fake.touch()  # the daemon still makes the grant; nobody reads it
        await wait_for(pilot, lambda: fake.grants, "grant made")
        await pilot.press("b")
        table = app.screen.query_one("#grants", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "grant listed")
        assert [str(c) for c in table.get_row_at(0)][3] == "yes"  # sent to the left screen
        assert fake.requests("grant") == [] and not secret_on_screen(app)


async def test_expiry_wipes_the_credentials(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        panel = await succeed(pilot, app, fake)
        clock.advance(900)
        await wait_for(pilot, lambda: not panel.showing, "wiped at expiry")
        assert not panel.display and not secret_on_screen(app)
        assert fake.requests("grant_end") == []  # it ended at AWS by itself
