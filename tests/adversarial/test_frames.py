"""docs/threat-model.md T27/T28: frame by frame, no IPC message carries the key pair or the MFA
seed.

A full session runs against a real daemon (SoftHSM2 token, the canary key pair and the canary
TOTP seed, FakeSts, a software CTAP2 authenticator as no USB key exists in CI), with every
client pointed at a :class:`~vaultd.testing.frame_recorder.FrameRecorder` relay: the
credential_process client cold (approved with a code) and cached, status, approvals, audit
tail, report, the TUI's event stream, a touch-or-code session whose code the daemon generates
from the seed, lock --seal and unlock, and a wrong code.  `vaultd mfa add-totp` and `vaultd
fido2 enroll` are CLI-local (no IPC), so they are not relayed.

Every recorded frame, in both directions, is searched for the canary key id, secret and seed
(also the seed's bytes as hex and base64), and every reply validates against the declared
reply schema of its request's op.  The daemon's peer is the relay, so every request carries
the test process's peer credentials: fine, the relay only copies bytes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vaultd.ipc.client import DaemonClient
from vaultd.ipc.protocol import decode_body, decode_request, encode_request
from vaultd.ipc.replies import check_event, check_reply
from vaultd.testing.fake_sts import FakeSts, Fault
from vaultd.testing.frame_recorder import FrameRecorder
from vaultd.testing.harness import MFA_SERIAL, Installation, wait_for
from vaultd.testing.soft_ctap2 import SoftCtap2Device

from .conftest import (
    CANARY_KEY_ID,
    CANARY_SECRET,
    CANARY_SEED,
    CREDPROC,
    MakeVault,
    finish,
    raw_connect,
    read_frame,
    record_output,
)

pytestmark = [pytest.mark.hsm, pytest.mark.slow(reason="one full session on a real daemon")]

_FRAME = ("v", "ok", "event")  # envelope keys, not part of a reply or event schema


def _seed_needles() -> list[bytes]:
    raw = base64.b32decode(CANARY_SEED + "=" * (-len(CANARY_SEED) % 8))
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
        forms += [encode(raw), encode(raw).rstrip(b"=")]
    return [CANARY_KEY_ID.encode(), CANARY_SECRET.encode(), CANARY_SEED.encode(), *forms]


def _vaultd(env: dict[str, str], *args: str, check: bool = True) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", *args], env=env, capture_output=True, timeout=60
    )
    record_output(done.stdout, done.stderr)
    assert not check or done.returncode == 0, done.stderr
    return done.stdout


def _credproc(relay: Path, profile: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(CREDPROC), "--socket", str(relay), profile],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _approve(env: dict[str, str], profile: str, code: str, *, check: bool = True) -> None:
    found: list[str] = []

    def pending() -> bool:
        items = json.loads(_vaultd(env, "approvals", "--json"))
        found.extend(str(i["id"]) for i in items if i["profile"] == profile)
        return bool(found)

    assert wait_for(pending), "no approval appeared"
    _vaultd(env, "approve", found[0], "--code", code, check=check)


class _Subscriber:
    """The TUI's event stream, kept open on a raw connection through the relay."""

    def __init__(self, relay: Path) -> None:
        self.sock = raw_connect(relay)
        self.sock.settimeout(None)
        self.sock.sendall(encode_request("events"))
        self.events: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while (body := read_frame(self.sock)) is not None:
                self.events.append(str(json.loads(body).get("event")))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self.sock.close()


def _session(inst: Installation, relay: Path, fake_sts: FakeSts) -> tuple[set[str], bytes]:
    """Every IPC use of the session, through ``relay``: the TUI stream's event names and the
    first served session's access key id."""
    env = inst.env | {"VAULTD_SOCKET": str(relay)}
    subscriber = _Subscriber(relay)
    assert wait_for(lambda: "subscribed" in subscriber.events)
    try:
        cold = _credproc(relay, "dev")  # cold: approved with a typed code
        _approve(env, "dev", "123456")
        code, out, err = finish(cold)
        assert code == 0, err
        code, cached, err = finish(_credproc(relay, "dev"))
        assert code == 0 and cached == out, err
        json.loads(_vaultd(env, "status", "--json"))
        records = DaemonClient(relay).request("audit_tail", n=100)["records"]
        assert isinstance(records, list) and records
        json.loads(_vaultd(env, "report", "--json"))
        # touch-or-code: the soft key is touched, the daemon generates the code from the seed
        code, _, err = finish(_credproc(relay, "tdev"))
        assert code == 0, err
        _vaultd(env, "lock", "--seal")
        _vaultd(env, "unlock")
        fake_sts.inject(Fault(error_code="AccessDenied"), action="GetSessionToken")
        wrong = _credproc(relay, "dev")
        _approve(env, "dev", "654321", check=False)  # STS rejects it: approve exits non-zero
        code, out, err = finish(wrong)
        assert code != 0 and out == b"" and b"MFA_REJECTED" in err
    finally:
        subscriber.close()
    return set(subscriber.events), json.loads(cached)["AccessKeyId"].encode()


def test_no_frame_carries_a_long_term_secret_and_every_reply_fits_its_schema(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    device = tmp_path / "key1.json"
    inst = make_vault(
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": "code"},
            "tdev": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": "touch-or-code"},
        },
        extra={"fido2": {"devices": [f"soft:{device}"]}},
        start=False,
        seed=True,
    )
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.start_daemon()
    relay = tmp_path / "relay.sock"
    with FrameRecorder(relay, inst.socket) as recorder:
        events, session_key_id = _session(inst, relay, fake_sts)
    assert {"subscribed", "approval_opened"} <= events

    frames = recorder.frames()
    assert any(session_key_id in frame for frame in frames), "the relay recorded no replies"

    needles = _seed_needles()
    hits = [(i, n[:6]) for i, frame in enumerate(frames) for n in needles if n in frame]
    assert hits == []

    ops: list[str] = []
    errors: list[str] = []
    pushed: list[str] = []
    for conn in recorder.connections:
        assert conn.sent.tail == b"" and conn.received.tail == b""
        requests = [decode_request(f) for f in conn.sent.frames]
        replies = [decode_body(f) for f in conn.received.frames]
        finals = [r for r in replies if "event" not in r]
        for event in (r for r in replies if "event" in r):
            pushed.append(str(event["event"]))
            check_event(str(event["event"]), {k: v for k, v in event.items() if k not in _FRAME})
        if requests and requests[-1].op == "events" and len(finals) < len(requests):
            ops.append("events")  # the subscriber left first: its final reply is never sent
            requests.pop()
        assert len(finals) == len(requests), [r.op for r in requests]
        for request, reply in zip(requests, finals, strict=True):
            ops.append(request.op)
            assert reply["v"] == 1
            if reply["ok"] is False:
                error = reply["error"]
                assert isinstance(error, dict)
                errors.append(str(error["code"]))
                continue
            assert reply["ok"] is True
            check_reply(request.op, {k: v for k, v in reply.items() if k not in _FRAME})
    assert {"subscribed", "approval_opened", "approval_pending", "touch_needed"} <= set(pushed)
    expected = {"credentials", "approvals", "approve", "status", "audit_tail", "report"}
    assert expected | {"events", "lock", "unlock"} <= set(ops)
    assert errors == ["MFA_REJECTED"]
    tokens = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert [r.access_key_id for r in tokens] == [CANARY_KEY_ID] * 3
