"""The PIV applet emulator alone: yubikit over an in-process connection, raw APDUs for framing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from yubikit.core import TRANSPORT
from yubikit.core.smartcard import ApduError, SmartCardConnection
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    OBJECT_ID,
    SLOT,
    TOUCH_POLICY,
    InvalidPinError,
    PivSession,
)

from vaultd.testing.piv_card import ALG_AES192, PivCard, PivState


class _Direct(SmartCardConnection):
    """A yubikit connection straight into the emulator (USB, so extended APDUs)."""

    def __init__(self, card: PivCard) -> None:
        self.card = card

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def close(self) -> None:
        pass

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        reply = self.card.transmit(apdu)
        return reply[:-2], int.from_bytes(reply[-2:], "big")


def test_state_file_is_private_and_survives_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = PivCard(path)
    piv = PivSession(_Direct(card))
    piv.authenticate(DEFAULT_MANAGEMENT_KEY)
    public = piv.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = PivSession(_Direct(PivCard(path)))
    assert again.get_slot_metadata(SLOT.RETIRED1).public_key == public


def test_aes192_management_key_of_a_5_7_card(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    PivState(serial=1, version=(5, 7, 2), mgmt_algorithm=ALG_AES192).save(path)
    piv = PivSession(_Direct(PivCard(path)))
    assert piv.management_key_type == MANAGEMENT_KEY_TYPE.AES192
    piv.authenticate(DEFAULT_MANAGEMENT_KEY)
    new_key = os.urandom(24)
    piv.set_management_key(MANAGEMENT_KEY_TYPE.AES192, new_key)
    with pytest.raises(ApduError):
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
    piv.authenticate(new_key)
    assert not piv.get_management_key_metadata().default_value


def test_pin_blocks_and_the_puk_unblocks_it(tmp_path: Path) -> None:
    piv = PivSession(_Direct(PivCard(tmp_path / "card.json")))
    for left in (2, 1, 0):
        with pytest.raises(InvalidPinError) as wrong:
            piv.verify_pin("000000")
        assert wrong.value.attempts_remaining == left
    with pytest.raises(InvalidPinError):
        piv.verify_pin("123456")  # blocked: the right PIN no longer works
    piv.unblock_pin("12345678", "654321")
    piv.verify_pin("654321")
    piv.change_pin("654321", "11223344")
    piv.verify_pin("11223344")


def test_touch_refused_answers_security_status_not_satisfied(tmp_path: Path) -> None:
    card = PivCard(tmp_path / "card.json", touch=lambda _timeout: False)
    piv = PivSession(_Direct(card))
    piv.authenticate(DEFAULT_MANAGEMENT_KEY)
    piv.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256, touch_policy=TOUCH_POLICY.ALWAYS)
    piv.verify_pin("123456")
    peer = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ApduError) as refused:
        piv.calculate_secret(SLOT.RETIRED1, peer.public_key())
    assert refused.value.sw == 0x6982
    assert card.touches == 0


def test_command_chaining_and_get_response(tmp_path: Path) -> None:
    card = PivCard(tmp_path / "card.json")
    PivSession(_Direct(card)).authenticate(DEFAULT_MANAGEMENT_KEY)
    body = bytes(range(256)) * 3
    obj = bytes.fromhex("5C035FC10D") + b"\x53\x82" + len(body).to_bytes(2, "big") + body
    parts = [obj[i : i + 255] for i in range(0, len(obj), 255)]
    for i, part in enumerate(parts):
        cla = 0x00 if i == len(parts) - 1 else 0x10
        assert card.transmit(bytes([cla, 0xDB, 0x3F, 0xFF, len(part)]) + part) == b"\x90\x00"
    reply = card.transmit(bytes.fromhex("00CB3FFF055C035FC10D00"))
    data = reply[:-2]
    while reply[-2] == 0x61:
        reply = card.transmit(bytes([0x00, 0xC0, 0x00, 0x00, reply[-1]]))
        data += reply[:-2]
    assert reply[-2:] == b"\x90\x00"
    assert data == obj[5:]
    piv = PivSession(_Direct(card))  # extended APDUs: the whole object in one reply
    assert piv.get_object(OBJECT_ID.RETIRED1) == body


def test_select_answers_the_pix_and_unknown_aids_are_not_found(tmp_path: Path) -> None:
    card = PivCard(tmp_path / "card.json")
    reply = card.transmit(bytes.fromhex("00A4040009A00000030800001000"))
    assert reply[-2:] == b"\x90\x00"
    assert bytes.fromhex("4F06000010000100") in reply
    assert card.transmit(bytes.fromhex("00A4040006D27600012401")) == b"\x6a\x82"


@pytest.mark.parametrize("aid", ["A00000030800001000", "D27600012401"])
def test_any_select_logs_the_card_out_as_a_yubikey_does(tmp_path: Path, aid: str) -> None:
    """The PIV applet selected again, or an AID the card lacks (OpenSC probing its drivers):
    the PIN and the management key must be presented anew."""
    card = PivCard(tmp_path / "card.json")
    piv = PivSession(_Direct(card))
    piv.verify_pin("123456")
    piv.authenticate(DEFAULT_MANAGEMENT_KEY)
    assert card.transmit(bytes.fromhex("0020008000")) == b"\x90\x00"  # verified
    card.transmit(bytes.fromhex("00A40400") + bytes([len(aid) // 2]) + bytes.fromhex(aid))
    assert card.transmit(bytes.fromhex("0020008000")) == b"\x63\xc3"  # 3 tries, not verified
    put = bytes.fromhex("00DB3FFF095C035FC10D53020000")
    assert card.transmit(put) == b"\x69\x82"  # the management key is needed again
    assert card.logouts == 1
