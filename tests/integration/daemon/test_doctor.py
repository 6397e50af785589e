"""`vaultd doctor` against a real SoftHSM2 installation: the key's attributes and its
encryption count (docs/threat-model.md T8), with a warning once 90% of the per-key limit is used."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from vaultd.keys.pkcs11 import ENCRYPTION_BLOCK, ENCRYPTION_LIMIT
from vaultd.testing.harness import Installation

MakeVault = Callable[..., Installation]

# Replaces the key's counter object in the token with one holding argv[1]; the PIN comes on
# stdin (never argv).
PLANT = """
import sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
from vaultd.keys.pkcs11 import ENCRYPTIONS_LABEL
value, pin = int(sys.argv[1]), sys.stdin.read()
lib = pkcs11.lib(sys.argv[2])
with lib.get_token(token_label=sys.argv[3]).open(rw=True, user_pin=pin) as session:
    counters = [
        o for o in session.get_objects({Attribute.CLASS: ObjectClass.DATA})
        if o[Attribute.LABEL].startswith(ENCRYPTIONS_LABEL + ":")
    ]
    assert len(counters) == 1, counters
    label = counters[0][Attribute.LABEL]
    counters[0].destroy()
    session.create_object({
        Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: True,
        Attribute.LABEL: label, Attribute.VALUE: value.to_bytes(8, "big"),
    })
"""


def test_doctor_shows_the_encryption_count_and_warns_near_the_limit(
    make_vault: MakeVault,
) -> None:
    inst = make_vault(start=False)  # `vaultd init` and `vaultd add` reserved a block each
    out = inst.vaultd("doctor").stdout.decode()
    assert "ok    token, key and store" in out, out
    assert f"{2 * ENCRYPTION_BLOCK:,} of {ENCRYPTION_LIMIT:,} encryptions" in out, out
    assert "WARN  the token key" not in out

    near = ENCRYPTION_LIMIT * 95 // 100
    subprocess.run(
        [sys.executable, "-c", PLANT, str(near), inst.token.module_path, inst.token.label],
        input=inst.token.user_pin.encode(),
        env=inst.env,
        check=True,
        timeout=60,
    )
    out = inst.vaultd("doctor").stdout.decode()
    assert f"{near:,} of {ENCRYPTION_LIMIT:,} encryptions" in out, out
    assert "WARN  the token key has made" in out and "replace the key soon" in out, out
