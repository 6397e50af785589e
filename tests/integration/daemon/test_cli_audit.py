"""CLI changes to the vault are audited (issue 13): `vaultd add`, `remove`, `fido2 enroll/remove`
and `mfa add-totp/remove` append token-MACed records to the daemon's hash chain, with or without
a running daemon writing to it too, and `vaultd audit verify` still passes (T14).

Real parts: SoftHSM2 token, the software CTAP2 authenticator, real `vaultd` processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from vaultd.testing.harness import MFA_SERIAL, Installation
from vaultd.testing.soft_ctap2 import SoftCtap2Device

from .conftest import SECRET

MakeVault = Callable[..., Installation]
KEY_ID = "AKIAAUDITCLI00000001"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
PAIR = json.dumps({"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET}).encode()


def _records(inst: Installation) -> list[dict[str, object]]:
    (log,) = inst.root.rglob("audit.log")
    return [json.loads(line) for line in log.read_bytes().splitlines()]


def _changes(inst: Installation, device: Path) -> None:
    """Every audited CLI change, once each."""
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("add", "work", "--no-bind-fido2", input=PAIR)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.vaultd("mfa", "add-totp", MFA_SERIAL, input=SEED.encode())
    inst.vaultd("mfa", "remove", MFA_SERIAL)
    inst.vaultd("fido2", "remove", "key1")
    inst.vaultd("remove", "work", "--yes")


CLI_EVENTS = [
    "record_added",
    "fido2_enrolled",
    "totp_seed_added",
    "totp_seed_removed",
    "fido2_removed",
    "record_removed",
]


def _check(inst: Installation) -> list[dict[str, object]]:
    records = _records(inst)
    cli = [r for r in records if isinstance(r.get("by"), dict) and r["by"]["channel"] == "cli"]
    assert [r["event"] for r in cli] == ["record_added", *CLI_EVENTS]  # the fixture's "dev" first
    for record in cli:
        by = record["by"]
        assert isinstance(by, dict) and by["uid"] == os.getuid() and by["pid"] > 0
        assert by["executable"]
    added = cli[1]
    assert (added["name"], added["key"], added["root"]) == ("work", "AKIA************0001", False)
    assert SECRET not in json.dumps(records) and SEED not in json.dumps(records)
    verified = inst.vaultd("audit", "verify")
    assert str(len(records)).encode() in verified.stdout
    return records


def test_cli_changes_are_audited_without_a_daemon(make_vault: MakeVault, tmp_path: Path) -> None:
    device = tmp_path / "key1.json"
    inst = make_vault(start=False, extra={"fido2": {"devices": [f"soft:{device}"]}})
    _changes(inst, device)
    _check(inst)


def test_cli_and_daemon_records_share_one_chain(make_vault: MakeVault, tmp_path: Path) -> None:
    """The daemon appends between CLI records (its cached tail goes stale each time): the
    writers serialise on the log's lock and re-read the tail, so the chain stays whole."""
    device = tmp_path / "key1.json"
    inst = make_vault(extra={"fido2": {"devices": [f"soft:{device}"]}})
    inst.vaultd("lock")
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("add", "work", "--no-bind-fido2", input=PAIR)
    inst.vaultd("lock")
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.vaultd("lock")
    inst.vaultd("mfa", "add-totp", MFA_SERIAL, input=SEED.encode())
    inst.vaultd("mfa", "remove", MFA_SERIAL)
    inst.vaultd("lock")
    inst.vaultd("fido2", "remove", "key1")
    inst.vaultd("remove", "work", "--yes")
    inst.vaultd("lock")
    records = _check(inst)
    assert [r["event"] for r in records].count("lock") == 5
