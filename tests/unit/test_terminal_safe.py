"""docs/threat-model.md T35: outside text never reaches a terminal with its escapes live.

One source per printer: an STS error message (the CLI's error printer), a break-glass reason
and a program name (the TUI's audit view and approval dialog), record metadata (`vaultd list`
marks it unverified), and the credential_process prompt's copy of the sanitiser.
"""

from __future__ import annotations

import argparse
import shlex
from datetime import UTC, datetime

import pytest

from vaultd import cli, credproc, errors
from vaultd.commands import status
from vaultd.core.termtext import terminal_safe

HOSTILE = "a\x1b]0;owned\x07\x1b[2J\x9b31m\x85\rfake OK\u202etxt\u2066\n\tz\x7f"
SAFE = "a\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x85\\x0dfake OK\\u202etxt\\u2066\\x0a\\x09z\\x7f"


def _live(text: str) -> bool:
    """Whether ``text`` still holds anything a terminal would act on."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u202e\u2066" for c in text)


def test_every_escape_is_shown_not_obeyed() -> None:
    assert terminal_safe(HOSTILE) == SAFE
    assert terminal_safe("ok\n\tline\r", multiline=True) == "ok\n\tline\\x0d"
    assert terminal_safe("plain ünïcode → text") == "plain ünïcode → text"
    assert terminal_safe(SAFE) == SAFE  # idempotent: a second pass changes nothing


def test_the_credproc_copy_agrees_on_every_character() -> None:
    text = "".join(map(chr, range(0x2100)))
    assert credproc._clean(text, limit=len(text)) == terminal_safe(text)


def test_an_sts_message_reaches_stderr_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command raises what the STS adapter raises for a hostile <Message>."""

    def hostile(args: argparse.Namespace) -> int:
        raise errors.StsError(f"STS refused GetSessionToken: {HOSTILE}")

    monkeypatch.setattr(status, "run", hostile)
    assert cli.main(["status"]) == errors.StsError.exit_status
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"vaultd: STS_ERROR: STS refused GetSessionToken: {SAFE}\n"


def test_a_break_glass_reason_in_the_audit_view_is_escaped() -> None:
    from vaultd.tui.data import AuditRecord  # type: ignore[import-not-found,unused-ignore]
    from vaultd.tui.events import audit_cells  # type: ignore[import-not-found,unused-ignore]

    record = AuditRecord(
        seq=1,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        event="breakglass_open",
        profile="root",
        outcome="ok",
        client=f"pid 1 /usr/bin/{HOSTILE}",
        detail=f"reason: {HOSTILE}",
        critical=True,
    )
    cells = audit_cells(record)
    assert not any(_live(cell.plain) for cell in cells)
    assert cells[-1].plain == f"reason: {SAFE}"


def test_a_program_name_in_the_approval_dialog_is_escaped_markup_too() -> None:
    from vaultd.tui.approval import _describe  # type: ignore[import-not-found,unused-ignore]
    from vaultd.tui.data import PendingApproval  # type: ignore[import-not-found,unused-ignore]

    at = datetime(2026, 1, 1, tzinfo=UTC)
    approval = PendingApproval(
        id="a1",
        profile="dev",
        action="credential_process",
        methods="code",
        state="pending",
        created_at=at,
        expires_at=at,
        pid=7,
        executable="/bin/x",
        cwd="/",
        parent_pid=6,
        parent_command=f"[b]{HOSTILE}",
        mfa_serial="arn:aws:iam::123456789012:mfa/alice",
    )
    text = _describe(approval)
    assert not _live(text.replace("\n", ""))
    assert f"\\[b]{SAFE}" in text


def test_break_glass_exports_are_shell_quoted() -> None:
    value = "tok'en;$(rm -rf ~)"
    assert shlex.split(f"export X={shlex.quote(value)}") == ["export", f"X={value}"]
