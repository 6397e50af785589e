"""The codec: golden frames, the strict decode table, error reconstruction, fuzzing."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd import errors
from vaultd.core.model import Requester
from vaultd.errors import BadRequest, FrameTooLarge, VaultError
from vaultd.ipc import protocol
from vaultd.ipc.protocol import (
    MAX_FRAME,
    Event,
    approval_pending_fields,
    credentials_reply,
    decode_frame,
    decode_reply,
    decode_request,
    encode_frame,
    encode_request,
    error_from_reply,
    error_reply,
    event_frame,
    frame_length,
    success_reply,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "ipc_frames.json").read_text(encoding="utf-8")
)


def _frame_bytes(case: dict[str, Any]) -> bytes:
    return bytes.fromhex(case["frame_hex"])


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: c["name"])
def test_request_vectors(case: dict[str, Any]) -> None:
    assert encode_request(case["op"], **case["fields"]) == _frame_bytes(case)
    request = decode_frame(_frame_bytes(case))
    assert request.op == case["op"]
    assert asdict(request) == case["parsed"]


@pytest.mark.parametrize("case", VECTORS["success_replies"], ids=lambda c: c["name"])
def test_success_vectors(case: dict[str, Any]) -> None:
    body = success_reply(case["fields"])
    assert encode_frame(body) == _frame_bytes(case)
    assert decode_reply(body) == case["fields"]


@pytest.mark.parametrize("case", VECTORS["error_replies"], ids=lambda c: c["name"])
def test_error_vectors(case: dict[str, Any]) -> None:
    cls = getattr(errors, case["error"])
    exc = cls(case["message"], **case["extras"])
    body = error_reply(exc)
    assert encode_frame(body) == _frame_bytes(case)
    with pytest.raises(cls) as raised:
        decode_reply(body)
    assert raised.value.code == exc.code
    assert raised.value.message == case["message"]
    for name, value in case["extras"].items():
        assert getattr(raised.value, name) == value


@pytest.mark.parametrize("case", VECTORS["credentials_replies"], ids=lambda c: c["name"])
def test_credentials_fast_path_vector(case: dict[str, Any]) -> None:
    output = case["output"].encode()
    body = credentials_reply(output)
    assert encode_frame(body) == _frame_bytes(case)
    assert body.startswith(protocol.CREDENTIALS_PREFIX)
    assert decode_reply(body) == {"output": json.loads(output)}


@pytest.mark.parametrize("case", VECTORS["events"], ids=lambda c: c["name"])
def test_event_vectors(case: dict[str, Any]) -> None:
    body = event_frame(case["event"], case["fields"])
    assert encode_frame(body) == _frame_bytes(case)
    assert decode_reply(body) == Event(case["event"], case["fields"])


def test_approval_pending_fields_carry_requester_mfa_device_and_utc_expiry() -> None:
    requester = Requester(pid=7, uid=1000, executable="/usr/bin/aws", cwd="/home/u")
    expires = datetime(2025, 5, 26, 12, 34, 56, tzinfo=UTC)
    serial = "arn:aws:iam::123456789012:mfa/alice"
    fields = approval_pending_fields("ap_1", "dev", requester, expires, serial)
    assert fields["expires"] == "2025-05-26T12:34:56Z"
    assert fields["mfa_serial"] == serial
    assert fields["requester"] == asdict(requester)
    decoded = decode_reply(event_frame(protocol.APPROVAL_PENDING, fields))
    assert isinstance(decoded, Event)
    assert decoded.fields["id"] == "ap_1"


def _req(**fields: object) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"v":1,"op":"stat', "not valid JSON"),
    ("invalid utf-8", b'{"v":1,"op":"status","x":"\xff"}', "UTF-8"),
    ("nan", b'{"v":1,"op":"status","n":NaN}', "NaN"),
    ("infinity", b'{"v":1,"op":"status","n":-Infinity}', "Infinity"),
    ("huge float", b'{"v":1,"op":"status","n":1e999}', "finite"),
    ("duplicate keys", b'{"v":1,"op":"status","op":"lock"}', "duplicate key 'op'"),
    ("trailing bytes", b'{"v":1,"op":"status"} {}', "not valid JSON"),
    ("top-level array", b'[{"v":1,"op":"status"}]', "one JSON object"),
    ("top-level string", b'"status"', "one JSON object"),
    ("deep nesting", b"[" * 50_000 + b"]" * 50_000, "JSON"),
    ("missing v", b'{"op":"status"}', "'v'"),
    ("v is bool", b'{"v":true,"op":"status"}', "'v'"),
    ("unknown version", b'{"v":2,"op":"status"}', "supports version 1"),
    ("missing op", b'{"v":1}', "'op'"),
    ("unknown op", _req(op="shutdown"), "'op'"),
    ("unknown field", _req(op="status", extra=1), "'extra'"),
    ("odd unknown field", _req(op="status", **{"a b\n": 1}), "invalid field name"),
    ("missing profile", _req(op="credentials"), "'profile'"),
    ("profile int", _req(op="credentials", profile=5), "'profile'"),
    ("profile 8 KiB", _req(op="credentials", profile="a" * 8192), "'profile'"),
    ("profile traversal", _req(op="credentials", profile="../x"), "'profile'"),
    ("profile NUL", _req(op="credentials", profile="a\x00b"), "'profile'"),
    ("profile empty", _req(op="credentials", profile=""), "'profile'"),
    ("interactive int", _req(op="credentials", profile="a", interactive=1), "'interactive'"),
    ("action unknown", _req(op="credentials", profile="a", action="rotate"), "'action'"),
    ("id pattern", _req(op="approve", id="a/b"), "'id'"),
    ("code long", _req(op="approve", id="a", code="1" * 17), "'code'"),
    ("code int", _req(op="approve", id="a", code=123456), "'code'"),
    ("deny code", _req(op="deny", id="a", code="123456"), "'code'"),
    ("seal int", _req(op="lock", seal=0), "'seal'"),
    ("lock profile pattern", _req(op="lock", profile="a b"), "'profile'"),
    ("lock profile int", _req(op="lock", profile=1), "'profile'"),
    ("pin empty", _req(op="unlock", pin=""), "'pin'"),
    ("pin long", _req(op="unlock", pin="1" * 257), "'pin'"),
    ("pin surrogate", b'{"v":1,"op":"unlock","pin":"\\ud800"}', "'pin'"),
    ("pin NUL", _req(op="unlock", pin="12\x0034"), "'pin'"),
]


@pytest.mark.parametrize(
    ("body", "needle"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_decode_table_gives_bad_request_naming_the_problem(body: bytes, needle: str) -> None:
    with pytest.raises(BadRequest) as raised:
        decode_request(body)
    assert needle in raised.value.message
    assert raised.value.code == "BAD_REQUEST"


def test_messages_never_echo_field_values() -> None:
    with pytest.raises(BadRequest) as raised:
        decode_request(_req(op="unlock", pin="1" * 300))
    assert "1" * 20 not in raised.value.message


def test_unlock_pin_is_not_in_repr() -> None:
    request = decode_request(_req(op="unlock", pin="PINCANARY"))
    assert request.op == "unlock"
    assert "PINCANARY" not in repr(request)


def test_length_prefix_2_32_minus_1_is_refused_from_the_header() -> None:
    with pytest.raises(FrameTooLarge) as raised:
        frame_length(b"\xff\xff\xff\xff")
    assert raised.value.code == "FRAME_TOO_LARGE"
    assert frame_length(MAX_FRAME.to_bytes(4, "big")) == MAX_FRAME
    with pytest.raises(FrameTooLarge):
        frame_length((MAX_FRAME + 1).to_bytes(4, "big"))


def test_whole_frame_decoding_refuses_truncation_and_trailing_bytes() -> None:
    good = encode_request("status")
    assert decode_frame(good).op == "status"
    for bad in (good[:-1], good + b"x", good[:3]):
        with pytest.raises(BadRequest):
            decode_frame(bad)


def test_encoders_refuse_what_the_decoder_would() -> None:
    with pytest.raises(BadRequest):
        encode_request("credentials", profile="../etc")
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * (MAX_FRAME + 1))
    with pytest.raises(ValueError, match="'v' or 'ok'"):
        success_reply({"ok": False})


def test_error_with_kwargs_but_no_extras_still_carries_its_code() -> None:
    exc = error_from_reply({"code": "FIDO2_REJECTED", "message": "bad rpIdHash"})
    assert exc.code == "FIDO2_REJECTED"
    assert isinstance(exc, errors.GateError)
    assert str(exc) == "bad rpIdHash"


def test_error_with_its_extras_is_rebuilt_as_its_own_class() -> None:
    exc = error_from_reply({"code": "FIDO2_REJECTED", "message": "m", "check": "rpIdHash"})
    assert isinstance(exc, errors.Fido2Rejected)
    assert exc.check == "rpIdHash"
    path_exc = error_from_reply({"code": "UNSAFE_PERMISSIONS", "message": "m", "path": "/x"})
    assert isinstance(path_exc, errors.UnsafePermissions)
    assert path_exc.path == "/x"


def test_unknown_and_malformed_error_codes() -> None:
    future = error_from_reply({"code": "SOMETHING_NEW", "message": "newer daemon"})
    assert future.code == "SOMETHING_NEW"
    assert isinstance(future, VaultError)
    for bad in ({"code": "lower case", "message": "m"}, {"message": "m"}, "nope"):
        assert error_from_reply(bad).code == "PROTOCOL_ERROR"


def test_plain_codes_map_to_the_exact_class() -> None:
    assert isinstance(error_from_reply({"code": "SEALED", "message": "m"}), errors.Sealed)
    assert type(error_from_reply({"code": "BAD_REQUEST", "message": "m"})) is BadRequest


def test_reply_decoding_refuses_odd_frames() -> None:
    for body in (b'{"v":2,"ok":true}', b'{"v":1}', b'{"v":true,"ok":true}'):
        with pytest.raises(errors.ProtocolError):
            decode_reply(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256))
def test_frame_decoder_raises_only_vault_errors(data: bytes) -> None:
    try:
        decode_frame(data)
    except VaultError:
        pass


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 2, True, "1"]), "op": st.sampled_from(sorted(protocol.OPS))},
        optional={
            "profile": JSONISH,
            "interactive": JSONISH,
            "action": JSONISH,
            "id": JSONISH,
            "code": JSONISH,
            "seal": JSONISH,
            "pin": JSONISH,
            "other": JSONISH,
        },
    )
)
def test_request_bodies_either_parse_or_raise_bad_request(obj: dict[str, object]) -> None:
    body = json.dumps(obj).encode()
    try:
        request = decode_request(body)
    except BadRequest:
        return
    assert request.op == obj["op"]
    for name, value in obj.items():
        if name not in ("v", "op"):
            assert getattr(request, name) == value


@pytest.mark.parametrize(
    ("name", "value"),
    [("display", ""), ("display", ':0"'), ("wayland_display", "w" * 256), ("display", 0)],
)
def test_a_bad_display_is_refused(name: str, value: object) -> None:
    with pytest.raises(BadRequest, match=f"field '{name}'"):
        decode_request(_req(op="credentials", profile="dev", **{name: value}))
