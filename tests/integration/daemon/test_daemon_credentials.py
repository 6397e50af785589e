"""The daemon end to end: approvals, cache, single-flight, deny/timeout, codes, lock, errors.

Real SoftHSM2 token, real `vaultd serve` subprocess, real credential_process clients; STS is
FakeSts on 127.0.0.1 (it counts calls and records every TokenCode).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import vaultd.credproc
from vaultd.ipc.client import DaemonClient
from vaultd.testing.fake_sts import FakeSts, Fault
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending, wait_for

from .conftest import ACCESS_KEY_ID, SECRET

CREDPROC = Path(vaultd.credproc.__file__)
MakeVault = Callable[..., Installation]


def credproc(inst: Installation, profile: str) -> subprocess.Popen[bytes]:
    """The stdlib client, started the fastest way (`python -I -S credproc.py`)."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(CREDPROC), "--socket", str(inst.socket), profile],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: the client cannot prompt
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def assert_no_secret(*streams: bytes) -> None:
    for data in streams:
        assert SECRET.encode() not in data
        assert ACCESS_KEY_ID.encode() not in data


def test_first_call_needs_approval_second_is_cached(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    proc = credproc(inst, "dev")
    approve_pending(inst, "123456", profile="dev")
    code, out, err = finish(proc)
    assert code == 0, err
    creds = json.loads(out)
    assert creds["Version"] == 1
    assert set(creds) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert creds["Expiration"].endswith("Z")
    assert creds["AccessKeyId"] != ACCESS_KEY_ID  # a session, never the long-lived key
    assert_no_secret(out, err)
    sent = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert len(sent) == 1
    assert sent[0].serial_number == "arn:aws:iam::123456789012:mfa/alice"
    assert sent[0].token_code == "123456"
    assert sent[0].access_key_id == ACCESS_KEY_ID

    again = credproc(inst, "dev")
    code2, out2, _ = finish(again, timeout=10)
    assert code2 == 0
    assert out2 == out
    assert fake_sts.calls("GetSessionToken") == 1
    assert json.loads(inst.vaultd("approvals", "--json").stdout) == []
    assert "Found endpoint" not in inst.log()  # botocore's per-call chatter stays out


BURST = 200
"""Parallel clients in the prompt-storm tests (docs/threat-model.md T10: N=200)."""


def test_two_hundred_parallel_cold_calls_make_one_approval_and_one_sts_call(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    procs = [credproc(inst, "dev") for _ in range(BURST)]
    approval_id = approve_pending(inst, "246810", profile="dev")
    results = [finish(p) for p in procs]
    assert {code for code, _, _ in results} == {0}, [err for _, _, err in results][:3]
    outputs = {out for _, out, _ in results}
    assert len(outputs) == 1
    assert fake_sts.calls("GetSessionToken") == 1
    approvals = [
        json.loads(line)
        for line in (inst.data_dir / "audit.log").read_text().splitlines()
        if '"approval_opened"' in line
    ]
    assert [a["approval"] for a in approvals] == [approval_id]


def test_role_profile_chains_from_the_mfa_session(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault()
    proc = credproc(inst, "admin")
    approve_pending(inst, "135790", profile="admin")
    code, _, err = finish(proc)
    assert code == 0, err
    assume = [r for r in fake_sts.requests if r.action == "AssumeRole"]
    session = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert len(session) == 1 and session[0].token_code == "135790"
    assert len(assume) == 1
    assert assume[0].role_arn == "arn:aws:iam::123456789012:role/Admin"
    assert assume[0].token_code is None  # chained: the MFA context comes from the session
    assert assume[0].session_token_sent
    # The source profile's MFA session is now cached too: no second approval.
    code, _, _ = finish(credproc(inst, "dev"), timeout=10)
    assert code == 0
    assert fake_sts.calls("GetSessionToken") == 1


def test_vaultd_approvals_names_a_chained_roles_mfa_device(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    proc = credproc(inst, "admin")
    assert wait_for(lambda: b"admin" in inst.vaultd("approvals").stdout)
    listed = inst.vaultd("approvals").stdout.decode()
    assert f"  admin (MFA device {MFA_SERIAL})  by pid " in listed, listed
    (pending,) = json.loads(inst.vaultd("approvals", "--json").stdout)
    assert pending["mfa_serial"] == MFA_SERIAL  # the source profile dev's device
    inst.vaultd("deny", str(pending["id"]))
    assert finish(proc)[0] != 0


def test_deny_fails_every_waiter_and_starts_a_cooldown(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    procs = [credproc(inst, "dev") for _ in range(BURST)]
    deadline = time.monotonic() + 15
    pending: list[dict[str, object]] = []
    while not pending and time.monotonic() < deadline:
        pending = json.loads(inst.vaultd("approvals", "--json").stdout)
    assert len(pending) == 1
    inst.vaultd("deny", str(pending[0]["id"]))
    for proc in procs:
        code, out, err = finish(proc)
        assert code != 0
        assert out == b""
        assert b"DENIED" in err
    # Within the cooldown a second burst fails fast, with no new approval.
    for code, out, err in [
        finish(p, timeout=30) for p in [credproc(inst, "dev") for _ in range(BURST)]
    ]:
        assert code != 0 and out == b"" and b"COOLDOWN" in err  # was DENIED (issue 16)
    assert json.loads(inst.vaultd("approvals", "--json").stdout) == []
    opened = (inst.data_dir / "audit.log").read_text().count('"approval_opened"')
    assert opened == 1
    assert fake_sts.calls() == 0


def test_unanswered_approval_times_out(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault(extra={"approval": {"timeout_seconds": 5}})
    code, out, err = finish(credproc(inst, "dev"), timeout=30)
    assert code != 0
    assert out == b""
    assert b"APPROVAL_TIMEOUT" in err
    assert fake_sts.calls() == 0


ARABIC_INDIC = "\u0661\u0662\u0663\u0664\u0665\u0666"
FULL_WIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"


@pytest.mark.parametrize("bad", ["12345", "1234567", "12345a", ARABIC_INDIC, FULL_WIDTH])
def test_malformed_codes_are_refused_before_sts(
    make_vault: MakeVault, fake_sts: FakeSts, bad: str
) -> None:
    inst = make_vault()
    proc = credproc(inst, "dev")
    deadline = time.monotonic() + 15
    pending: list[dict[str, object]] = []
    while not pending and time.monotonic() < deadline:
        pending = json.loads(inst.vaultd("approvals", "--json").stdout)
    answer = inst.vaultd("approve", str(pending[0]["id"]), "--code", bad, check=False)
    assert answer.returncode != 0
    assert b"CODE_MALFORMED" in answer.stderr
    inst.vaultd("deny", str(pending[0]["id"]))
    finish(proc)
    assert fake_sts.calls() == 0


def test_a_code_is_never_sent_twice_even_after_a_restart(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    proc = credproc(inst, "dev")
    approve_pending(inst, "112233", profile="dev")
    assert finish(proc)[0] == 0
    inst.vaultd("lock")
    for restart in (False, True):
        if restart:
            inst.stop_daemon()
            inst.start_daemon()
        proc = credproc(inst, "dev")
        approve_pending(inst, "112233", profile="dev")
        code, out, err = finish(proc)
        assert code != 0 and out == b""
        assert b"CODE_REUSED" in err
    assert fake_sts.calls("GetSessionToken") == 1


def test_wrong_code_is_rejected_and_counted(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault(extra={"approval": {"cooldown_seconds": 0}})
    fake_sts.inject(Fault(error_code="AccessDenied"), times=None)
    for i in range(5):
        proc = credproc(inst, "dev")
        approve_pending(inst, f"90000{i}", profile="dev")
        code, out, err = finish(proc)
        assert code != 0 and out == b""
        assert b"MFA_REJECTED" in err
        assert_no_secret(err)
    # The sixth attempt is refused locally: no approval, no STS call.
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code != 0 and b"RATE_LIMITED" in err
    assert fake_sts.calls("GetSessionToken") == 5


def test_sts_outage_is_one_attempt_and_a_clear_error(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    fake_sts.inject(Fault(error_code="ServiceUnavailable"), times=None)
    proc = credproc(inst, "dev")
    approve_pending(inst, "445566", profile="dev")
    code, out, err = finish(proc)
    assert code != 0 and out == b""
    assert b"STS_UNAVAILABLE" in err
    assert fake_sts.calls("GetSessionToken") == 1  # an MFA call is never retried


def test_lock_drops_cached_sessions_and_sighup_keeps_them(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """`vaultd lock` drops sessions; SIGHUP (issue 16: it used to drop them too) reloads the
    config and keeps the sessions of unchanged profiles (see test_reload.py)."""
    inst = make_vault()
    proc = credproc(inst, "dev")
    approve_pending(inst, "121212", profile="dev")
    assert finish(proc)[0] == 0
    inst.vaultd("lock")
    proc = credproc(inst, "dev")
    approve_pending(inst, "343434", profile="dev")
    assert finish(proc)[0] == 0
    assert inst.daemon is not None
    os.kill(inst.daemon.pid, signal.SIGHUP)
    assert wait_for(lambda: "config reloaded" in inst.log())
    assert finish(credproc(inst, "dev"))[0] == 0  # served from the cache: nothing asked
    assert fake_sts.calls("GetSessionToken") == 2


def test_sealed_daemon_answers_sealed_until_unlocked(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    inst.vaultd("lock", "--seal")
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code != 0 and out == b"" and b"SEALED" in err
    inst.vaultd("unlock")
    proc = credproc(inst, "dev")
    approve_pending(inst, "787878", profile="dev")
    assert finish(proc)[0] == 0


def test_daemon_not_running(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code != 0
    assert out == b""
    assert b"DAEMON_NOT_RUNNING" in err
    assert err.count(b"\n") == 1


def test_unknown_profile_and_root_keys_are_refused(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/alice"},
            "rootp": {"credentials": "root", "mfa_serial": "arn:aws:iam::123456789012:mfa/root"},
        },
        start=False,
    )
    inst.add_key_pair(
        "root", "AKIAROOTCANARY000001", "RootCanarySecret000000000000000000000001", root=True
    )
    inst.start_daemon()
    code, out, err = finish(credproc(inst, "nope"), timeout=10)
    assert code != 0 and out == b"" and b"UNKNOWN_PROFILE" in err
    code, out, err = finish(credproc(inst, "rootp"), timeout=10)
    assert code != 0 and out == b"" and b"BREAK_GLASS_ONLY" in err
    assert b"RootCanarySecret" not in err
    assert fake_sts.calls() == 0


def test_the_real_aws_cli_and_boto3_get_credentials(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    env = inst.env
    aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "admin"]
    proc = subprocess.Popen(
        aws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    approve_pending(inst, "909090", profile="admin")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["Account"] == "123456789012"
    assert_no_secret(out, err)
    # boto3 in a child process: one Session, several calls, one credential_process run.
    script = (
        "import boto3\n"
        "s = boto3.Session(profile_name='admin')\n"
        "c = s.client('sts')\n"
        "for _ in range(6): c.get_caller_identity()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert fake_sts.calls("GetSessionToken") == 1
    assert fake_sts.calls("AssumeRole") == 1
    assert (Path(env["HOME"]) / ".aws" / "cli" / "cache").exists() is False


def test_exec_runs_a_command_with_the_session(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault()
    script = "import os; print(os.environ['AWS_ACCESS_KEY_ID'], 'AWS_PROFILE' in os.environ)"

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "vaultd", "exec", "dev", "--", sys.executable, "-c", script],
            env={**inst.env, "AWS_PROFILE": "dev"},
            capture_output=True,
            timeout=60,
            check=False,
            start_new_session=True,
        )

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        approve_pending(inst, "131313", profile="dev")
        done = future.result()
    assert done.returncode == 0, done.stderr
    key_id, has_profile = done.stdout.decode().split()
    assert key_id.startswith("ASIA") and key_id != ACCESS_KEY_ID
    assert has_profile == "False"


DENY_SHELL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowAll",
            "Effect": "Allow",
            "Action": ["vaultd:GetCredentials", "vaultd:Exec"],
            "Resource": "profile/*",
        },
        {
            "Sid": "DenyShells",
            "Effect": "Deny",
            "Action": "vaultd:GetCredentials",
            "Resource": "profile/*",
            "Condition": {"StringLike": {"vaultd:ClientExecutable": ["*/dash", "*/bash"]}},
        },
    ],
}


def test_policy_deny_names_the_statement_and_the_simulator_agrees(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(DENY_SHELL_POLICY, indent=2))
    inst = make_vault(extra={"policy_file": str(policy_file)})
    shell = os.path.realpath("/bin/sh")
    # `sh -c "cmd; exit $?"` keeps sh as the client's parent (no exec of a last command).
    command = f"{sys.executable} -I -S {CREDPROC} --socket {inst.socket} dev; exit $?"
    done = subprocess.run([shell, "-c", command], capture_output=True, timeout=30, check=False)
    assert done.returncode != 0
    assert done.stdout == b""
    assert b"ACCESS_DENIED_BY_POLICY" in done.stderr
    assert b"DenyShells" in done.stderr
    assert json.loads(inst.vaultd("approvals", "--json").stdout) == []
    assert fake_sts.calls() == 0
    # The same request from a non-shell parent is allowed (it reaches the approval stage).
    proc = credproc(inst, "dev")
    approve_pending(inst, "575757", profile="dev")
    assert finish(proc)[0] == 0
    sim = inst.vaultd(
        "policy",
        "simulate",
        "--policy-file",
        str(policy_file),
        "--action",
        "vaultd:GetCredentials",
        "--resource",
        "profile/dev",
        "--context",
        f"vaultd:ClientExecutable={shell}",
        check=False,
    )
    assert b"explicitDeny" in sim.stdout
    assert b"DenyShells" in sim.stdout
    refused = [
        json.loads(line)
        for line in (inst.data_dir / "audit.log").read_text().splitlines()
        if '"policy_refused"' in line
    ]
    assert len(refused) == 1 and refused[0]["reason"] == "DenyShells"


def test_setup_aws_profile_twice_leaves_one_stanza_that_works(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    config = Path(inst.env["AWS_CONFIG_FILE"])
    original = (
        "# keep this comment\n[profile dev]\nregion = us-east-1\noutput = json\n\n[x]\na = b\n"
    )
    config.write_text(original)
    for _ in range(2):
        inst.vaultd("setup", "aws-profile", "dev")
    text = config.read_text()
    assert text.count("credential_process") == 1
    assert text.replace(text.splitlines()[2] + "\n", "", 1) == original
    assert Path(str(config) + ".vaultd-backup").read_text() == original
    aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "dev"]
    proc = subprocess.Popen(
        aws, env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    approve_pending(inst, "686868", profile="dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["Account"] == "123456789012"


def test_prompt_pin_source_starts_sealed_and_unlocks_over_the_socket(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    from vaultd.errors import HsmPinIncorrect
    from vaultd.ipc.client import DaemonClient

    inst = make_vault(start=False)
    pin = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:")).read_text()
    inst.config["pkcs11"]["pin_source"] = "prompt"
    inst.write_config()
    inst.start_daemon()
    client = DaemonClient(inst.socket)
    assert client.request("status")["sealed"] is True
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code != 0 and out == b"" and b"SEALED" in err and b"vaultd unlock" in err
    # A sealed start is normal here: the log says so and blames neither disk nor permissions.
    assert "started sealed" in inst.log()
    assert " ERROR " not in inst.log() and "free space" not in inst.log(), inst.log()
    with pytest.raises(HsmPinIncorrect):
        client.request("unlock", pin="999999")
    assert client.request("status")["sealed"] is True
    client.request("unlock", pin=pin)
    assert client.request("status")["sealed"] is False
    proc = credproc(inst, "dev")
    approve_pending(inst, "242424", profile="dev")
    assert finish(proc)[0] == 0
    assert pin.encode() not in (inst.data_dir / "audit.log").read_bytes()
    assert pin not in inst.log()
    assert inst.stop_daemon() == 0  # SIGTERM stops cleanly


def test_status_says_why_the_daemon_is_sealed(make_vault: MakeVault) -> None:
    from vaultd.ipc.client import DaemonClient

    inst = make_vault(start=False)
    pin = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:")).read_text()
    inst.config["pkcs11"]["pin_source"] = "prompt"
    inst.write_config()
    inst.start_daemon()
    first, *rest = inst.vaultd("status").stdout.decode().splitlines()
    assert first.endswith(
        ": SEALED: started sealed (pkcs11.pin_source = prompt): run `vaultd unlock`"
    )
    assert rest[:2] == ["", "PROFILE  KIND     APPROVAL  SESSION"]
    assert rest[-3:] == ["no grants", "", "no pending approvals"]
    DaemonClient(inst.socket).request("unlock", pin=pin)
    assert inst.vaultd("status").stdout.decode().splitlines()[0].endswith(": unsealed")
    assert json.loads(inst.vaultd("status", "--json").stdout)["sealed_reason"] is None
    inst.vaultd("lock", "--seal")
    status = json.loads(inst.vaultd("status", "--json").stdout)
    assert status["sealed"] is True
    assert status["sealed_reason"].startswith("sealed by `vaultd lock --seal`")


def test_a_wrong_pin_file_starts_sealed_and_is_never_retried(
    make_vault: MakeVault, tmp_path: Path
) -> None:
    """docs/threat-model.md T9: no automatic retry, not even across restarts (systemd restarts a
    daemon that exits on failure, and each start would spend one PIN try)."""
    from vaultd.ipc.client import DaemonClient

    inst = make_vault(start=False)
    pin_file = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:"))
    pin = pin_file.read_text()
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000")
    wrong.chmod(0o600)
    inst.config["pkcs11"]["pin_source"] = f"file:{wrong}"
    inst.write_config()
    inst.start_daemon()
    client = DaemonClient(inst.socket)
    assert client.request("status")["sealed"] is True
    assert "started sealed" in inst.log() and "refused the PIN" in inst.log()
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code != 0 and out == b"" and b"SEALED" in err
    client.request("unlock", pin=pin)  # the person fixes it
    assert client.request("status")["sealed"] is False
    assert inst.stop_daemon() == 0


def test_audit_tail_over_the_socket_is_newest_first_and_bounded(make_vault: MakeVault) -> None:
    from vaultd.errors import BadRequest
    from vaultd.ipc.client import DaemonClient

    inst = make_vault()
    inst.vaultd("lock")
    client = DaemonClient(inst.socket)
    records = client.request("audit_tail", n=2)["records"]
    assert isinstance(records, list) and len(records) == 2
    assert records[0]["event"] == "lock"
    assert records[0]["seq"] > records[1]["seq"]
    for bad in (0, 1001, True, "5"):
        with pytest.raises(BadRequest):
            client.request("audit_tail", n=bad)


def test_wrong_unlock_pins_are_rate_limited(make_vault: MakeVault) -> None:
    from vaultd.errors import HsmPinIncorrect, RateLimited
    from vaultd.ipc.client import DaemonClient

    inst = make_vault()
    pin = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:")).read_text()
    client = DaemonClient(inst.socket)
    client.request("lock", seal=True)
    for attempt in range(5):
        with pytest.raises(HsmPinIncorrect):
            client.request("unlock", pin=f"wrong{attempt}")
    with pytest.raises(RateLimited) as limited:  # even the right PIN waits now
        client.request("unlock", pin=pin)
    assert limited.value.retry_after > 0
    assert client.request("status")["sealed"] is True
    assert "wrong0" not in inst.log() and pin not in inst.log()


def test_an_oversized_session_token_is_refused_at_the_sts_edge(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Issue 13 Low 12: a SessionToken too big for a reply frame is never cached or released
    (it used to be cached, then every request dropped its connection after a release record)."""
    inst = make_vault()
    fake_sts.inject(Fault(session_token_chars=70_000), times=1)
    proc = credproc(inst, "dev")
    approve_pending(inst, "314159", profile="dev")
    code, out, err = finish(proc)
    assert code != 0 and out == b""
    assert b"STS_ERROR" in err and b"SessionToken" in err
    events = [
        json.loads(x)["event"] for x in (inst.data_dir / "audit.log").read_text().splitlines()
    ]
    assert "release" not in events
    proc = credproc(inst, "dev")  # nothing was cached: a new approval, a good token this time
    approve_pending(inst, "271828", profile="dev")
    code, out, _ = finish(proc)
    assert code == 0 and json.loads(out)["Version"] == 1
    assert fake_sts.calls("GetSessionToken") == 2


def test_a_wrong_unlock_to_an_unsealed_daemon_changes_nothing(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Issue 13 Medium 8: `unlock` on an unsealed daemon never touches the token (it used to
    log out first, so a wrong PIN from any same-uid client sealed it behind `status`)."""
    inst = make_vault()
    client = DaemonClient(inst.socket)
    assert client.request("unlock", pin="wrong-pin") == {"already_unlocked": True}
    assert client.request("status")["sealed"] is False
    proc = credproc(inst, "dev")  # needs the stored key pair: the token session is alive
    approve_pending(inst, "161803", profile="dev")
    assert finish(proc)[0] == 0
    inst.vaultd("lock", "--seal")
    pin = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:")).read_text()
    assert client.request("unlock", pin=pin) == {"already_unlocked": False}


EXEC_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "vaultd:Exec", "Resource": "profile/*"}],
}


def _raw_request(inst: Installation, body: bytes) -> dict[str, object]:
    import socket as socket_module
    import struct

    with socket_module.socket(socket_module.AF_UNIX) as sock:
        sock.connect(str(inst.socket))
        sock.sendall(struct.pack(">I", len(body)) + body)
        size = struct.unpack(">I", sock.recv(4, socket_module.MSG_WAITALL))[0]
        reply: dict[str, object] = json.loads(sock.recv(size, socket_module.MSG_WAITALL))
        return reply


def test_a_credentials_frame_claiming_exec_is_not_judged_as_exec(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """Issue 13 Medium 5 (T33): the server derives the action from the op; a credentials frame
    that claims `"action":"exec"` gets nothing from a policy that allows only vaultd:Exec."""
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(EXEC_ONLY_POLICY))
    inst = make_vault(extra={"policy_file": str(policy_file)})
    claimed = _raw_request(inst, b'{"v":1,"op":"credentials","profile":"dev","action":"exec"}')
    plain = _raw_request(inst, b'{"v":1,"op":"credentials","profile":"dev"}')
    assert claimed["ok"] is False and plain["ok"] is False
    assert plain["error"]["code"] == "ACCESS_DENIED_BY_POLICY"  # type: ignore[index]
    events = [
        json.loads(x)["event"] for x in (inst.data_dir / "audit.log").read_text().splitlines()
    ]
    assert "request" not in events and "approval_opened" not in events
    assert fake_sts.calls() == 0


EXEC_AFTER_CONNECT = r"""
import os, socket, struct, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
time.sleep(0.5)  # the daemon accepts (and reads who connected) before the exec, even under load
os.set_inheritable(sock.fileno(), True)
body = b'{"v":1,"op":"credentials","profile":"dev"}'
frame = "".join("\\%03o" % b for b in struct.pack(">I", len(body)) + body)
script = 'printf "%s" >&%d; head -c 4096 <&%d' % (frame, sock.fileno(), sock.fileno())
os.execv("/bin/sh", ["sh", "-c", script])
"""


def test_a_process_that_execs_after_connecting_is_refused(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """Issue 13 Medium 5 (T33): a process connects, then execs into a program the policy
    allows (here the shell); it is judged by what connected, or refused: nothing is released."""
    shell = os.path.realpath("/bin/sh")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "vaultd:GetCredentials",
                "Resource": "profile/*",
                "Condition": {"StringEquals": {"vaultd:ClientExecutable": shell}},
            }
        ],
    }
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy))
    inst = make_vault(extra={"policy_file": str(policy_file)})
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", EXEC_AFTER_CONNECT, str(inst.socket)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert b"PEER_REFUSED" in done.stdout or b"ACCESS_DENIED_BY_POLICY" in done.stdout
    assert b'"ok":true' not in done.stdout
    events = [
        json.loads(x)["event"] for x in (inst.data_dir / "audit.log").read_text().splitlines()
    ]
    assert "approval_opened" not in events and "release" not in events
    assert fake_sts.calls() == 0
