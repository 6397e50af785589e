"""docs/threat-model.md T28: the declared reply schema carries no long-lived secret, and is
enforced.

The schema walk follows every reply's type hints recursively.  It is shown to find planted bad
fields, so it cannot pass vacuously.  The enforcement point is ``Daemon.handle``; it is called
here with a stand-in daemon whose dispatcher returns a chosen reply (a fake, since building a
real daemon needs a token; tests/adversarial/test_frames.py runs the real one).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import types
import typing
from dataclasses import is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, get_args, get_type_hints

import pytest

import vaultd.core.records
from vaultd.aws.credential_process import render
from vaultd.core.approvals import Approval
from vaultd.core.breakglass import Grant
from vaultd.core.model import (
    ApprovalMethod,
    LongTermCredentials,
    Profile,
    ProfileKind,
    RecordInfo,
    RecordKind,
    Requester,
    SessionCredentials,
    record_rows,
)
from vaultd.core.report import build_report, to_csv, to_json
from vaultd.core.rotation import RotationResult
from vaultd.daemon import Daemon
from vaultd.errors import InternalError, ReplySchemaViolation
from vaultd.ipc.protocol import OPS, CredentialsRequest, StatusRequest, credentials_reply
from vaultd.ipc.replies import EVENTS, REPLIES, CredentialProcessOutput, check_reply

# Independent of vaultd.ipc.replies.SECRET_FIELD_NAMES on purpose: emptying that list must not
# make this test pass.  Compared lower case with "_" and "-" removed.
LONG_TERM_NAMES = {
    "awssecretaccesskey",
    "secret",
    "seed",
    "totpseed",
    "mfaseed",
    "pin",
    "userpin",
    "sopin",
    "privatekey",
    "longterm",
    "credentials",
}
SESSION_OUTPUT_NAMES = {"secretaccesskey", "sessiontoken"}  # only in CredentialProcessOutput
FORBIDDEN_TYPES: set[type] = {
    LongTermCredentials,
    SessionCredentials,
    bytes,
    bytearray,
    *(
        cls
        for _, cls in inspect.getmembers(vaultd.core.records, inspect.isclass)
        if cls.__module__ == vaultd.core.records.__name__
    ),
}
NOW = datetime(2025, 5, 26, 12, 0, tzinfo=UTC)
EXPIRES = "2025-05-26T13:00:00Z"
SESSION_OUTPUT = (
    b'{"Version":1,"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"sessionsecret",'
    b'"SessionToken":"token","Expiration":"2025-05-26T13:00:00Z"}'
)


def _is_typeddict(hint: object) -> bool:
    return isinstance(hint, type) and typing.is_typeddict(hint)


def schema_problems(hint: object, path: str, *, session_output: bool = False) -> list[str]:
    """Every forbidden type or long-term secret field name reachable from ``hint``."""
    problems: list[str] = []
    if isinstance(hint, type) and (hint in FORBIDDEN_TYPES or is_dataclass(hint)):
        problems.append(f"{path}: type {hint.__name__}")
    if _is_typeddict(hint):
        assert isinstance(hint, type)
        inside = session_output or hint is CredentialProcessOutput
        for name, field_type in get_type_hints(hint).items():
            key = name.lower().replace("_", "").replace("-", "")
            if key in LONG_TERM_NAMES or (key in SESSION_OUTPUT_NAMES and not inside):
                problems.append(f"{path}.{name}: field name")
            problems += schema_problems(field_type, f"{path}.{name}", session_output=inside)
    for arg in get_args(hint):
        problems += schema_problems(arg, path, session_output=session_output)
    return problems


def test_every_request_op_has_a_reply_schema() -> None:
    assert set(REPLIES) == set(OPS)
    assert all(_is_typeddict(schema) for schema in REPLIES.values())


@pytest.mark.parametrize("op", sorted(REPLIES))
def test_no_reply_type_can_carry_a_long_term_secret(op: str) -> None:
    assert schema_problems(REPLIES[op], op) == []


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_no_event_type_can_carry_a_long_term_secret(event: str) -> None:
    assert _is_typeddict(EVENTS[event])
    assert schema_problems(EVENTS[event], event) == []


class _Inner(TypedDict):
    keys: list[LongTermCredentials | None]


class _Planted(TypedDict):
    note: str
    nested: dict[str, _Inner]
    SecretAccessKey: str
    totp_seed: vaultd.core.records.TotpSeed


def test_the_walk_finds_planted_bad_fields() -> None:
    found = schema_problems(_Planted, "planted")
    assert "planted.nested.keys: type LongTermCredentials" in found
    assert "planted.SecretAccessKey: field name" in found
    assert "planted.totp_seed: field name" in found
    assert "planted.totp_seed: type TotpSeed" in found
    assert not any(p.startswith("planted.note") for p in found)
    # The session document is the one place SecretAccessKey may appear.
    assert schema_problems(CredentialProcessOutput, "output") == []


def test_the_walk_reaches_every_nested_reply_type() -> None:
    """Each schema's nested views are visited (a walk that stops early would miss them)."""
    seen: set[object] = set()

    def visit(hint: object) -> None:
        if _is_typeddict(hint):
            assert isinstance(hint, type)
            seen.add(hint)
            for field_type in get_type_hints(hint).values():
                visit(field_type)
        for arg in get_args(hint):
            visit(arg)

    for schema in REPLIES.values():
        visit(schema)
    names = {getattr(s, "__name__", "") for s in seen}
    assert {"RequesterView", "ApprovalView", "GrantView", "ReportRowView"} <= names
    assert {"ProfileStatus", "CredentialProcessOutput"} <= names


# --- the real producers match the declared replies ------------------------------------------


def _approval() -> dict[str, object]:
    requester = Requester(pid=42, uid=1000, executable="/usr/bin/aws", cwd="/home/u")
    approval = Approval(
        id="ap_1",
        profile="dev",
        action="credential_process",
        requester=requester,
        methods=ApprovalMethod.CODE,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=2),
        created_mono=1.0,
        deadline_mono=121.0,
    )
    return approval.as_dict()


def _grant() -> dict[str, object]:
    grant = Grant("g_1", "root", "incident 42", NOW, 900.0)
    return grant.as_dict()


def _status() -> dict[str, object]:
    profile = {
        "name": "dev",
        "kind": "session",
        "approval": "code",
        "expires_at": EXPIRES,
        "seconds_left": 3600,
        "target_account": None,
        "root_task": None,
        "root": False,
    }
    return {
        "sealed": False,
        "sealed_reason": None,
        "now": "2025-05-26T12:00:00Z",
        "profiles": [profile, {**profile, "expires_at": None, "seconds_left": None}],
        "approvals": [_approval()],
        "touch_needed": [],
        "in_progress": [],
        "cooldowns": {"ops": 12},
        "keystore": "pkcs11",
        "hardware": False,
        "grants": [_grant()],
        "token_label": "vaultd",
        "socket": "/run/vaultd/vaultd.sock",
        "pid": 7,
        "config_digest": "0" * 64,
    }


def _progress() -> dict[str, object]:
    return {"id": "abc", "profile": "dev", "state": "calling_sts", "message": "calling STS"}


def _report() -> dict[str, object]:
    records = [RecordInfo(RecordKind.KEY_PAIR, "dev", NOW - timedelta(days=100), "AKIA...WXYZ")]
    profiles = {"dev": Profile(name="dev", kind=ProfileKind.SESSION, credentials="dev")}
    rows = build_report(
        records, last_used={}, fido2=[], profiles=profiles, seeds=[], now=NOW, last_rotated={}
    )
    return {"rows": json.loads(to_json(rows)), "csv": to_csv(rows)}


def _rotation() -> dict[str, object]:
    return RotationResult("dev", "AKIA...AAAA", "AKIA...BBBB", NOW, True, True).as_dict()


VALID: list[tuple[str, dict[str, object] | bytes]] = [
    ("credentials", credentials_reply(SESSION_OUTPUT)),
    ("federation", credentials_reply(SESSION_OUTPUT)),
    ("approvals", {"approvals": [_approval()], "in_progress": [_progress()], "cooldowns": {}}),
    ("status", _status()),
    ("breakglass", {"grant": _grant(), "output": json.loads(SESSION_OUTPUT)}),
    ("report", _report()),
    (
        "records",
        {"records": record_rows([RecordInfo(RecordKind.KEY_PAIR, "dev", NOW, "AKIA...WXYZ")])},
    ),
    ("rotate", _rotation()),
    ("audit_tail", {"records": [{"seq": 1, "event": "start", "client": {"pid": 1}}]}),
    ("unlock", {"already_unlocked": False}),
    *((op, {}) for op in ("approve", "deny", "lock", "events", "grant_end")),
]


@pytest.mark.parametrize(("op", "reply"), VALID, ids=[op for op, _ in VALID])
def test_real_replies_match_their_schema(op: str, reply: dict[str, object] | bytes) -> None:
    check_reply(op, reply)


def _with(base: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return dict(out)


BAD: list[tuple[str, dict[str, object] | bytes, str]] = [
    ("status", _with(_status(), ("extra",), 1), "undeclared field(s) extra"),
    ("status", _with(_status(), ("approvals", 0, "secret_access_key"), "x"), "undeclared"),
    ("status", _with(_status(), ("pid",), True), "status.pid: must be of type int"),
    ("status", {k: v for k, v in _status().items() if k != "pid"}, "missing field(s) pid"),
    ("approve", {"seed": "JBSWY3DP"}, "undeclared field(s) seed"),
    ("audit_tail", {"records": [{"event": "x", "detail": {"Pin": "1"}}]}, "names a secret"),
    ("audit_tail", {"records": [{"SecretAccessKey": "x"}]}, "names a secret"),
    ("report", _with(_report(), ("rows", 0, "age_days"), "100"), "must be of type int"),
    ("credentials", b'{"v":1,"ok":true,"output":{"AccessKeyId":"A"}}', "missing field(s)"),
    ("credentials", b'{"v":1,"ok":true,"output":{}, "key":"x"}', "output is not JSON"),
    ("credentials", b'{"v":1,"ok":true,"key":"x","output":{}}', "undeclared field(s) key"),
    ("status", b'{"v":1,"ok":true,"output":' + SESSION_OUTPUT + b"}", "does not reply with"),
    ("credentials", {"output": json.loads(SESSION_OUTPUT) | {"Version": 2}}, "declared values"),
    ("no_such_op", {}, "no declared reply schema"),
]


@pytest.mark.parametrize(("op", "reply", "needle"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_nonconforming_replies_are_refused(
    op: str, reply: dict[str, object] | bytes, needle: str
) -> None:
    with pytest.raises(ReplySchemaViolation) as raised:
        check_reply(op, reply)
    assert needle in raised.value.message


# --- the credentials reply carries session credentials only ----------------------------------


def test_render_refuses_a_long_term_key_pair() -> None:
    long_term: Any = LongTermCredentials("AKIAEXAMPLEKEY000001", "longtermsecret")
    with pytest.raises(ReplySchemaViolation, match="only STS session credentials") as raised:
        render(long_term)
    assert "longtermsecret" not in raised.value.message


def test_render_refuses_an_empty_session_token() -> None:
    creds = SessionCredentials("ASIAEXAMPLE", "sessionsecret", "", NOW)
    with pytest.raises(ReplySchemaViolation):
        render(creds)
    good = SessionCredentials("ASIAEXAMPLE", "sessionsecret", "token", NOW)
    assert credentials_reply(render(good)).endswith(b'"Expiration":"2025-05-26T12:00:00Z"}}')


@pytest.mark.parametrize(
    "output",
    [
        b'{"Version":1,"AccessKeyId":"AKIAEXAMPLEKEY000001","SecretAccessKey":"longterm"}',
        SESSION_OUTPUT.replace(b'"token"', b'""'),
        SESSION_OUTPUT.replace(b"2025-05-26T13:00:00Z", b""),
        SESSION_OUTPUT.replace(b"2025-05-26T13:00:00Z", b"tomorrow"),
        SESSION_OUTPUT[:-1] + b',"root":true}',
        b"not json",
    ],
)
def test_credentials_reply_refuses_anything_but_a_session_document(output: bytes) -> None:
    with pytest.raises(ReplySchemaViolation):
        credentials_reply(output)


# --- the enforcement point in the daemon -----------------------------------------------------


def _stand_in(reply: dict[str, object] | bytes) -> Any:
    async def dispatch(request: object, conn: object) -> dict[str, object] | bytes:
        return reply

    return types.SimpleNamespace(_dispatch=dispatch, _uid=os.getuid())


def _conn() -> Any:
    """A peer of the daemon's own uid (a root peer of a non-root daemon is audited first)."""
    return types.SimpleNamespace(peer=types.SimpleNamespace(pid=1, uid=os.getuid()))


async def test_daemon_refuses_to_send_an_extra_field(caplog: pytest.LogCaptureFixture) -> None:
    leaky = _status() | {"secret_access_key": "canarysecret"}
    with caplog.at_level(logging.ERROR, logger="vaultd.daemon"):
        with pytest.raises(InternalError) as raised:
            await Daemon.handle(_stand_in(leaky), StatusRequest(), _conn())
    assert raised.value.code == "INTERNAL_ERROR"
    assert "canarysecret" not in raised.value.message
    assert "undeclared field(s) secret_access_key" in caplog.text
    assert "canarysecret" not in caplog.text


async def test_daemon_sends_a_conforming_reply_unchanged() -> None:
    reply = _status()
    assert await Daemon.handle(_stand_in(reply), StatusRequest(), _conn()) is reply
    body = credentials_reply(SESSION_OUTPUT)
    request = CredentialsRequest(profile="dev")
    assert await Daemon.handle(_stand_in(body), request, _conn()) is body
