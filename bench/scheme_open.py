"""A record open per sealing scheme, on SoftHSM2 and on the emulated YubiKey (issue 14).

Each variant opens the same kind of 200-byte record through ``vaultd.core.envelope.unseal``
(parse, AAD, key checks) with the record sealed once beforehand; the variants run in
interleaved batches and the median batch rate is reported, with ratios to token AEAD.

- ``token AEAD`` : ``TokenKey``: AES-256-GCM decrypt inside the token;
- ``token ECDH`` : ``EcdhTokenKey``: one C_DeriveKey(ECDH1_DERIVE, CKD_NULL) in the token, the
  secret read and its session object destroyed, HKDF-SHA256 and AES-256-GCM on the host;
- ``ECDH seal``  : sealing under token ECDH (host only: ephemeral key pair, ECDH, HKDF, GCM);
- ``RSA-OAEP seal`` : sealing under token RSA-OAEP (host only: a data key, RSA-2048 OAEP wrap,
  GCM). SoftHSM2 2.6 cannot open such a record (its RSA-OAEP takes SHA-1 only), so there is
  no SoftHSM2 row for a token RSA-OAEP open;
- ``RSA-OAEP ykcs11`` / ``RSA-OAEP OpenSC`` : token RSA-OAEP on the emulated card (slot 83,
  audit key 9d): one C_Decrypt(CKM_RSA_PKCS_OAEP, SHA-256), the card doing raw RSA-2048 and the
  module the OAEP decoding, then AES-256-GCM on the host;
- ``ECDH ykcs11`` / ``ECDH OpenSC`` : token ECDH on the emulated YubiKey (slot 82, touch never)
  behind a private pcscd, through Yubico's ykcs11 and OpenSC's PIV driver, one module at a
  time (not interleaved: each module's SELECT would reset the other's PIN state).  The card is
  a Python emulator over vpcd, so these say what the modules and PC/SC cost, not a real card.

The SoftHSM2 variants run in interleaved batches; the card variants in their own rounds.

    python bench/scheme_open.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pkcs11
from _common import interleaved_rates, median, parse_quick, rate, table

from vaultd.core import envelope
from vaultd.core.ports import KeyWrapper
from vaultd.keys.ecdh import EcdhTokenKey
from vaultd.keys.pkcs11 import TokenKey
from vaultd.keys.rsa_oaep import RsaTokenKey, _generate_rsa
from vaultd.testing.pcsc import find_opensc_pkcs11, find_ykcs11, missing_parts, piv_stack
from vaultd.testing.piv_card import DEFAULT_PIN
from vaultd.testing.softhsm import create_token

RECORD = os.urandom(200)
BINDING: dict[str, object] = {"kind": "bench", "name": "r", "generation": 1}


def _opener(key: KeyWrapper) -> Callable[[], None]:
    blob = envelope.seal(key, RECORD, kind="bench", name="r", generation=1)

    def open_once() -> None:
        if envelope.unseal(key, blob, kind="bench", name="r", generation=1) != RECORD:
            raise RuntimeError("an open did not return the plaintext")

    return open_once


def _sealer(key: KeyWrapper) -> Callable[[], None]:
    def seal_once() -> None:
        envelope.seal(key, RECORD, kind="bench", name="r", generation=1)

    return seal_once


_CARD_SCHEMES: Final = (
    ("ECDH", EcdhTokenKey, ("82", "9a")),
    ("RSA-OAEP", RsaTokenKey, ("83", "9d")),
)
"""Each scheme's key class and its (vault, audit) PIV slots on the one emulated card."""


def _card_rates(tmp: Path, rounds: int, batch: int) -> dict[str, list[float]]:
    """Median-ready rates of a token ECDH and a token RSA-OAEP open on the emulated card, per
    module."""
    if missing_parts() or find_ykcs11() is None or find_opensc_pkcs11() is None:
        print("(no PIV stack here: pcscd, vsmartcard-vpcd, ykcs11, opensc; card rows skipped)")
        return {}
    rates: dict[str, list[float]] = {}
    with piv_stack(tmp / "pcsc", tmp / "card.json") as stack:
        ykcs11 = str(stack.ykcs11)
        label = f"YubiKey PIV #{stack.card.state().serial}"
        for _, key_class, slots in _CARD_SCHEMES:
            # init's path: yubikit (else ykcs11) generates the slots and writes the Key History
            made = key_class.open(ykcs11, label, "-", DEFAULT_PIN, create_key=True, piv_slots=slots)
            made.close()
        for scheme, key_class, slots in _CARD_SCHEMES:
            for module_name, module in (("ykcs11", ykcs11), ("OpenSC", str(stack.opensc))):
                lib = pkcs11.lib(module)
                lib.reinitialize()
                (token_label,) = [t.label for t in lib.get_tokens()]
                key = key_class.open(module, token_label, "-", DEFAULT_PIN, piv_slots=slots)
                try:
                    op = _opener(key)
                    rate(op, 2)  # warm up
                    rates[f"{scheme} {module_name}"] = [rate(op, batch) for _ in range(rounds)]
                finally:
                    key.close()
    return rates


def _softhsm_rsa(module: str, token_label: str, pin: str) -> RsaTokenKey:
    """An RSA-OAEP key on SoftHSM2, made as `vaultd init` makes it but without its trial open:
    SoftHSM2 2.6's RSA-OAEP takes SHA-1 only, so only sealing (host only) is measured there."""
    with pkcs11.lib(module).get_token(token_label=token_label).open(rw=True, user_pin=pin) as s:
        _generate_rsa(s, "rsa", "decrypt")
        _generate_rsa(s, "rsa-audit", "sign")
    return RsaTokenKey.open(module, token_label, "rsa", pin)


def main() -> int:
    quick = parse_quick(__doc__ or "")
    rounds, batch = (2, 20) if quick else (15, 300)
    card_rounds, card_batch = (2, 5) if quick else (5, 40)
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-schemes-") as tmp:
        token = create_token(Path(tmp), label="bench-aead")
        second = create_token(Path(tmp), label="bench-ecdh")  # one login per token
        third = create_token(Path(tmp), label="bench-rsa")
        os.environ["SOFTHSM2_CONF"] = str(token.conf_path)  # read at C_Initialize, below
        module = token.module_path
        aead = TokenKey.open(module, token.label, "kek", token.user_pin, create_key=True)
        ecdh = EcdhTokenKey.open(module, second.label, "ecdh", second.user_pin, create_key=True)
        rsa = _softhsm_rsa(module, third.label, third.user_pin)
        try:
            variants = {
                "token AEAD": _opener(aead),
                "token ECDH": _opener(ecdh),
                "ECDH seal": _sealer(ecdh),
                "RSA-OAEP seal": _sealer(rsa),
            }
            rates = interleaved_rates(variants, rounds, batch)
        finally:
            aead.close()
            ecdh.close()
            rsa.close()
        rates.update(_card_rates(Path(tmp), card_rounds, card_batch))
    med = {name: median(r) for name, r in rates.items()}
    base = med["token AEAD"]
    rows = [
        (name, f"{med[name]:,.0f}", f"{1e3 / med[name]:.3f}", f"{base / med[name]:.1f}x")
        for name in med
    ]
    print(
        f"a 200-byte record, SoftHSM2: {rounds} interleaved rounds of {batch}; emulated card: "
        f"{card_rounds} rounds of {card_batch} per module\n"
    )
    print(table(["variant", "ops/s", "ms/op", "time vs token AEAD open"], rows))
    rsa_opens = (
        f"; a token RSA-OAEP open on the emulated card: {1e3 / med['RSA-OAEP ykcs11']:.2f} ms "
        f"through ykcs11, {1e3 / med['RSA-OAEP OpenSC']:.2f} ms through OpenSC"
        if "RSA-OAEP ykcs11" in med
        else ""
    )
    print(
        f"\nsummary: a token ECDH open takes {base / med['token ECDH']:.1f}x the time of a token "
        f"AEAD open ({1e3 / med['token ECDH']:.2f} ms vs {1e3 / base:.2f} ms){rsa_opens}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
