"""verify_assertion, ChallengeBook and client_data_hash, fed by real assertions from the
software authenticator (real CBOR, real ECDSA) bent through its tamper knobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from fido2 import cbor

from vaultd.errors import Fido2Rejected, Fido2Suspect
from vaultd.fido2.ceremony import AssertionResult, enroll
from vaultd.fido2.verify import (
    ChallengeBook,
    EnrolledCredential,
    client_data_hash,
    select_credential,
    verify_assertion,
)
from vaultd.testing.clock import FakeClock
from vaultd.testing.soft_ctap2 import SoftCtap2Device

Approve = Callable[..., AssertionResult]


class CountingRandom:
    """Fake RandomSource (no real peer exists for this port here): distinct, predictable bytes."""

    def __init__(self) -> None:
        self.calls = 0

    def random(self, n: int) -> bytes:
        self.calls += 1
        return self.calls.to_bytes(n, "big")


def _verify(cred: EnrolledCredential, result: AssertionResult, **kw: Any) -> int:
    args: dict[str, Any] = {
        "rp_id": "vaultd",
        "client_data_hash": result.client_data_hash,
        "auth_data": result.auth_data,
        "signature": result.signature,
        "require_uv": False,
    }
    return verify_assertion(cred, **(args | kw))


def test_round_trip_returns_strictly_greater_count(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    first = _verify(cred, approve([device], [cred]))
    assert first > cred.sign_count
    second = _verify(dataclasses.replace(cred, sign_count=first), approve([device], [cred]))
    assert second > first


def test_client_data_hash_binds_every_input() -> None:
    base = client_data_hash(b"c" * 32, "a1", "vaultd")
    assert base == client_data_hash(b"c" * 32, "a1", "vaultd")
    others = {
        client_data_hash(b"d" * 32, "a1", "vaultd"),
        client_data_hash(b"c" * 32, "a2", "vaultd"),
        client_data_hash(b"c" * 32, "a1", "other"),
        client_data_hash(b"c" * 32, "a1", "vaultd", kind="vaultd.enroll"),
    }
    assert base not in others and len(others) == 4


REFUSALS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("rp_id", {"rp_id": "evil.example"}, {}),
    ("rp_id", {}, {"rp_id": "other-rp"}),
    ("user_present", {"clear_up": True}, {}),
    ("user_verified", {}, {"require_uv": True}),
    ("signature", {"corrupt_signature": True}, {}),
    ("signature", {}, {"client_data_hash": client_data_hash(b"x" * 32, "a9", "vaultd")}),
]


@pytest.mark.parametrize(("check", "tamper", "verify_kw"), REFUSALS)
def test_each_refusal_names_its_check(
    device: SoftCtap2Device,
    cred: EnrolledCredential,
    approve: Approve,
    check: str,
    tamper: dict[str, Any],
    verify_kw: dict[str, Any],
) -> None:
    device.tamper_next(**tamper)
    with pytest.raises(Fido2Rejected) as info:
        _verify(cred, approve([device], [cred]), **verify_kw)
    assert info.value.check == check
    assert info.value.code == "FIDO2_REJECTED"


def test_uv_cleared_although_pin_was_used(
    device: SoftCtap2Device, approve: Approve, set_pin: Callable[[SoftCtap2Device, str], None]
) -> None:
    set_pin(device, "4711")
    cred = enroll(device, name="k", user_name="alice", pin="4711")
    ok = approve([device], [cred], require_uv=True, pin="4711")
    assert _verify(cred, ok, require_uv=True) > 0
    device.tamper_next(clear_uv=True)
    bent = approve([device], [cred], require_uv=True, pin="4711")
    with pytest.raises(Fido2Rejected) as info:
        _verify(cred, bent, require_uv=True)
    assert info.value.check == "user_verified"


@pytest.mark.parametrize("cut", [lambda b: b[:36], lambda b: b[:10], lambda b: b + b"\x00"])
def test_truncated_or_padded_auth_data(
    device: SoftCtap2Device,
    cred: EnrolledCredential,
    approve: Approve,
    cut: Callable[[bytes], bytes],
) -> None:
    result = approve([device], [cred])
    with pytest.raises(Fido2Rejected) as info:
        _verify(cred, result, auth_data=cut(result.auth_data))
    assert info.value.check == "auth_data"


def test_signature_by_another_credential(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    other = enroll(device, name="key2", user_name="alice", pin=None)
    result = approve([device], [other])
    with pytest.raises(Fido2Rejected) as info:
        _verify(dataclasses.replace(cred, credential_id=other.credential_id), result)
    assert info.value.check == "signature"


def test_unknown_credential_id(cred: EnrolledCredential) -> None:
    assert select_credential([cred], cred.credential_id) is cred
    with pytest.raises(Fido2Rejected) as info:
        select_credential([cred], b"\x01" * 32)
    assert info.value.check == "credential"


def test_unusable_stored_key(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    broken = dataclasses.replace(cred, public_key=cbor.encode({1: 2, 3: -8}))
    with pytest.raises(Fido2Rejected) as info:
        _verify(broken, approve([device], [cred]))
    assert info.value.check == "credential"


@pytest.mark.parametrize("delta", [-1, 0], ids=["regression", "equality"])
def test_counter_not_increasing_is_suspect(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve, delta: int
) -> None:
    stored = dataclasses.replace(cred, sign_count=50)
    device.tamper_next(counter=50 + delta)
    with pytest.raises(Fido2Suspect) as info:
        _verify(stored, approve([device], [cred]))
    assert info.value.code == "FIDO2_SUSPECT"


def test_zero_after_zero_only_when_allowed(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    assert cred.sign_count == 0
    device.tamper_next(counter=0)
    zero = approve([device], [cred])
    with pytest.raises(Fido2Suspect):
        _verify(cred, zero)
    assert _verify(cred, zero, allow_zero_counter=True) == 0
    device.tamper_next(counter=0)
    with pytest.raises(Fido2Suspect):
        _verify(
            dataclasses.replace(cred, sign_count=3),
            approve([device], [cred]),
            allow_zero_counter=True,
        )


def test_suspect_credential_is_refused(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    with pytest.raises(Fido2Suspect):
        _verify(dataclasses.replace(cred, suspect=True), approve([device], [cred]))


def test_challenge_single_use_and_bound() -> None:
    clock, rnd = FakeClock(), CountingRandom()
    book = ChallengeBook(clock, rnd)
    first, second = book.issue("a1"), book.issue("a1")
    assert len(first) == 32 and first != second
    clock.advance(60)
    book.consume(first, "a1")
    with pytest.raises(Fido2Rejected) as reused:
        book.consume(first, "a1")
    assert reused.value.check == "challenge"
    with pytest.raises(Fido2Rejected) as foreign:
        book.consume(second, "a2")
    assert foreign.value.check == "challenge" and "another approval" in str(foreign.value)
    with pytest.raises(Fido2Rejected):
        book.consume(second, "a1")  # a foreign attempt used it up


def test_challenge_stale_after_61_seconds() -> None:
    clock = FakeClock()
    book = ChallengeBook(clock, CountingRandom())
    challenge = book.issue("a1")
    clock.advance(61)
    with pytest.raises(Fido2Rejected) as info:
        book.consume(challenge, "a1")
    assert info.value.check == "challenge" and "older than 60 s" in str(info.value)


def test_unknown_challenge() -> None:
    book = ChallengeBook(FakeClock(), CountingRandom())
    with pytest.raises(Fido2Rejected) as info:
        book.consume(b"\x00" * 32, "a1")
    assert info.value.check == "challenge"
