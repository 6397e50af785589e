"""The emulated YubiKey behind a private pcscd, driven by the vendors' unchanged modules.

Each test module gets a fresh card and its own pcscd (started once per module). Every stack of
the run shares one directory, because libpcsclite reads its socket path once per process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smartcard.System import readers
from ykman.pcsc import ScardSmartCardConnection
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    OBJECT_ID,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    PivSession,
)

from vaultd.testing.pcsc import PivStack, find_opensc_pkcs11, find_ykcs11, missing_parts, piv_stack
from vaultd.testing.piv_card import DEFAULT_PIN
from vaultd.testing.softhsm import SoftHsmToken

PIN = DEFAULT_PIN
SO_PIN = DEFAULT_MANAGEMENT_KEY.hex()  # ykcs11's SO PIN is the management key in hex
VAULT_SLOT = SLOT.RETIRED1  # ykcs11 CKA_ID 5, "Private key for Retired Key 1"
TOUCH_SLOT = SLOT.RETIRED2  # ykcs11 CKA_ID 6, touch policy "always"
VAULT_KEY_ID = b"\x05"
TOUCH_KEY_ID = b"\x06"


def _skip_reason() -> str | None:
    missing = missing_parts()
    if find_ykcs11() is None:
        missing.append("ykcs11")
    if find_opensc_pkcs11() is None:
        missing.append("opensc (opensc-pkcs11.so)")
    if not missing:
        return None
    hint = "./dev installs them as root" if os.geteuid() != 0 else "apt-get install them"
    return f"PIV stack needs {', '.join(missing)} ({hint})"


@pytest.fixture(scope="session")
def pcsc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one pcscd directory of this test run (see the module docstring)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("VAULTD_TEST_PCSC_DIR")  # tests/conftest.py: the process-wide one
    return Path(shared) if shared else tmp_path_factory.mktemp("pcsc")


@pytest.fixture(scope="module")
def stack(pcsc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PivStack]:
    """pcscd with a fresh emulated YubiKey 5.4.3 in its reader."""
    state = tmp_path_factory.mktemp("card") / "card.json"
    with piv_stack(pcsc_dir, state, touch_timeout=0.3) as running:
        for module in (running.ykcs11, running.opensc):
            if module is not None:
                pkcs11.lib(str(module)).reinitialize()  # drop a context on an earlier pcscd
        yield running


@contextmanager
def piv_session(stack: PivStack) -> Iterator[PivSession]:
    """yubikit's PivSession over pyscard to the emulated reader."""
    reader = next(r for r in readers() if str(r) == stack.reader_name)
    connection = reader.createConnection()
    connection.connect()
    try:
        yield PivSession(ScardSmartCardConnection(connection))
    finally:
        connection.disconnect()
        connection.release()  # its PC/SC context; left to __del__ it fails once pcscd is gone


def ykcs11_label(stack: PivStack) -> str:
    """The card's token label in Yubico's ykcs11."""
    return f"YubiKey PIV #{stack.card.state().serial}"


def card_token(stack: PivStack, root: Path, *, opensc: bool = False) -> SoftHsmToken:
    """The card as the harness's token: a module path and token label, the card PIN and SO PIN
    (its ``conf_path`` under ``root`` is unused). The module is reinitialised, so that it sees
    keys made since it last listed the card's objects."""
    module = stack.opensc if opensc else stack.ykcs11
    assert module is not None
    lib = pkcs11.lib(str(module))
    lib.reinitialize()  # both modules read the card's objects once, at C_Initialize
    (label,) = [t.label for t in lib.get_tokens()]
    return SoftHsmToken(root / "unused.conf", str(module), label, PIN, SO_PIN)


def without_yubikit(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` with yubikit hidden by a package that fails to import (no other way to uninstall
    it here)."""
    (tmp_path / "ykman").mkdir()
    (tmp_path / "ykman" / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    return {**env, "PYTHONPATH": str(tmp_path)}


def _certificate(public: ec.EllipticCurvePublicKey, name: str) -> x509.Certificate:
    """A certificate for a card key, signed by a throwaway key (nobody checks the chain)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


@pytest.fixture(scope="module")
def card_keys(stack: PivStack) -> dict[SLOT, ec.EllipticCurvePublicKey]:
    """P-256 keys made with yubikit: slot 82 touch cached, slot 83 touch always.

    Each gets a certificate, and the Key History object counts them, because OpenSC lists a
    retired slot only when that object says it holds a key with an on-card certificate.
    """
    keys: dict[SLOT, ec.EllipticCurvePublicKey] = {}
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        for slot, touch in ((VAULT_SLOT, TOUCH_POLICY.CACHED), (TOUCH_SLOT, TOUCH_POLICY.ALWAYS)):
            public = piv.generate_key(slot, KEY_TYPE.ECCP256, PIN_POLICY.ONCE, touch)
            assert isinstance(public, ec.EllipticCurvePublicKey)
            piv.put_certificate(slot, _certificate(public, f"vaultd {slot:02x}"))
            keys[slot] = public
        piv.put_object(OBJECT_ID.KEY_HISTORY, bytes.fromhex("C10102C20100FE00"))
    return keys
