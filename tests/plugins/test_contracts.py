"""The contract suites themselves: a code source passes, and broken plugins fail them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pyotp

from vaultd.plugin.api import CodeSource, MfaError
from vaultd.testing.contracts import CodeSourceContract


class SeedCodeSource:
    """A fake code source (no YubiKey here): TOTP from one fixed in-memory seed."""

    def __init__(self, serial: str) -> None:
        self._serial = serial
        self._totp = pyotp.TOTP(pyotp.random_base32())

    def is_available(self) -> bool:
        return True

    def configured(
        self, *, names: Mapping[str, str], on_touch: Callable[[str], None]
    ) -> SeedCodeSource:
        return self

    def has_seed(self, serial: str) -> bool:
        return serial == self._serial

    def code_at(self, serial: str, timestamp: int) -> str:
        if serial != self._serial:
            raise MfaError(f"no seed for MFA device {serial}; enrol it first")
        return self._totp.at(timestamp)


class TestSeedCodeSourceContract(CodeSourceContract):
    def make_plugin(self) -> CodeSource:
        return SeedCodeSource(self.serial)


BROKEN = '''
import os
from vaultd.plugin.api import KeyStoreConfig, NotifyEvent
from vaultd.testing.contracts import CodeSourceContract, KeyStoreContract, NotifierContract


class Forgetful:
    """Accepts events and delivers none."""

    def is_available(self):
        return True

    def notify(self, event):
        pass


class TestForgetful(NotifierContract):
    def make_plugin(self):
        return Forgetful()

    def delivered(self, plugin, count):
        return []


class Unchecked:
    """XOR "encryption": no tag, no AAD, a fresh key per instance."""

    is_hardware = False

    def __init__(self):
        self.key = os.urandom(1)

    def is_available(self):
        return True

    def open(self, config):
        return self

    key_id = "same"

    def random(self, n):
        return b"\\0" * n

    def encrypt(self, iv, plaintext, aad):
        return bytes(b ^ self.key[0] for b in plaintext)

    def decrypt(self, iv, ciphertext, aad):
        return bytes(b ^ self.key[0] for b in ciphertext)


class TestUnchecked(KeyStoreContract):
    def make_plugin(self):
        return Unchecked()


class Sloppy:
    """Five-digit codes, and a seed for every serial."""

    def is_available(self):
        return True

    def configured(self, *, names, on_touch):
        return self

    def has_seed(self, serial):
        return True

    def code_at(self, serial, timestamp):
        return f"{timestamp // 30 % 100000:05d}"


class TestSloppy(CodeSourceContract):
    def make_plugin(self):
        return Sloppy()
'''


def test_broken_plugins_fail_every_contract_check_that_applies(tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text(BROKEN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rf",
            "--import-mode=importlib",
            str(tmp_path / "test_broken.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed = {
        line.split("::", 1)[1].split(" ")[0]
        for line in done.stdout.splitlines()
        if line.startswith("FAILED")
    }
    assert failed == {
        "TestForgetful::test_every_severity_is_delivered",
        "TestForgetful::test_hostile_text_is_delivered_verbatim_and_not_raised_on",
        "TestForgetful::test_event_and_profile_reach_the_reader",
        "TestUnchecked::test_round_trip_with_a_16_byte_tag",
        "TestUnchecked::test_any_tamper_raises_record_corrupt[iv]",
        "TestUnchecked::test_any_tamper_raises_record_corrupt[ciphertext]",
        "TestUnchecked::test_any_tamper_raises_record_corrupt[tag]",
        "TestUnchecked::test_any_tamper_raises_record_corrupt[aad]",
        "TestUnchecked::test_key_persists_across_opens_and_stores",
        "TestUnchecked::test_labels_name_different_keys",
        "TestUnchecked::test_random_gives_fresh_bytes_of_the_asked_length",
        "TestUnchecked::test_opened_key_carries_a_vault",
        "TestUnchecked::test_audit_mac_is_keyed_persistent_and_per_label",
        "TestUnchecked::test_generation_starts_at_zero_and_persists",
        "TestSloppy::test_code_is_six_digits",
        "TestSloppy::test_unknown_serial_raises_an_mfa_error",
    }, done.stdout
