"""Seal/open of a 200-byte record per second: vaultd's token adapter vs raw PKCS#11 vs software.

One SoftHSM2 token, one process.  Each variant does an AES-256-GCM encrypt and a decrypt (with
AAD) of a 200-byte record; the variants run in interleaved batches and the median batch rate
is reported.  Every decrypt is checked against the plaintext.

- ``envelope`` : ``vaultd.core.envelope.seal``/``unseal`` through ``TokenKey`` (IV from the
  token's C_GenerateRandom, header, AAD), the path a stored record takes;
- ``adapter``  : ``TokenKey.encrypt``/``decrypt`` with a software IV;
- ``raw``      : python-pkcs11 ``encrypt``/``decrypt`` on a second session of the same token;
- ``software`` : ``cryptography``'s ``AESGCM`` with a key in memory (the floor).

    python bench/hsm_ops.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import pkcs11
from _common import interleaved_rates, median, parse_quick, table
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import GCMParams, KeyType, Mechanism

from vaultd.core import envelope
from vaultd.keys.pkcs11 import TokenKey
from vaultd.testing.softhsm import create_token

KEY_LABEL = "vaultd-kek"
RECORD = os.urandom(200)
AAD = b"vaultd bench record"


class _GcmKey(Protocol):
    """The AES key as used here (python-pkcs11 mixes these in for an ENCRYPT/DECRYPT key)."""

    def encrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def decrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...


def _check(opened: bytes) -> None:
    if opened != RECORD:
        raise RuntimeError("a decrypt did not return the plaintext")


def _variants(vault: TokenKey, raw_key: _GcmKey) -> dict[str, Callable[[], None]]:
    soft = AESGCM(AESGCM.generate_key(256))

    def sealed_envelope() -> None:
        blob = envelope.seal(vault, RECORD, kind="bench", name="r", generation=1)
        _check(envelope.unseal(vault, blob, kind="bench", name="r", generation=1))

    def adapter() -> None:
        iv = os.urandom(12)
        _check(vault.decrypt(iv, vault.encrypt(iv, RECORD, AAD), AAD))

    def raw() -> None:
        params = GCMParams(os.urandom(12), AAD, 128)
        ct = raw_key.encrypt(RECORD, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        _check(raw_key.decrypt(ct, mechanism=Mechanism.AES_GCM, mechanism_param=params))

    def software() -> None:
        iv = os.urandom(12)
        _check(soft.decrypt(iv, soft.encrypt(iv, RECORD, AAD), AAD))

    return {"envelope": sealed_envelope, "adapter": adapter, "raw": raw, "software": software}


def main() -> int:
    quick = parse_quick(__doc__ or "")
    rounds, batch = (2, 20) if quick else (15, 1000)
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-hsm-") as tmp:
        token = create_token(Path(tmp), label="bench")
        os.environ["SOFTHSM2_CONF"] = str(token.conf_path)  # read at C_Initialize, below
        vault = TokenKey.open(
            token.module_path, token.label, KEY_LABEL, token.user_pin, create_key=True
        )
        lib = pkcs11.lib(token.module_path)
        raw_session = lib.get_token(token_label=token.label).open()
        try:
            raw_key = cast(_GcmKey, raw_session.get_key(label=KEY_LABEL, key_type=KeyType.AES))
            variants = _variants(vault, raw_key)
            rates = interleaved_rates(variants, rounds, batch)
        finally:
            raw_session.close()
            vault.close()
    med = {name: median(r) for name, r in rates.items()}
    rows = [
        (
            name,
            f"{med[name]:,.0f}",
            f"{1e6 / med[name]:.1f}",
            f"{med[name] / med['raw']:.2f}x",
            f"{med['software'] / med[name]:.0f}x slower" if name != "software" else "1x",
        )
        for name in variants
    ]
    print(f"seal+open of a 200-byte record: {rounds} interleaved rounds of {batch}\n")
    print(table(["variant", "ops/s", "us/op", "vs raw pkcs11", "vs software"], rows))
    print(
        f"\nsummary: TokenKey adapter at {med['adapter'] / med['raw']:.0%} of raw "
        f"python-pkcs11, full envelope at {med['envelope'] / med['raw']:.0%}; SoftHSM2 is "
        f"{med['software'] / med['raw']:.0f}x slower than software AES-GCM"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
