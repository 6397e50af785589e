"""TouchGate against software authenticators and the real sealed store on SoftHSM2, with the
audit log MACed by the token: approvals, each refusal, and the signCount saved before return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vaultd.errors import ApprovalUnavailable, Denied, Fido2Rejected, Fido2Suspect, StoreError
from vaultd.fido2.gate import load_enrolled
from vaultd.fido2.verify import EnrolledCredential
from vaultd.store.audit import AuditLog
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.soft_ctap2 import SoftCtap2Device

pytestmark = pytest.mark.hsm

Enrol = Callable[[str, int], EnrolledCredential]
Key = Callable[[int], SoftCtap2Device]
Vault = tuple[SealedStore, AuditLog]


def _stored(vault: Vault, name: str) -> EnrolledCredential:
    return {c.name: c for c in load_enrolled(vault[0])}[name]


def test_approval_round_trip(
    vault: Vault, enrol: Enrol, make_gate: Any, touch: dict[str, Any], audit_events: Any
) -> None:
    enrol("desk", 1)
    clock = FakeClock()
    prompts: list[str] = []
    gate = make_gate(clock=clock)
    used = gate.approve("approval-1", **touch | {"on_prompt": lambda: prompts.append("touch")})
    assert used.name == "desk" and used.sign_count > 0 and used.last_used == clock.now()
    assert prompts == ["touch"]
    assert _stored(vault, "desk") == used
    clock.advance(5)
    again = gate.approve("approval-2", **touch)
    assert again.sign_count > used.sign_count and _stored(vault, "desk") == again
    assert audit_events() == ["fido2_touch", "fido2_touch"]


def test_nothing_enrolled_is_unavailable(make_gate: Any, touch: dict[str, Any]) -> None:
    with pytest.raises(ApprovalUnavailable, match="vaultd fido2 enroll"):
        make_gate().approve("approval-1", **touch)


def test_refused_touch_changes_nothing(
    vault: Vault, enrol: Enrol, make_gate: Any, key: Key, touch: dict[str, Any], audit_events: Any
) -> None:
    before = enrol("desk", 1)
    key(1).set_touch("refuse")
    with pytest.raises(Denied):
        make_gate(present=[1]).approve("approval-1", **touch)
    assert _stored(vault, "desk") == before
    assert audit_events() == []


@pytest.mark.parametrize("step_back", [0, 1])
def test_counter_not_above_stored_marks_suspect(
    vault: Vault,
    enrol: Enrol,
    make_gate: Any,
    key: Key,
    touch: dict[str, Any],
    audit_events: Any,
    step_back: int,
) -> None:
    enrol("desk", 1)
    gate = make_gate(present=[1])
    count = gate.approve("approval-1", **touch).sign_count
    key(1).tamper_next(counter=count - step_back)  # equal, then lower: a clone's counter
    with pytest.raises(Fido2Suspect):
        gate.approve("approval-2", **touch)
    stored = _stored(vault, "desk")
    assert stored.suspect and stored.sign_count == count  # persisted, count not advanced
    assert audit_events() == ["fido2_touch", "fido2_suspect"]
    with pytest.raises(Fido2Suspect, match="suspect"):  # refused from now on, before any touch
        gate.approve("approval-3", **touch)
    assert not key(1).waiting_for_touch.is_set()


def test_rejected_check_is_named_and_audited(
    vault: Vault, enrol: Enrol, make_gate: Any, key: Key, touch: dict[str, Any], audit_events: Any
) -> None:
    before = enrol("desk", 1)
    key(1).tamper_next(rp_id="evil.example")
    with pytest.raises(Fido2Rejected) as info:
        make_gate(present=[1]).approve("approval-1", **touch)
    assert info.value.check == "rp_id"
    assert _stored(vault, "desk") == before
    assert audit_events() == ["fido2_rejected"]


def test_unknown_credential_cannot_approve(
    vault: Vault, enrol: Enrol, make_gate: Any, touch: dict[str, Any]
) -> None:
    enrol("desk", 1)
    enrol("spare", 2)
    vault[0].remove(*_record_key("spare"))  # forgotten: its key still holds the credential
    with pytest.raises(ApprovalUnavailable, match="no connected FIDO2 authenticator"):
        make_gate(present=[2]).approve("approval-1", **touch)


def _record_key(name: str) -> tuple[Any, str]:
    from vaultd.core.model import RecordKind

    return RecordKind.FIDO2_CREDENTIAL, name


def test_either_of_two_authenticators_approves_when_the_other_is_absent(
    vault: Vault, enrol: Enrol, make_gate: Any, touch: dict[str, Any]
) -> None:
    desk, backup = enrol("desk", 1), enrol("backup", 2)
    assert make_gate(present=[2]).approve("approval-1", **touch).name == "backup"
    assert _stored(vault, "desk") == desk  # the absent one is untouched
    assert make_gate(present=[1]).approve("approval-2", **touch).name == "desk"
    assert _stored(vault, "backup").sign_count > backup.sign_count
    with pytest.raises(ApprovalUnavailable):
        make_gate(present=[]).approve("approval-3", **touch)


def test_counter_is_persisted_before_return(
    vault: Vault, enrol: Enrol, make_gate: Any, touch: dict[str, Any]
) -> None:
    enrol("desk", 1)
    seen_at_audit: list[int] = []

    def audit(event: str, fields: Any) -> None:
        seen_at_audit.append(_stored(vault, "desk").sign_count)

    used = make_gate(audit_sink=audit).approve("approval-1", **touch)
    assert seen_at_audit == [used.sign_count]  # on disk before the audit, before returning

    def failing_save(cred: EnrolledCredential) -> None:
        raise StoreError("disk full")

    before = _stored(vault, "desk")
    with pytest.raises(StoreError):  # no credential comes back: nothing can be released
        make_gate(save=failing_save, audit_sink=audit).approve("approval-2", **touch)
    assert _stored(vault, "desk") == before and len(seen_at_audit) == 1
