"""Sessions per profile against a real daemon: `vaultd list` shows them, `vaultd clear PROFILE`
(and `vaultd lock PROFILE`) drops one."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending

MakeVault = Callable[..., Installation]
PROFILES = {
    "dev": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/alice"},
    "ops": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/alice"},
}


def session(inst: Installation, profile: str, code: str | None) -> None:
    """Get ``profile``'s session through `vaultd export`, approving with ``code`` if given."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "export", profile],
        env=inst.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if code is not None:
        approve_pending(inst, code, profile=profile)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def sessions(inst: Installation) -> dict[str, str]:
    """The sessions table of `vaultd list` (under its header): profile -> state."""
    out = inst.vaultd("list").stdout.decode()
    header, *rows = out.split("\nsessions:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert header.split() == ["PROFILE", "SESSION"]
    return dict(line.split(None, 1) for line in rows)


@pytest.mark.parametrize("command", [("clear",), ("lock",)])
def test_clear_drops_one_profiles_session(
    make_vault: MakeVault, fake_sts: FakeSts, command: tuple[str, ...]
) -> None:
    inst = make_vault(profiles=PROFILES)
    assert sessions(inst) == {"dev": "no session", "ops": "no session"}
    session(inst, "dev", "111111")
    session(inst, "ops", "222222")
    listed = sessions(inst)
    assert all(re.fullmatch(r"\d+:\d\d:\d\d left", s) for s in listed.values()), listed

    done = inst.vaultd(*command, "dev")
    assert done.stdout.decode() == "cleared: dev's session and pending approvals dropped\n"
    listed = sessions(inst)
    assert listed["dev"] == "no session" and listed["ops"].endswith(" left"), listed
    session(inst, "ops", None)  # still cached: no approval
    session(inst, "dev", "333333")  # asked again
    assert fake_sts.calls("GetSessionToken") == 3


def test_list_without_a_daemon_says_so_on_stderr(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    done = inst.vaultd("list")
    assert "sessions:" not in done.stdout.decode()
    assert done.stderr.decode() == "vaultd: not running, so no sessions are shown\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("clear", "a b"),
            "vaultd: BAD_REQUEST: 'a b' is not a profile name: 1 to 64 of A-Z a-z 0-9 . _ -",
        ),
        (("clear", "nope"), "vaultd: UNKNOWN_PROFILE: no profile 'nope' in the vaultd config"),
        (
            ("lock", "--seal", "dev"),
            "vaultd: BAD_REQUEST: --seal seals the whole vault: drop the profile name, or --seal",
        ),
    ],
)
def test_bad_clear_is_one_line_and_drops_nothing(
    make_vault: MakeVault, fake_sts: FakeSts, args: tuple[str, ...], message: str
) -> None:
    inst = make_vault(profiles=PROFILES)
    session(inst, "dev", "111111")
    done = inst.vaultd(*args, check=False)
    assert done.returncode != 0 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [message]
    assert sessions(inst)["dev"].endswith(" left")
    assert b'"sealed": false' in inst.vaultd("status", "--json").stdout
