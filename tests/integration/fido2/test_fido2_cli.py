"""`vaultd fido2 enroll|list|remove` as subprocesses, on a real SoftHSM2 store with two
software authenticators configured (settings ``fido2.devices = ["soft:...", "soft:..."]``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.testing.soft_ctap2 import SoftCtap2Device

pytestmark = pytest.mark.hsm


def test_enroll_list_remove(cli: Any, cli_json: Callable[..., Any]) -> None:
    first = cli("fido2", "enroll", "--name", "desk")
    assert first.returncode == 0, first.stderr
    assert "enrolled FIDO2 authenticator 'desk'" in first.stdout
    assert "only enrolled authenticator" in first.stdout  # the backup-key reminder
    assert "Touch your authenticator" in first.stderr

    dup = cli("fido2", "enroll", "--name", "desk")
    assert dup.returncode == 1 and "RECORD_EXISTS" in dup.stderr

    second = cli("fido2", "enroll", "--name", "backup")  # key 1 is taken: goes to key 2
    assert second.returncode == 0, second.stderr
    assert "only enrolled" not in second.stdout

    third = cli("fido2", "enroll", "--name", "third")
    assert third.returncode != 0 and "already enrolled" in third.stderr

    rows = cli_json("fido2", "list")
    assert [r["name"] for r in rows] == ["backup", "desk"]
    for row in rows:
        assert row["last_used"] is None and row["suspect"] is False and row["hmac_secret"]
        assert row["created"].endswith("Z") and row["sign_count"] >= 0
    text = cli("fido2", "list").stdout
    assert "desk" in text and "backup" in text and "signCount" in text

    removed = cli("fido2", "remove", "desk")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert [r["name"] for r in cli_json("fido2", "list")] == ["backup"]
    again = cli("fido2", "remove", "desk")
    assert again.returncode == 1 and "RECORD_NOT_FOUND" in again.stderr


def test_enroll_refuses_bad_name_and_pin_without_terminal(
    cli: Any, cli_json: Callable[..., Any], key: Callable[[int], SoftCtap2Device]
) -> None:
    bad = cli("fido2", "enroll", "--name", "../x")
    assert bad.returncode != 0 and "BAD_REQUEST" in bad.stderr
    for n in (1, 2):
        ClientPin(Ctap2(key(n))).set_pin("4321")
    # The PIN is asked only on the terminal; the test's subprocess has none.
    pinned = cli("fido2", "enroll", "--name", "desk", input=b"4321\n")
    assert pinned.returncode != 0 and "FIDO2_PIN_REQUIRED" in pinned.stderr
    assert cli_json("fido2", "list") == []
