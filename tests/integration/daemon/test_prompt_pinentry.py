"""approval.prompt through a real daemon: a client with a display but no terminal is asked by
pinentry (docs/threat-model.md T2).

Real `vaultd serve` on a SoftHSM2 token, a real credential_process client in a session of its
own (no terminal) with ``DISPLAY`` set, FakeSts.  The dialog is the real ``pinentry-curses``,
standing in for the graphical flavours: a ``pinentry`` on the daemon's PATH that runs it on a
tmux pane (``--ttyname``), where the test types the code with ``tmux send-keys`` as a person
would.  A stand-in pinentry that answers garbage shows the failure path end to end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation
from vaultd.testing.tmux import TmuxServer, tmux_server

MakeVault = Callable[..., Installation]
CODE = "493817"
AUTO = {"approval": {"prompt": "auto", "out_of_band": False}}


@pytest.fixture
def pane() -> Iterator[TmuxServer]:
    """A private tmux server whose one pane (session ``pin``) is the terminal pinentry-curses
    draws on."""
    if shutil.which("tmux") is None or shutil.which("pinentry-curses") is None:
        pytest.skip("needs tmux and pinentry-curses (apt-get install tmux pinentry-curses)")
    with tmux_server("pin") as server:
        server.run("new-session", "-d", "-s", "pin", "-x", "100", "-y", "30", "sleep 600")
        yield server


def put_on_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path, script: str) -> None:
    """A ``pinentry`` on the daemon's PATH (the daemon inherits the test's environment)."""
    bin_dir.mkdir()
    pinentry = bin_dir / "pinentry"
    pinentry.write_text(script)
    pinentry.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")


def client(inst: Installation, *, display: bool = True) -> subprocess.Popen[bytes]:
    """credential_process in a session of its own: no terminal; an X display unless told."""
    env = {k: v for k, v in inst.env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = ":42"
    return subprocess.Popen(
        [sys.executable, "-m", "vaultd", "credential-process", "dev"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=40)  # a guard against a hang, not a timing check
    return proc.returncode, out, err


@pytest.fixture
def asked(
    make_vault: MakeVault, pane: TmuxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> subprocess.Popen[bytes]:
    """A daemon whose pinentry is pinentry-curses on ``pane``, and a client it asks there."""
    tty = pane.run("display", "-p", "-t", "pin", "#{pane_tty}").strip()
    wrapper = f'#!/bin/sh\nexec pinentry-curses --ttyname {tty} --ttytype screen "$@"\n'
    put_on_path(monkeypatch, tmp_path / "bin", wrapper)
    inst = make_vault(extra=AUTO, start=False)
    inst.start_daemon()
    return client(inst)


def test_pinentry_curses_in_a_tmux_pane_answers_the_approval(
    fake_sts: FakeSts, pane: TmuxServer, asked: subprocess.Popen[bytes]
) -> None:
    # "dev." ends the first sentence; where the requester's path is long, "profile" and "dev"
    # are on two lines of the dialog.
    pane.wait_for("MFA code:", "(pid ", "dev.", "Approve")
    pane.run("send-keys", "-t", "pin", CODE)
    pane.run("send-keys", "-t", "pin", "Enter")
    status, out, err = finish(asked)
    assert status == 0, err.decode()
    assert b'"AccessKeyId"' in out
    (sts_call,) = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert sts_call.token_code == CODE


def test_pinentry_curses_cancel_denies(
    fake_sts: FakeSts, pane: TmuxServer, asked: subprocess.Popen[bytes]
) -> None:
    pane.wait_for("<Deny>")
    for key in ("Tab", "Tab", "Enter"):  # past <OK> to <Deny>, and press it
        pane.run("send-keys", "-t", "pin", key)
    status, out, err = finish(asked)
    assert (status, out) == (1, b"")
    assert err.startswith(b"vaultd: DENIED:") and err.count(b"\n") == 1
    assert fake_sts.calls("GetSessionToken") == 0


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("#!/bin/sh\necho 'OK hi'\nread x\necho 'what is this'\n", b"PROMPT_FAILED"),
        ("#!/bin/sh\nexit 4\n", b"PROMPT_FAILED"),
        (
            "#!/bin/sh\necho OK\nwhile read c; do case $c in GETPIN) echo 'D 12ab'; echo OK;; "
            "*) echo OK;; esac; done\n",
            b"CODE_MALFORMED",
        ),
    ],
    ids=["garbage", "dies", "not-6-digits"],
)
def test_a_broken_pinentry_is_one_clear_error_and_nothing_released(
    make_vault: MakeVault,
    fake_sts: FakeSts,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    script: str,
    error: bytes,
) -> None:
    put_on_path(monkeypatch, tmp_path / "bin", script)
    inst = make_vault(extra=AUTO, start=False)
    inst.start_daemon()
    status, out, err = finish(client(inst))
    assert (status, out) == (1, b"")
    assert err.startswith(b"vaultd: " + error + b":") and err.count(b"\n") == 1
    assert fake_sts.calls("GetSessionToken") == 0
    assert inst.vaultd("approvals", "--json").stdout.strip() == b"[]"


def test_no_display_still_fails_fast_with_approval_unavailable(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(extra=AUTO)
    status, out, err = finish(client(inst, display=False))
    assert (status, out) == (1, b"")
    assert err.startswith(b"vaultd: APPROVAL_UNAVAILABLE:")
    assert fake_sts.calls() == 0
