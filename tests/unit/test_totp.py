"""AWS MFA seeds: input parsing, the sealed record layout, and SeedCodeSource on a FakeClock.

``load_seed`` here is a dict lookup standing in for the token-sealed store (covered by
tests/integration/fido2/test_mfa_cli.py); codes are checked against pyotp.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pyotp
import pytest

from vaultd.core.otp_ledger import OtpLedger, step_for
from vaultd.core.records import (
    TotpSeed,
    decode_totp_seed,
    encode_totp_seed,
    parse_totp_input,
    seed_record_name,
)
from vaultd.errors import BadRequest, CodeReused, RecordCorrupt
from vaultd.mfa.seed_codes import SeedCodeSource, totp_code
from vaultd.testing.clock import FakeClock

SERIAL = "arn:aws:iam::123456789012:mfa/alice"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 20 bytes


def test_base32_and_uri_inputs_give_the_same_key() -> None:
    expected = base64.b32decode(SECRET)
    inputs = [
        SECRET,
        f"  {SECRET.lower()}\n",
        " ".join(SECRET[i : i + 4] for i in range(0, 32, 4)),
        f"otpauth://totp/AWS:alice?secret={SECRET}&issuer=Amazon",
        f"otpauth://totp/x?secret={SECRET}&algorithm=sha1&digits=6&period=30",
    ]
    for text in inputs:
        seed = parse_totp_input(text, serial=SERIAL)
        assert bytes(seed.key) == expected and seed.serial == SERIAL


@pytest.mark.parametrize(
    "text",
    [
        "",
        "JBSWY3DP",  # too short
        "JBSWY3DPEHPK3PXP1",  # 1 is not base32
        "JBSWY3DPEHPK3PX",  # 15 chars: not a whole number of bytes
        f"otpauth://totp/x?secret={SECRET}&algorithm=SHA512",
        f"otpauth://totp/x?secret={SECRET}&digits=8",
        f"otpauth://totp/x?secret={SECRET}&period=60",
        f"otpauth://totp/x?secret={SECRET}&secret={SECRET}",
        f"otpauth://hotp/x?secret={SECRET}",
        f"https://example.com/?secret={SECRET}",
    ],
)
def test_bad_inputs_are_refused_without_echo(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_totp_input(text, serial=SERIAL)
    assert SECRET not in str(info.value) and (not text or text not in str(info.value))


def test_serial_is_checked_and_names_are_path_safe() -> None:
    for bad in ("short", "arn:aws:iam::1:mfa/a b", "x" * 257, "arn/../../etc/passwd\x00"):
        with pytest.raises(BadRequest):
            seed_record_name(bad)
    name = seed_record_name(SERIAL)
    assert name.startswith("totp-") and len(name) <= 64 and name.replace("-", "").isalnum()
    assert seed_record_name(SERIAL + "2") != name


def test_record_round_trip_and_strict_decoding() -> None:
    name = seed_record_name(SERIAL)
    plaintext = encode_totp_seed(parse_totp_input(SECRET, serial=SERIAL))
    seed = decode_totp_seed(plaintext, name=name)
    assert (seed.serial, bytes(seed.key)) == (SERIAL, base64.b32decode(SECRET))
    good = json.loads(plaintext)
    broken = [
        b"",
        b"[]",
        plaintext + b"x",
        json.dumps(good | {"digits": 8}).encode(),
        json.dumps(good | {"algorithm": "SHA256"}).encode(),
        json.dumps(good | {"extra": 1}).encode(),
        json.dumps(good | {"secret": "!!"}).encode(),
        json.dumps(good | {"serial": SERIAL + "x"}).encode(),  # does not derive the name
    ]
    for bad in broken:
        with pytest.raises(RecordCorrupt):
            decode_totp_seed(bad, name=name)


def test_wipe_zeroes_the_key() -> None:
    seed = parse_totp_input(SECRET, serial=SERIAL)
    seed.wipe()
    assert seed.key == bytearray(20)
    assert SECRET not in repr(seed)


def test_totp_code_matches_pyotp() -> None:
    key = bytearray(base64.b32decode(SECRET))
    reference = pyotp.TOTP(SECRET)
    for step in (0, 1, 59, 1_234_567, 56_666_666):
        assert totp_code(key, step) == reference.at(step * 30)


class Seeds:
    """Seeds by serial; counts loads and checks every loaded key was wiped after use."""

    def __init__(self) -> None:
        self.loaded: list[TotpSeed] = []

    def load(self, serial: str) -> TotpSeed:
        seed = parse_totp_input(SECRET, serial=serial)
        self.loaded.append(seed)
        return seed

    def exists(self, serial: str) -> bool:
        return serial == SERIAL


def test_two_codes_in_one_step_use_the_current_then_the_next_step() -> None:
    clock = FakeClock()
    clock.advance(10)  # 10 s into a step
    ledger, seeds = OtpLedger(), Seeds()
    source = SeedCodeSource(seeds.load, ledger, clock, seed_exists=seeds.exists)
    reference = pyotp.TOTP(SECRET)
    step = step_for(clock.now())

    first, wait1 = source.code_for(SERIAL)
    assert (first, wait1) == (reference.at(step * 30), 0.0)
    clock.advance(5)
    second, wait2 = source.code_for(SERIAL)
    assert second == reference.at((step + 1) * 30) and wait2 == pytest.approx(15.0)
    assert ledger.is_used(SERIAL, step) and ledger.is_used(SERIAL, step + 1)
    with pytest.raises(CodeReused):  # both spent: never the same step twice
        source.code_for(SERIAL)
    assert len(seeds.loaded) == 2 and all(s.key == bytearray(20) for s in seeds.loaded)

    clock.advance(15)  # step + 1 has started: the next code is for step + 2
    third, wait3 = source.code_for(SERIAL)
    assert third == reference.at((step + 2) * 30) and wait3 == pytest.approx(30.0)
    assert source.has_seed(SERIAL) and not source.has_seed(SERIAL + "x")


def test_a_typed_copy_of_a_generated_code_is_refused() -> None:
    clock = FakeClock(FakeClock().now() + timedelta(seconds=3))
    ledger, seeds = OtpLedger(), Seeds()
    code, _ = SeedCodeSource(seeds.load, ledger, clock, seed_exists=seeds.exists).code_for(SERIAL)
    with pytest.raises(CodeReused):
        ledger.check_and_mark_typed(SERIAL, code, step_for(clock.now()) + 1)
