"""The software authenticator itself, driven through python-fido2's Ctap2 and ClientPin."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap import STATUS, CtapError
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1
from fido2.hid import CTAPHID

from vaultd.fido2.ceremony import AssertionResult, enroll
from vaultd.fido2.verify import EnrolledCredential
from vaultd.testing.soft_ctap2 import SoftCtap2Device

MakeDevice = Callable[..., SoftCtap2Device]
SALT = b"\x33" * 32


def test_logs_critical_and_keeps_private_state_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL):
        device = SoftCtap2Device(tmp_path / "dev.json")
    assert "tests and demo only" in caplog.text
    assert stat.S_IMODE(device.path.stat().st_mode) == 0o600
    assert "tests and demo only" in json.loads(device.path.read_text())["warning"]
    assert list(SoftCtap2Device.list_devices()) == []


def test_get_info(device: SoftCtap2Device) -> None:
    info = Ctap2(device).info
    assert info.versions == ["FIDO_2_0", "FIDO_2_1"]
    assert info.extensions == ["hmac-secret"]
    assert info.options == {"rk": False, "up": True, "clientPin": False, "pinUvAuthToken": True}
    assert info.pin_uv_protocols == [2, 1]


def test_silent_assertion_has_no_up_and_no_wait(
    device: SoftCtap2Device, cred: EnrolledCredential
) -> None:
    device.set_touch("refuse")  # would fail if a touch were asked for
    keepalives: list[int] = []
    allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": cred.credential_id}]
    ctap = Ctap2(device)
    first = ctap.get_assertion(
        "vaultd", b"\1" * 32, allow, options={"up": False}, on_keepalive=keepalives.append
    )
    second = ctap.get_assertion("vaultd", b"\1" * 32, allow, options={"up": False})
    assert not first.auth_data.is_user_present() and keepalives == []
    assert second.auth_data.counter == first.auth_data.counter + 1  # one global counter


def test_touch_sends_upneeded_keepalive(device: SoftCtap2Device, cred: EnrolledCredential) -> None:
    keepalives: list[int] = []
    allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": cred.credential_id}]
    resp = Ctap2(device).get_assertion("vaultd", b"\1" * 32, allow, on_keepalive=keepalives.append)
    assert keepalives == [STATUS.UPNEEDED] and resp.auth_data.is_user_present()


@pytest.mark.parametrize(
    ("rp_id", "allow_id"), [("other", None), ("vaultd", b"\7" * 32)], ids=["rp", "id"]
)
def test_no_credentials(
    device: SoftCtap2Device, cred: EnrolledCredential, rp_id: str, allow_id: bytes | None
) -> None:
    allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": allow_id or cred.credential_id}]
    with pytest.raises(CtapError) as info:
        Ctap2(device).get_assertion(rp_id, b"\1" * 32, allow)
    assert info.value.code == CtapError.ERR.NO_CREDENTIALS


def test_rejects_bad_requests(device: SoftCtap2Device) -> None:
    ctap = Ctap2(device)
    with pytest.raises(CtapError) as alg:
        ctap.make_credential(
            b"\0" * 32, {"id": "vaultd"}, {"id": b"u"}, [{"type": "public-key", "alg": -257}]
        )
    assert alg.value.code == CtapError.ERR.UNSUPPORTED_ALGORITHM
    assert device.call(CTAPHID.CBOR, b"\x09") == bytes([CtapError.ERR.INVALID_COMMAND])
    assert device.call(CTAPHID.CBOR, b"\x02\xa1") == bytes([CtapError.ERR.INVALID_CBOR])
    assert device.call(CTAPHID.CBOR, b"\x02\x01") == bytes([CtapError.ERR.CBOR_UNEXPECTED_TYPE])
    with pytest.raises(CtapError):
        device.call(CTAPHID.PING, b"x")


def test_pin_protocol_one(make_device: MakeDevice, approve: Callable[..., AssertionResult]) -> None:
    device = make_device(pin_protocols=(1,))
    ctap = Ctap2(device)
    assert ctap.info.pin_uv_protocols == [1]
    client_pin = ClientPin(ctap)
    assert isinstance(client_pin.protocol, PinProtocolV1)
    client_pin.set_pin("2468")
    assert Ctap2(device).info.options["clientPin"] is True
    cred = enroll(device, name="v1", user_name="alice", pin="2468")
    result = approve([device], [cred], require_uv=True, pin="2468", hmac_salt=SALT)
    assert result.hmac_output is not None and len(result.hmac_output) == 32


def test_set_pin_only_once(
    device: SoftCtap2Device, set_pin: Callable[[SoftCtap2Device, str], None]
) -> None:
    set_pin(device, "1357")
    with pytest.raises(CtapError) as info:
        set_pin(device, "2468")
    assert info.value.code == CtapError.ERR.NOT_ALLOWED
    state = json.loads(device.path.read_text())
    assert "1357" not in device.path.read_text() and state["retries"] == 8
