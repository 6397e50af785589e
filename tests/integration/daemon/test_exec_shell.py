"""`vaultd exec PROFILE` with no command: a shell with the session, driven through a pty."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending, read_until, spawn_in_pty

MakeVault = Callable[..., Installation]


def test_no_command_opens_the_shell_with_the_session_and_region(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    proc, master = spawn_in_pty(
        [sys.executable, "-m", "vaultd", "exec", "--region", "eu-west-2", "dev"],
        {**inst.env, "SHELL": "/bin/sh", "PS1": "$ "},
        controlling=False,  # no controlling terminal: approved with `vaultd approve`
    )
    approve_pending(inst, "123456", profile="dev")
    os.write(
        master,
        b'echo "got:$VAULTD_PROFILE:$AWS_REGION:$AWS_DEFAULT_REGION:${AWS_SESSION_TOKEN:+token}"\n',
    )
    out = read_until(master, b"got:dev:eu-west-2:eu-west-2:token")
    assert b"got:dev:eu-west-2:eu-west-2:token" in out, out
    # Inside the session, exec refuses to nest (as aws-vault does).
    os.write(master, f"{sys.executable} -m vaultd exec dev; echo nest''ed:$?\n".encode())
    out = read_until(master, b"nested:1")
    assert b"already in a vaultd exec session (VAULTD_PROFILE=dev)" in out, out
    os.write(master, b"exit 7\n")
    assert proc.wait(timeout=30) == 7
    os.close(master)
    assert fake_sts.calls("GetSessionToken") == 1


def test_a_bad_region_is_one_line_and_nothing_runs(make_vault: MakeVault) -> None:
    inst = make_vault()
    done = inst.vaultd("exec", "--region", "mars\nx", "dev", "--", "true", check=False)
    assert done.returncode != 0
    assert done.stderr.decode().splitlines() == [
        "vaultd: BAD_REQUEST: --region 'mars\\nx' is not an AWS region name such as eu-west-1"
    ]
    assert inst.vaultd("approvals", "--json").stdout.strip() == b"[]"


@pytest.mark.parametrize("marker", ["dev", "x"])
def test_exec_refuses_to_nest(make_vault: MakeVault, marker: str) -> None:
    inst = make_vault(start=False)
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "exec", "dev", "--", "true"],
        env={**inst.env, "VAULTD_PROFILE": marker},
        capture_output=True,
        check=False,
    )
    assert done.returncode != 0 and b"already in a vaultd exec session" in done.stderr


def _exec_env(inst: Installation, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaultd",
            "exec",
            *args,
            "--",
            "sh",
            "-c",
            "echo $AWS_ACCESS_KEY_ID",
        ],
        env=inst.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no terminal: approved with `vaultd approve`
    )


def test_duration_asks_sts_for_that_session_length_and_is_cached_apart(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Issue 17: `vaultd exec --duration` (aws-vault's flag) asks STS for that length."""
    inst = make_vault()
    proc = _exec_env(inst, "--duration", "7200", "dev")
    approve_pending(inst, "123456", profile="dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    sent = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert [r.duration_seconds for r in sent] == [7200]
    again = _exec_env(inst, "--duration", "7200", "dev")  # the same length: from the cache
    cached, why = again.communicate(timeout=60)
    assert again.returncode == 0, why
    assert cached == out
    plain = _exec_env(inst, "dev")  # the profile's own session is another one
    approve_pending(inst, "654321", profile="dev")
    assert plain.communicate(timeout=60)[0] != out
    assert fake_sts.calls("GetSessionToken") == 2


@pytest.mark.parametrize("seconds", ["600", "900", "999999"])
def test_a_bad_duration_is_one_line_and_nothing_is_asked(
    make_vault: MakeVault, fake_sts: FakeSts, seconds: str
) -> None:
    inst = make_vault()
    proc = _exec_env(inst, "--duration", seconds, "dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and out == b""
    assert len(err.decode().strip().splitlines()) == 1, err
    assert b"duration" in err
    assert fake_sts.calls() == 0


def test_a_duration_that_is_not_a_number_is_a_usage_error(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    proc = _exec_env(inst, "--duration", "abc", "dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == b""
    assert err.decode().strip().splitlines()[-1].endswith("--duration: invalid int value: 'abc'")
