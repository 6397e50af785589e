"""Break-glass root access end to end (docs/threat-model.md T18): reason, FIDO2 touch with UV (PIN
on a software CTAP2 authenticator; no USB in CI), the root TOTP code, a short session read once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.errors import BadRequest, VaultError
from vaultd.ipc.client import DaemonClient
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, read_until, spawn_in_pty, wait_for
from vaultd.testing.soft_ctap2 import SoftCtap2Device

MakeVault = Callable[..., Installation]
ROOT_SERIAL = "arn:aws:iam::123456789012:mfa/root-account-mfa-device"
ROOT_KEY = "AKIAROOTCANARY000001"
ROOT_SECRET = "RootCanarySecret000000000000000000000001"
PIN = "4321"


@pytest.fixture
def root_vault(make_vault: MakeVault, tmp_path: Path) -> Installation:
    device = tmp_path / "key1.json"
    inst = make_vault(
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/alice"},
            "root": {"credentials": "root", "mfa_serial": ROOT_SERIAL},
        },
        extra={"fido2": {"devices": [f"soft:{device}"]}},
        start=False,
    )
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    ClientPin(Ctap2(SoftCtap2Device(device))).set_pin(PIN)
    # Root keys are bound to the authenticator's hmac-secret as well as sealed by the token.
    inst.add_key_pair("root", ROOT_KEY, ROOT_SECRET, root=True, bind=True)
    inst.start_daemon()
    return inst


def break_glass(
    inst: Installation, factors: dict[str, str], reason: str = "prod outage INC-42"
) -> subprocess.CompletedProcess[bytes]:
    return inst.vaultd(
        "break-glass", "root", "--reason", reason, input=json.dumps(factors).encode(), check=False
    )


def audit_lines(inst: Installation) -> list[dict[str, object]]:
    return [json.loads(x) for x in (inst.data_dir / "audit.log").read_text().splitlines()]


def test_root_session_needs_reason_uv_and_code_and_is_short_and_audited(
    root_vault: Installation, fake_sts: FakeSts
) -> None:
    done = break_glass(root_vault, {"code": "123456", "pin": PIN})
    assert done.returncode == 0, done.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in done.stdout.decode().splitlines()
    )
    assert exports["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert ROOT_SECRET.encode() not in done.stdout + done.stderr
    (sent,) = fake_sts.requests
    assert sent.action == "GetSessionToken"
    assert sent.access_key_id == ROOT_KEY
    assert sent.serial_number == ROOT_SERIAL and sent.token_code == "123456"
    assert sent.duration_seconds is not None and int(sent.duration_seconds) <= 3600
    lines = audit_lines(root_vault)
    events = [(a["event"], a.get("break_glass"), a.get("severity")) for a in lines]
    for step in ("breakglass_requested", "breakglass_factor", "breakglass_granted",
                 "breakglass_read", "breakglass_ended"):  # fmt: skip
        assert (step, True, "critical") in events
    requested = next(a for a in audit_lines(root_vault) if a["event"] == "breakglass_requested")
    assert requested["reason"] == "prod outage INC-42"


def test_without_user_verification_nothing_is_released(
    root_vault: Installation, fake_sts: FakeSts
) -> None:
    done = break_glass(root_vault, {"code": "123456"})
    assert done.returncode != 0
    assert done.stdout == b""
    assert fake_sts.calls() == 0
    assert any(a["event"] == "breakglass_refused" for a in audit_lines(root_vault))


@pytest.mark.parametrize(
    ("factors", "reason", "code"),
    [
        ({"code": "12345", "pin": PIN}, "prod outage INC-42", b"CODE_MALFORMED"),
        ({"code": "123456", "pin": PIN}, "short", b"BAD_REQUEST"),
    ],
)
def test_missing_factor_or_reason_releases_nothing(
    root_vault: Installation, fake_sts: FakeSts, factors: dict[str, str], reason: str, code: bytes
) -> None:
    done = break_glass(root_vault, factors, reason)
    assert done.returncode != 0 and done.stdout == b""
    assert code in done.stderr
    assert fake_sts.calls() == 0


def test_a_grant_is_read_once(root_vault: Installation, fake_sts: FakeSts) -> None:
    client = DaemonClient(root_vault.socket)
    reply = client.request(
        "breakglass", profile="root", reason="read-once check", code="654321", pin=PIN
    )
    grant = reply["grant"]
    assert isinstance(grant, dict)
    first = reply
    assert isinstance(first["output"], dict) and first["output"]["Version"] == 1
    with pytest.raises(BadRequest):  # no op reads a grant by id, not even for its requester
        client.request("grant", id=str(grant["id"]))
    status = client.request("status")
    assert [g["read"] for g in status["grants"]] == [True]  # type: ignore[union-attr]
    client.request("grant_end", id=str(grant["id"]))
    assert client.request("status")["grants"] == []


def test_iam_user_keys_cannot_break_glass(root_vault: Installation, fake_sts: FakeSts) -> None:
    done = root_vault.vaultd(
        "break-glass", "dev", "--reason", "not root at all",
        input=b'{"code": "123456", "pin": "4321"}', check=False,
    )  # fmt: skip
    assert done.returncode != 0 and b"BREAK_GLASS_ONLY" in done.stderr
    assert fake_sts.calls() == 0


def test_bound_root_key_is_unreadable_without_its_authenticator(
    root_vault: Installation, fake_sts: FakeSts, tmp_path: Path
) -> None:
    listed = root_vault.vaultd("list").stdout.decode()
    assert "root" in listed
    root_vault.stop_daemon()
    other = tmp_path / "other-key.json"
    SoftCtap2Device(other).set_touch("auto", 0.05)
    root_vault.config["fido2"] = {"devices": [f"soft:{other}"]}
    root_vault.write_config()
    root_vault.start_daemon()
    done = break_glass(root_vault, {"code": "123456", "pin": PIN})
    assert done.returncode != 0 and done.stdout == b""
    assert fake_sts.calls() == 0


def test_a_status_polling_thief_gets_no_grant(root_vault: Installation, fake_sts: FakeSts) -> None:
    """docs/threat-model.md T31 (issue 13, High 3): a same-uid process that polls `status` and asks
    for every grant id it sees gets nothing; the requester gets the root session once, on its own
    connection, and the audit names the client that read it."""
    stolen: list[object] = []
    refusals: list[str] = []
    stop = threading.Event()

    def thief() -> None:
        spy = DaemonClient(root_vault.socket)
        while not stop.is_set():
            for grant in spy.request("status")["grants"]:  # type: ignore[union-attr]
                assert isinstance(grant, dict)
                try:
                    stolen.append(spy.request("grant", id=str(grant.get("id", "x"))))
                except VaultError as exc:
                    refusals.append(exc.code)

    spy_thread = threading.Thread(target=thief)
    spy_thread.start()
    try:
        reply = DaemonClient(root_vault.socket).request(
            "breakglass", profile="root", reason="thief check", code="654321", pin=PIN
        )
        assert wait_for(lambda: bool(refusals) or bool(stolen), timeout=5)
    finally:
        stop.set()
        spy_thread.join()
    assert stolen == []
    assert set(refusals) == {"BAD_REQUEST"}  # there is no op that hands a grant out by id
    output = reply["output"]
    assert isinstance(output, dict) and output["AccessKeyId"].startswith("ASIA")
    assert fake_sts.calls() == 1
    (read,) = [a for a in audit_lines(root_vault) if a["event"] == "breakglass_read"]
    client = read["client"]
    assert isinstance(client, dict) and client["pid"] == os.getpid()


def test_status_marks_root_profiles_and_the_report_counts_break_glass_use(
    root_vault: Installation, fake_sts: FakeSts
) -> None:
    status = json.loads(root_vault.vaultd("status", "--json").stdout)
    assert {p["name"]: p["root"] for p in status["profiles"]} == {"dev": False, "root": True}
    for code in ("123456", "654321"):  # two break-glass sessions, no credential_process use
        done = break_glass(root_vault, {"code": code, "pin": PIN})
        assert done.returncode == 0, done.stderr
    report = json.loads(root_vault.vaultd("report", "--json").stdout)
    (row,) = [r for r in report if r["name"] == "root"]
    read = max(a["time"] for a in audit_lines(root_vault) if a["event"] == "breakglass_read")
    assert isinstance(read, str) and row["last_used"] == read[:19] + "Z"
    header, *lines = root_vault.vaultd("report").stdout.decode().splitlines()
    assert header.split() == ["NAME", "KIND", "ACCESS", "KEY", "AGE", "AGE", "FROM", "LAST",
                              "USED", "ROTATION"]  # fmt: skip
    (root_line,) = [line for line in lines if line.startswith("root ")]
    assert "never" not in root_line and " stored " in root_line and root_line.endswith(" ok")


def test_list_and_status_show_the_active_grants(
    root_vault: Installation, fake_sts: FakeSts
) -> None:
    reply = DaemonClient(root_vault.socket).request(
        "breakglass", profile="root", reason="grant listing", code="123456", pin=PIN
    )
    grant = reply["grant"]
    assert isinstance(grant, dict)
    listed = root_vault.vaultd("list").stdout.decode().split("\n\n")[-1].splitlines()
    assert listed[0].split() == ["BREAK-GLASS", "GRANT", "PROFILE", "EXPIRES", "REASON"]
    assert listed[1].split() == [grant["id"], "root", grant["expires_at"], "grant", "listing"]
    status = root_vault.vaultd("status").stdout.decode().split("\n\n")
    (grants,) = [block for block in status if block.startswith("GRANT ")]
    assert grants.splitlines()[1].split()[:4] == [grant["id"], "root", grant["expires_at"], "yes"]
    assert ROOT_SECRET not in "".join(listed + status)


@pytest.mark.parametrize(
    ("profile", "reason", "expected"),
    [
        ("dev", "not root at all", b"BREAK_GLASS_ONLY: profile 'dev' is not a root profile"),
        ("root", "short", b"BAD_REQUEST: field reason: a reason of 8-500 characters"),
    ],
)
def test_on_a_terminal_a_refused_request_asks_for_nothing(
    root_vault: Installation, fake_sts: FakeSts, profile: str, reason: str, expected: bytes
) -> None:
    """Through a pty: no code, PIN or touch prompt before a refusal that needs no factor."""
    proc, primary = spawn_in_pty(
        [sys.executable, "-m", "vaultd", "break-glass", profile, "--reason", reason],
        root_vault.env,
    )
    try:
        assert proc.wait(timeout=60) != 0  # nothing was typed: a prompt would hang here
        shown = read_until(primary, None)  # what it wrote before it exited
    finally:
        proc.kill()  # only still running when a prompt waited (the assertion failed)
        os.close(primary)
    lines = shown.replace(b"\r\n", b"\n").strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], shown
    assert fake_sts.calls() == 0
