"""A record open with 1 and 2 key-custody recipients, side by side (issue 14 item 5).

Each variant opens the same 200-byte record through ``vaultd.core.envelope.unseal``, sealed
once beforehand, in interleaved batches; the median batch rate is reported, with the time of
each open relative to the single-key open of the same token scheme.

- ``<scheme>, 1 key``           : the token key alone (envelope algorithm 0x01 or 0x02);
- ``<scheme>, set of 1``         : a recipient set holding only the token (algorithm 0x03);
- ``<scheme>, set of 2``         : the token and a recovery key; the token opens;
- ``<scheme>, set of 2, recovery``: the same record opened with the typed recovery key (host).

    python bench/recipients_open.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import interleaved_rates, median, parse_quick, table

from vaultd.core import envelope
from vaultd.core.ports import KeyWrapper, SealingKey
from vaultd.keys import recovery
from vaultd.keys.ecdh import EcdhTokenKey
from vaultd.keys.pkcs11 import TokenKey
from vaultd.keys.recipients import RecipientSet, TokenRecipient
from vaultd.testing.softhsm import create_token

RECORD = os.urandom(200)


def _opener(sealer: KeyWrapper, opener: KeyWrapper) -> Callable[[], None]:
    blob = envelope.seal(sealer, RECORD, kind="bench", name="r", generation=1)

    def open_once() -> None:
        if envelope.unseal(opener, blob, kind="bench", name="r", generation=1) != RECORD:
            raise RuntimeError("an open did not return the plaintext")

    return open_once


def _variants(scheme: str, key: SealingKey) -> dict[str, Callable[[], None]]:
    token, rec = TokenRecipient(key), recovery.generate()
    pair = RecipientSet([token, rec], token)
    return {
        f"{scheme}, 1 key": _opener(key, key),
        f"{scheme}, set of 1": _opener(*[RecipientSet([token], token)] * 2),
        f"{scheme}, set of 2": _opener(pair, pair),
        f"{scheme}, set of 2, recovery": _opener(pair, RecipientSet([token, rec], rec)),
    }


def main() -> int:
    quick = parse_quick(__doc__ or "")
    rounds, batch = (2, 20) if quick else (15, 300)
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-recipients-") as tmp:
        first = create_token(Path(tmp), label="bench-aead")
        second = create_token(Path(tmp), label="bench-ecdh")  # one login per token
        os.environ["SOFTHSM2_CONF"] = str(first.conf_path)  # read at C_Initialize, below
        module = first.module_path
        aead = TokenKey.open(module, first.label, "kek", first.user_pin, create_key=True)
        ecdh = EcdhTokenKey.open(module, second.label, "ecdh", second.user_pin, create_key=True)
        try:
            variants = {**_variants("token AEAD", aead), **_variants("token ECDH", ecdh)}
            rates = interleaved_rates(variants, rounds, batch)
        finally:
            aead.close()
            ecdh.close()
    med = {name: median(r) for name, r in rates.items()}
    rows = []
    for name in variants:
        base = med[f"{name.split(',')[0]}, 1 key"]
        rows.append(
            (name, f"{med[name]:,.0f}", f"{1e3 / med[name]:.3f}", f"{base / med[name]:.2f}x")
        )
    print(f"a 200-byte record, SoftHSM2: {rounds} interleaved rounds of {batch}\n")
    print(table(["variant", "ops/s", "ms/op", "time vs 1 key"], rows))
    for scheme in ("token AEAD", "token ECDH"):
        one, two = med[f"{scheme}, 1 key"], med[f"{scheme}, set of 2"]
        print(
            f"summary: {scheme}: an open with 2 recipients takes {one / two:.2f}x the time of "
            f"one with 1 key ({1e3 / two:.3f} ms vs {1e3 / one:.3f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
