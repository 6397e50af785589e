"""`vaultd rotate` and `vaultd report` end to end: real daemon, SoftHSM2, moto IAM and STS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending
from vaultd.testing.moto_server import MotoServer
from vaultd.testing.soft_ctap2 import SoftCtap2Device

MakeVault = Callable[..., Installation]
BOUND_KEY_ID = "AKIACANARY0000000002"
BOUND_SECRET = "CanarySecretKey0000000000000000000000002"


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def test_rotate_leaves_exactly_one_working_stored_key_and_reports_it(
    make_vault: MakeVault, moto: MotoServer, tmp_path: Path
) -> None:
    inst = make_vault(start=False, sts_url=moto.url)
    old_id, old_secret = moto.create_user_with_key("alice")
    inst.add_key_pair("alice", old_id, old_secret)
    inst.config["profiles"]["alice"] = {
        "credentials": "alice",
        "mfa_serial": "arn:aws:iam::123456789012:mfa/alice",
    }
    inst.write_config()
    inst.start_daemon()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "rotate", "alice", "--json"],
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    approve_pending(inst, "101010", profile="alice")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["old_key_deleted"] is True
    keys = moto.client("iam").list_access_keys(UserName="alice")["AccessKeyMetadata"]
    assert len(keys) == 1
    new_id = keys[0]["AccessKeyId"]
    assert new_id != old_id
    assert result["new_key_id"] == new_id[:4] + "*" * (len(new_id) - 8) + new_id[-4:]
    listed = json.loads(inst.vaultd("list", "--json").stdout)
    assert [r["key_id"] for r in listed if r["name"] == "alice"] == [result["new_key_id"]]
    assert old_secret.encode() not in out + err
    report = json.loads(inst.vaultd("report", "--json").stdout)
    row = next(r for r in report if r["name"] == "alice")
    assert row["access_key_id"] == result["new_key_id"]
    assert row["last_rotated"] is not None and row["rotation_due"] is False
    csv_text = inst.vaultd("report", "--csv").stdout.decode()
    assert csv_text.splitlines()[0].startswith("name,kind,access_key_id")
    assert inst.vaultd("audit", "verify").returncode == 0


def test_rotate_refuses_a_key_pair_without_a_session_profile(make_vault: MakeVault) -> None:
    inst = make_vault()
    done = inst.vaultd("rotate", "nothing-uses-this", check=False)
    assert done.returncode != 0
    assert b"CONFIG_INVALID" in done.stderr


def _key_pairs(inst: Installation) -> list[dict[str, object]]:
    listed = json.loads(inst.vaultd("list", "--json").stdout)
    return [r for r in listed if r["kind"] == "key_pair"]


def test_rotate_refuses_a_key_pair_bound_to_fido2_and_changes_nothing(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """The software CTAP2 authenticator stands in for a USB key (none exists in CI); FakeSts
    records every AWS request, IAM ones included, since the harness points every endpoint at it.
    """
    device = tmp_path / "key1.json"
    inst = make_vault(start=False, extra={"fido2": {"devices": [f"soft:{device}"]}})
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.add_key_pair("bound", BOUND_KEY_ID, BOUND_SECRET, bind=True)
    inst.config["profiles"]["bound"] = {"credentials": "bound", "mfa_serial": MFA_SERIAL}
    inst.write_config()
    before = _key_pairs(inst)
    inst.start_daemon()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "rotate", "bound", "--json"],
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    approve_pending(inst, "101010", profile="bound")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and out == b""
    assert b"CONFIG_INVALID" in err
    assert b"bound to FIDO2 authenticators" in err
    assert b"vaultd add --replace --bind-fido2" in err
    # Only the MFA session was asked for (with the bound key, opened by a touch): no IAM call.
    assert [(r.action, r.access_key_id) for r in fake_sts.requests] == [
        ("GetSessionToken", BOUND_KEY_ID)
    ]
    inst.stop_daemon()
    assert _key_pairs(inst) == before  # (the FIDO2 record changes: its signCount moved)
    assert b'"rotate' not in (inst.data_dir / "audit.log").read_bytes()
    assert BOUND_SECRET.encode() not in out + err
