"""hmac-secret binding with software authenticators and the real token: a bound record opens
only with a touch on one of its bound authenticators, and with either of two."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vaultd.core.model import RecordKind
from vaultd.errors import ApprovalUnavailable, RecordCorrupt
from vaultd.fido2.gate import bind_plaintext, is_bound, unbind_plaintext
from vaultd.fido2.verify import EnrolledCredential
from vaultd.store.audit import AuditLog
from vaultd.store.files import SealedStore
from vaultd.testing.harness import Installation

pytestmark = pytest.mark.hsm

SECRET = b'{"AccessKeyId":"AKIACANARY0000000001","SecretAccessKey":"BoundCanary0000000000001"}'
Vault = tuple[SealedStore, AuditLog]


@pytest.fixture
def bound(
    vault: Vault, enrol: Callable[[str, int], EnrolledCredential], make_gate: Any, touch: Any
) -> SealedStore:
    """``dev`` stored bound to authenticators 1 and 2 (each touched once), sealed by the token."""
    store, _ = vault
    enrol("desk", 1)
    enrol("backup", 2)
    touched: list[str] = []
    gate = make_gate()
    blob = bind_plaintext(
        SECRET,
        lambda salt: gate.hmac_outputs(
            "bind:dev",
            salt,
            ["desk", "backup"],
            **touch | {"on_prompt": lambda cred: touched.append(cred.name)},
        ),
    )
    assert touched == ["desk", "backup"]
    store.put(RecordKind.KEY_PAIR, "dev", blob)
    return store


def _open(store: SealedStore, gate: Any, touch: Any) -> bytes:
    return unbind_plaintext(
        store.get(RecordKind.KEY_PAIR, "dev"),
        lambda salt, ids: gate.hmac_output("open:dev", salt, ids, **touch),
    )


def test_readable_with_either_bound_authenticator(
    bound: SealedStore, make_gate: Any, touch: Any, inst: Installation
) -> None:
    sealed_plaintext = bound.get(RecordKind.KEY_PAIR, "dev")
    assert is_bound(sealed_plaintext) and b"BoundCanary" not in sealed_plaintext
    assert _open(bound, make_gate(present=[1]), touch) == SECRET
    assert _open(bound, make_gate(present=[2]), touch) == SECRET
    data = [p.read_bytes() for p in Path(inst.root / "data").rglob("*") if p.is_file()]
    assert not any(b"BoundCanary" in d for d in data)


def test_unreadable_without_a_bound_authenticator(
    bound: SealedStore, enrol: Any, make_gate: Any, touch: Any, key: Any
) -> None:
    with pytest.raises(ApprovalUnavailable):  # none plugged in
        _open(bound, make_gate(present=[]), touch)
    enrol("other", 3)  # enrolled, but not bound to this record
    key(3).set_touch("auto", 0.02)
    with pytest.raises(ApprovalUnavailable):
        _open(bound, make_gate(present=[3]), touch)
    blob = bound.get(RecordKind.KEY_PAIR, "dev")
    with pytest.raises(RecordCorrupt):  # a wrong output (not the authenticator's) fails closed
        unbind_plaintext(blob, lambda salt, ids: (ids[0], bytes(32)))
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(RecordCorrupt):
        _open_blob(tampered, make_gate(present=[1]), touch)
    with pytest.raises(RecordCorrupt):
        _open_blob(blob[:50], make_gate(present=[1]), touch)


def _open_blob(blob: bytes, gate: Any, touch: Any) -> bytes:
    return unbind_plaintext(blob, lambda salt, ids: gate.hmac_output("open", salt, ids, **touch))
