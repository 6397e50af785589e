"""`vaultd mfa add-totp|list|remove` as subprocesses on a real SoftHSM2 store: seeds come from
stdin only, bad ones are refused with one line and nothing stored, and no seed byte reaches
the data dir in the clear."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vaultd.testing.harness import Installation

pytestmark = pytest.mark.hsm

SERIAL = "arn:aws:iam::123456789012:mfa/alice"
OTHER = "arn:aws:iam::123456789012:mfa/bob"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPCANARYSEEDQ2"  # 44 chars, 27 bytes


def _files_contain(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_add_list_remove(inst: Installation, cli: Any, cli_json: Callable[..., Any]) -> None:
    spaced = " ".join(SEED[i : i + 4] for i in range(0, len(SEED), 4)).lower()
    added = cli("mfa", "add-totp", SERIAL, input=f"{spaced}\n".encode())
    assert added.returncode == 0, added.stderr
    uri = f"otpauth://totp/AWS:bob?secret={SEED}&issuer=Amazon&algorithm=SHA1&digits=6&period=30"
    assert cli("mfa", "add-totp", OTHER, input=uri.encode()).returncode == 0

    assert [r["serial"] for r in cli_json("mfa", "list")] == [SERIAL, OTHER]
    dup = cli("mfa", "add-totp", SERIAL, input=SEED.encode())
    assert dup.returncode == 1 and "RECORD_EXISTS" in dup.stderr

    raw = base64.b32decode(SEED + "=" * (-len(SEED) % 8))
    for needle in (SEED.encode(), SEED.rstrip("=").encode(), raw, b"CANARYSEED"):
        assert _files_contain(inst.root / "data", needle) == []
    assert SEED not in added.stdout + added.stderr

    assert cli("mfa", "remove", SERIAL).returncode == 0
    assert [r["serial"] for r in cli_json("mfa", "list")] == [OTHER]
    gone = cli("mfa", "remove", SERIAL)
    assert gone.returncode == 1 and "RECORD_NOT_FOUND" in gone.stderr


BAD_SEEDS = [
    ("not base32 at all!", "not base32"),
    ("JBSWY3DP", "bytes"),  # 5 bytes: too short for an AWS seed
    (f"otpauth://totp/x?secret={SEED}&algorithm=SHA256", "algorithm"),
    (f"otpauth://totp/x?secret={SEED}&digits=8", "digits"),
    (f"otpauth://totp/x?secret={SEED}&period=60", "period"),
    (f"otpauth://hotp/x?secret={SEED}&counter=1", "totp"),
    ("otpauth://totp/x?issuer=Amazon", "no secret"),
]


def test_bad_seeds_are_refused_with_one_line(cli: Any, cli_json: Callable[..., Any]) -> None:
    for text, reason in BAD_SEEDS:
        proc = cli("mfa", "add-totp", SERIAL, input=text.encode())
        assert proc.returncode != 0 and proc.stdout == "", text
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "BAD_REQUEST" in lines[0] and reason in lines[0], text
        assert SEED not in proc.stderr and text not in proc.stderr
    assert cli_json("mfa", "list") == []


def test_bad_serial_is_refused(cli: Any) -> None:
    proc = cli("mfa", "add-totp", "short", input=SEED.encode())
    assert proc.returncode != 0 and "serial" in proc.stderr
