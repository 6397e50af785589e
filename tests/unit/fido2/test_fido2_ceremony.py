"""Enrolment and touch ceremonies against the software authenticator through python-fido2's
real Ctap2 and ClientPin (real CBOR, ECDH, AES-CBC, HMAC and ECDSA on both sides)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from fido2.cose import CoseKey
from fido2.ctap import STATUS, CtapDevice
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.errors import (
    ApprovalTimeout,
    ApprovalUnavailable,
    Denied,
    Fido2PinAuthBlocked,
    Fido2PinBlocked,
    Fido2PinInvalid,
    Fido2PinRequired,
    RecordExists,
)
from vaultd.fido2.ceremony import AssertionResult, enroll
from vaultd.fido2.verify import EnrolledCredential, verify_assertion
from vaultd.testing.clock import FakeClock
from vaultd.testing.soft_ctap2 import SoftCtap2Device

Approve = Callable[..., AssertionResult]
MakeDevice = Callable[..., SoftCtap2Device]
SetPin = Callable[[SoftCtap2Device, str], None]
SALT = b"\x5a" * 32


def test_enrol_records_public_facts(device: SoftCtap2Device) -> None:
    clock = FakeClock()
    cred = enroll(device, name="desk", user_name="alice", pin=None, clock=clock)
    assert (cred.name, cred.created, cred.sign_count, cred.suspect) == (
        "desk",
        clock.now(),
        0,
        False,
    )
    assert cred.hmac_secret and len(cred.credential_id) == 32
    plain = enroll(device, name="nohmac", user_name="alice", pin=None, hmac_secret=False)
    assert not plain.hmac_secret


def test_round_trip_and_prompt_only_after_upneeded(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    seen: list[bool] = []
    result = approve(
        [device], [cred], on_prompt=lambda: seen.append(device.waiting_for_touch.is_set())
    )
    assert seen == [True]  # once, and only while the device was waiting for the touch
    assert result.credential == cred and result.hmac_output is None
    count = verify_assertion(
        cred,
        rp_id="vaultd",
        client_data_hash=result.client_data_hash,
        auth_data=result.auth_data,
        signature=result.signature,
        require_uv=False,
    )
    assert count == 2  # the silent up=false probe also counted


def test_no_matching_credential_never_prompts(
    make_device: MakeDevice, cred: EnrolledCredential, approve: Approve
) -> None:
    stranger = make_device()
    prompts: list[int] = []
    with pytest.raises(ApprovalUnavailable):
        approve([stranger], [cred], on_prompt=lambda: prompts.append(1))
    with pytest.raises(ApprovalUnavailable):
        approve([], [cred], on_prompt=lambda: prompts.append(1))
    assert prompts == []


def test_present_authenticator_used_when_other_absent(
    make_device: MakeDevice, approve: Approve
) -> None:
    first, second, stranger = make_device(), make_device(), make_device()
    cred1 = enroll(first, name="one", user_name="alice", pin=None)
    cred2 = enroll(second, name="two", user_name="alice", pin=None)
    result = approve([stranger, second], [cred1, cred2])
    assert result.credential == cred2


@pytest.mark.parametrize(("mode", "error"), [("refuse", Denied), ("timeout", ApprovalTimeout)])
def test_touch_not_given(
    device: SoftCtap2Device,
    cred: EnrolledCredential,
    approve: Approve,
    mode: str,
    error: type[Exception],
) -> None:
    device.set_touch(mode, 0.02)
    prompts: list[int] = []
    with pytest.raises(error):
        approve([device], [cred], hmac_salt=SALT, on_prompt=lambda: prompts.append(1))
    assert prompts == [1]


@pytest.fixture
def waiting_device(device: SoftCtap2Device, cred: EnrolledCredential) -> Iterator[SoftCtap2Device]:
    """The enrolled device, now waiting for a touch that never comes."""
    device.set_touch("cancel")
    yield device
    assert not device.waiting_for_touch.is_set()


def test_cancel_event_honoured(
    waiting_device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    cancel = threading.Event()

    def press_cancel() -> None:
        if waiting_device.waiting_for_touch.wait(5):
            cancel.set()

    threading.Thread(target=press_cancel, daemon=True).start()
    with pytest.raises(Denied, match="cancelled"):
        approve([waiting_device], [cred], cancel=cancel)
    waiting_device.set_touch("auto", 0.02)
    assert approve([waiting_device], [cred]).credential == cred  # device released


def test_host_timeout_cancels_device(
    waiting_device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    with pytest.raises(ApprovalTimeout):
        approve([waiting_device], [cred], timeout=0.2)


def test_hmac_secret_stable_per_credential_and_salt(
    make_device: MakeDevice, approve: Approve
) -> None:
    device = make_device()
    cred = enroll(device, name="a", user_name="alice", pin=None)
    other = enroll(device, name="b", user_name="alice", pin=None)
    out1 = approve([device], [cred], hmac_salt=SALT).hmac_output
    out2 = approve([device], [cred], hmac_salt=SALT).hmac_output
    assert out1 is not None and len(out1) == 32 and out1 == out2
    assert approve([device], [cred], hmac_salt=b"\x01" * 32).hmac_output != out1
    assert approve([device], [other], hmac_salt=SALT).hmac_output != out1


def test_hmac_secret_needs_a_touched_assertion(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    """The output appears in no enrolment and in no silent (up=false) assertion."""
    ctap = Ctap2(device)
    protocol = ClientPin(ctap).protocol
    peer = ctap.client_pin(protocol.VERSION, ClientPin.CMD.GET_KEY_AGREEMENT)[1]

    key_agreement, shared = protocol.encapsulate(CoseKey(peer))
    salt_enc = protocol.encrypt(shared, SALT)
    ext = {
        "hmac-secret": {
            1: key_agreement,
            2: salt_enc,
            3: protocol.authenticate(shared, salt_enc),
            4: protocol.VERSION,
        }
    }
    allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": cred.credential_id}]
    silent = ctap.get_assertion("vaultd", b"\0" * 32, allow, ext, {"up": False})
    assert not silent.auth_data.is_user_present() and silent.auth_data.extensions is None
    touched = ctap.get_assertion("vaultd", b"\0" * 32, allow, ext)
    value = (touched.auth_data.extensions or {})["hmac-secret"]
    assert protocol.decrypt(shared, value) == approve([device], [cred], hmac_salt=SALT).hmac_output


def test_hmac_secret_refused_for_credential_without_it(
    device: SoftCtap2Device, approve: Approve
) -> None:
    plain = enroll(device, name="plain", user_name="alice", pin=None, hmac_secret=False)
    with pytest.raises(ApprovalUnavailable):
        approve([device], [plain], hmac_salt=SALT)


def test_pin_enrolment_and_uv(device: SoftCtap2Device, approve: Approve, set_pin: SetPin) -> None:
    set_pin(device, "4711")
    with pytest.raises(Fido2PinRequired):
        enroll(device, name="k", user_name="alice", pin=None)
    cred = enroll(device, name="k", user_name="alice", pin="4711")
    with pytest.raises(Fido2PinRequired):
        approve([device], [cred], require_uv=True)
    result = approve([device], [cred], require_uv=True, pin="4711", hmac_salt=SALT)
    no_uv = approve([device], [cred], hmac_salt=SALT)
    assert result.hmac_output != no_uv.hmac_output  # CredRandomWithUV differs
    assert (
        verify_assertion(
            cred,
            rp_id="vaultd",
            client_data_hash=result.client_data_hash,
            auth_data=result.auth_data,
            signature=result.signature,
            require_uv=True,
        )
        > 0
    )


def test_uv_required_but_no_pin_set(
    device: SoftCtap2Device, cred: EnrolledCredential, approve: Approve
) -> None:
    with pytest.raises(ApprovalUnavailable):
        approve([device], [cred], require_uv=True, pin="4711")


def test_wrong_pin_counts_down_then_blocks(
    device: SoftCtap2Device, approve: Approve, set_pin: SetPin
) -> None:
    set_pin(device, "4711")
    cred = enroll(device, name="k", user_name="alice", pin="4711")
    left = []
    for _ in range(2):
        with pytest.raises(Fido2PinInvalid) as info:
            approve([device], [cred], require_uv=True, pin="0000")
        left.append(info.value.attempts_remaining)
        assert f"{info.value.attempts_remaining} attempts left" in str(info.value)
    assert left == [7, 6]
    with pytest.raises(Fido2PinAuthBlocked, match="replug"):
        approve([device], [cred], require_uv=True, pin="0000")
    with pytest.raises(Fido2PinAuthBlocked):
        approve([device], [cred], require_uv=True, pin="4711")
    device.replug()
    assert approve([device], [cred], require_uv=True, pin="4711").credential == cred
    assert ClientPin(Ctap2(device)).get_pin_retries()[0] == 8


def test_pin_blocked_after_eight_wrong(
    device: SoftCtap2Device, approve: Approve, set_pin: SetPin
) -> None:
    set_pin(device, "4711")
    cred = enroll(device, name="k", user_name="alice", pin="4711")
    for attempt in range(8):
        if attempt % 3 == 0:
            device.replug()
        with pytest.raises((Fido2PinInvalid, Fido2PinAuthBlocked, Fido2PinBlocked)):
            approve([device], [cred], require_uv=True, pin="0000")
    device.replug()
    with pytest.raises(Fido2PinBlocked, match="wipes every credential"):
        approve([device], [cred], require_uv=True, pin="4711")


def test_excluded_credential_not_enrolled_twice(
    device: SoftCtap2Device, cred: EnrolledCredential
) -> None:
    with pytest.raises(RecordExists):
        enroll(device, name="again", user_name="alice", pin=None, exclude=[cred])


class Ctap1OnlyDevice(CtapDevice):
    """Fake: a U2F-only key (no CBOR capability); no such software peer exists to use."""

    @property
    def capabilities(self) -> int:
        return 0

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        raise AssertionError("a CTAP1 device must not be sent CTAP2 commands")

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


def test_ctap1_only_device_refused(cred: EnrolledCredential, approve: Approve) -> None:
    with pytest.raises(ApprovalUnavailable, match="CTAP1"):
        enroll(Ctap1OnlyDevice(), name="old", user_name="alice", pin=None)
    with pytest.raises(ApprovalUnavailable):
        approve([Ctap1OnlyDevice()], [cred])
