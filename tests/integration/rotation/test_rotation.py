"""Access-key rotation against moto's IAM and STS, with the store and audit log on SoftHSM2.

Faults are injected by :class:`ScriptedIam`, a fake at the adapter boundary: it forwards every
call to the real :class:`Boto3IamClient` talking to moto, except the calls a test scripts to
raise an error or to return another value.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from vaultd.aws.iam import AccessKeyInfo, Boto3IamClient, Credentials
from vaultd.aws.sts import Boto3StsClient
from vaultd.core.model import LongTermCredentials, RecordKind, SessionCredentials, mask_key
from vaultd.core.records import decode_key_pair, encode_key_pair
from vaultd.core.rotation import RotationResult, rotate_key_pair
from vaultd.errors import (
    AccessKeyLimit,
    AuditError,
    IamAccessDenied,
    IamUnavailable,
    RotationAborted,
    StoreError,
    StsKeyInvalid,
)
from vaultd.keys.pkcs11 import TokenKey
from vaultd.store.audit import AuditLog, verify
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.moto_server import DEFAULT_ACCOUNT, MotoServer

pytestmark = [pytest.mark.sts, pytest.mark.hsm]

NAME = "alice-keys"
USER_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/alice"


class ScriptedIam:
    """Forwards to the real client over moto, except for scripted calls (numbered from 1).

    ``stand_in`` signs in place of MFA session credentials: moto cannot tie a session made by
    GetSessionToken to its user, so such calls are sent with the user's key instead (and the
    session is recorded in ``signers`` so tests can assert it was offered).
    """

    def __init__(self, real: Boto3IamClient) -> None:
        self.real = real
        self.calls: Counter[str] = Counter()
        self.signers: list[tuple[str, str]] = []
        self.script: dict[tuple[str, int], object] = {}
        self.stand_in: LongTermCredentials | None = None

    def fail(self, method: str, error: Exception, calls: Iterable[int] = (1,)) -> None:
        for n in calls:
            self.script[(method, n)] = error

    def _call(self, method: str, creds: Credentials, *args: str) -> Any:
        self.calls[method] += 1
        self.signers.append((method, creds.access_key_id))
        scripted = self.script.get((method, self.calls[method]))
        if isinstance(scripted, Exception):
            raise scripted
        if scripted is not None:
            return scripted
        if isinstance(creds, SessionCredentials):
            assert self.stand_in is not None
            creds = self.stand_in
        return getattr(self.real, method)(creds, *args)

    def create_access_key(self, creds: Credentials) -> LongTermCredentials:
        result: LongTermCredentials = self._call("create_access_key", creds)
        return result

    def delete_access_key(self, creds: Credentials, access_key_id: str) -> None:
        self._call("delete_access_key", creds, access_key_id)

    def get_caller_identity(self, creds: Credentials) -> str:
        result: str = self._call("get_caller_identity", creds)
        return result


class FailingAudit:
    """The real audit log, except that one step's record raises ``AuditError`` (disk full)."""

    def __init__(self, log: AuditLog, step: str) -> None:
        self.log, self.step = log, step

    def record(self, event: str, fields: dict[str, object]) -> None:
        if fields.get("step") == self.step:
            raise AuditError("cannot write the audit log (No space left on device)")
        self.log.record(event, fields)


class Rig:
    """A user in moto with one key, that key sealed in the store, and rotation wired up."""

    def __init__(
        self, moto: MotoServer, store: SealedStore, audit: AuditLog, clock: FakeClock
    ) -> None:
        self.moto, self.store, self.audit, self.clock = moto, store, audit, clock
        akid, secret = moto.create_user_with_key("alice")
        self.old = LongTermCredentials(akid, secret)
        self.store_new(NAME, self.old)
        self.real = Boto3IamClient()  # endpoint from AWS_ENDPOINT_URL
        self.iam = ScriptedIam(self.real)
        self.sleeps: list[float] = []

    def load(self, name: str) -> LongTermCredentials:
        return decode_key_pair(self.store.get(RecordKind.KEY_PAIR, name), root=False)

    def store_new(self, name: str, creds: LongTermCredentials) -> None:
        self.store.put(
            RecordKind.KEY_PAIR,
            name,
            encode_key_pair(creds),
            masked_id=mask_key(creds.access_key_id),
            root=creds.root,
            replace=True,
        )

    def rotate(self, **overrides: Any) -> RotationResult:
        kwargs: dict[str, Any] = {
            "load": self.load,
            "store_new": self.store_new,
            "iam": self.iam,
            "audit": self.audit,
            "clock": self.clock,
            "sleep": self.sleeps.append,
        }
        kwargs.update(overrides)
        return rotate_key_pair(NAME, **kwargs)

    def stored(self) -> LongTermCredentials:
        return self.load(NAME)

    def iam_keys(self) -> list[str]:
        keys = self.moto.client("iam").list_access_keys(UserName="alice")["AccessKeyMetadata"]
        return sorted(k["AccessKeyId"] for k in keys)

    def steps(self) -> list[tuple[str, str]]:
        lines = self.audit.path.read_text().splitlines()
        events = [json.loads(line) for line in lines]
        return [(e["step"], e["outcome"]) for e in events if e["event"] == "rotation_step"]


@pytest.fixture
def rig(moto: MotoServer, store: SealedStore, audit: AuditLog, clock: FakeClock) -> Rig:
    return Rig(moto, store, audit, clock)


def assert_unchanged(rig: Rig) -> None:
    """The old key is still stored, is the only key in IAM and still works."""
    assert rig.stored() == rig.old
    assert rig.iam_keys() == [rig.old.access_key_id]
    assert rig.real.get_caller_identity(rig.old) == USER_ARN


def test_rotation_leaves_one_working_key_and_it_is_the_stored_one(
    rig: Rig, token: TokenKey, clock: FakeClock
) -> None:
    clock.advance(3600)
    result = rig.rotate()

    new = rig.stored()
    assert new.access_key_id != rig.old.access_key_id
    assert rig.iam_keys() == [new.access_key_id]
    [listed] = rig.real.list_access_keys(new)
    assert isinstance(listed, AccessKeyInfo)
    assert (listed.access_key_id, listed.status) == (new.access_key_id, "Active")
    assert listed.created.tzinfo is not None
    assert rig.real.get_caller_identity(new) == USER_ARN
    assert result.old_key_deleted and not result.used_mfa
    assert result.rotated_at == clock.now()
    assert result.new_key_id == mask_key(new.access_key_id)
    [info] = rig.store.list()
    assert info.created == clock.now() and info.masked_id == mask_key(new.access_key_id)
    assert rig.iam.signers[-1] == ("delete_access_key", new.access_key_id)  # with the new key
    assert rig.steps() == [
        ("load", "ok"),
        ("identity", "ok"),
        ("create", "ok"),
        ("verify", "ok"),
        ("store", "ok"),
        ("delete_old", "ok"),
    ]
    assert verify(rig.audit.path, token.mac_verify) == 6
    text = rig.audit.path.read_text() + json.dumps(result.as_dict())
    for secret in (rig.old.access_key_id, rig.old.secret_access_key, new.access_key_id):
        assert secret not in text
    assert new.secret_access_key not in text
    assert mask_key(rig.old.access_key_id) in text


def test_create_failure_changes_nothing(rig: Rig) -> None:
    rig.iam.fail("create_access_key", IamUnavailable("CreateAccessKey failed: try again later"))
    with pytest.raises(IamUnavailable):
        rig.rotate()
    assert_unchanged(rig)
    assert rig.steps()[-1] == ("create", "IAM_UNAVAILABLE")


def test_verify_failure_deletes_the_new_key(rig: Rig) -> None:
    rig.iam.fail("get_caller_identity", StsKeyInvalid("not in effect"), calls=range(2, 7))
    with pytest.raises(RotationAborted) as caught:
        rig.rotate()
    assert caught.value.step == "verify" and caught.value.leftover_key_id is None
    assert "stays stored" in str(caught.value)
    assert rig.sleeps == [1.0, 2.0, 4.0, 8.0]  # five attempts, backing off
    assert_unchanged(rig)
    assert rig.steps()[-2:] == [("verify", "STS_KEY_INVALID"), ("cleanup", "ok")]


def test_verify_waits_for_iam_eventual_consistency(rig: Rig) -> None:
    rig.iam.fail("get_caller_identity", StsKeyInvalid("not in effect yet"), calls=(2, 3))
    result = rig.rotate()
    assert rig.sleeps == [1.0, 2.0]
    assert result.old_key_deleted
    assert rig.iam_keys() == [rig.stored().access_key_id] != [rig.old.access_key_id]


def test_verify_refuses_a_key_of_another_identity(rig: Rig) -> None:
    rig.iam.script[("get_caller_identity", 2)] = f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/mallory"
    with pytest.raises(RotationAborted, match="user/mallory"):
        rig.rotate()
    assert rig.sleeps == []
    assert_unchanged(rig)


def test_store_failure_deletes_the_new_key(rig: Rig) -> None:
    def broken_store(name: str, creds: LongTermCredentials) -> None:
        raise StoreError("cannot write the store (No space left on device)")

    with pytest.raises(RotationAborted) as caught:
        rig.rotate(store_new=broken_store)
    assert caught.value.step == "store" and caught.value.leftover_key_id is None
    assert_unchanged(rig)
    assert rig.steps()[-2:] == [("store", "STORE_ERROR"), ("cleanup", "ok")]


def test_store_error_after_the_write_keeps_the_new_key(rig: Rig) -> None:
    """A write that landed but then raised (e.g. the anchor update) is read back, not undone."""

    def store_then_fail(name: str, creds: LongTermCredentials) -> None:
        rig.store_new(name, creds)
        raise StoreError("the generation anchor could not be advanced")

    result = rig.rotate(store_new=store_then_fail)
    assert result.old_key_deleted
    assert rig.iam_keys() == [rig.stored().access_key_id] != [rig.old.access_key_id]


def test_delete_old_failure_reports_the_leftover_key(rig: Rig) -> None:
    rig.iam.fail("delete_access_key", IamUnavailable("DeleteAccessKey failed: try again later"))
    result = rig.rotate()
    new = rig.stored()
    assert not result.old_key_deleted
    assert f"old key {mask_key(rig.old.access_key_id)} still exists" in result.message
    assert result.as_dict()["old_key_deleted"] is False
    assert rig.iam_keys() == sorted([rig.old.access_key_id, new.access_key_id])
    assert rig.real.get_caller_identity(new) == USER_ARN
    assert rig.steps()[-1] == ("delete_old", "IAM_UNAVAILABLE")


def test_old_key_deletes_itself_while_iam_does_not_know_the_new_key(rig: Rig) -> None:
    rig.iam.fail("delete_access_key", StsKeyInvalid("the new key is not in effect in IAM yet"))
    result = rig.rotate()
    assert result.old_key_deleted
    deletes = [who for method, who in rig.iam.signers if method == "delete_access_key"]
    assert deletes == [rig.stored().access_key_id, rig.old.access_key_id]
    assert rig.iam_keys() == [rig.stored().access_key_id]


def test_two_keys_already_is_a_clear_error_and_changes_nothing(rig: Rig) -> None:
    spare = rig.moto.client("iam").create_access_key(UserName="alice")["AccessKey"]
    before = rig.iam_keys()
    with pytest.raises(AccessKeyLimit) as caught:
        rig.rotate()
    assert "IAM allows two access keys per user" in str(caught.value)
    assert "aws iam delete-access-key" in str(caught.value)
    assert spare["SecretAccessKey"] not in str(caught.value)
    assert rig.iam_keys() == before and len(before) == 2
    assert rig.stored() == rig.old
    assert rig.steps()[-1] == ("create", "ACCESS_KEY_LIMIT")


def test_cleanup_failure_names_the_key_left_in_iam(rig: Rig) -> None:
    rig.iam.fail("get_caller_identity", StsKeyInvalid("not in effect"), calls=range(2, 7))
    rig.iam.fail("delete_access_key", IamUnavailable("DeleteAccessKey failed"))
    with pytest.raises(RotationAborted) as caught:
        rig.rotate()
    keys = rig.iam_keys()
    [leftover] = [k for k in keys if k != rig.old.access_key_id]
    assert caught.value.leftover_key_id == mask_key(leftover)
    assert "failed too" in str(caught.value) and leftover not in str(caught.value)
    assert rig.stored() == rig.old


def test_audit_failure_before_the_store_undoes_the_new_key(rig: Rig) -> None:
    with pytest.raises(RotationAborted) as caught:
        rig.rotate(audit=FailingAudit(rig.audit, "verify"))
    assert caught.value.step == "verify"
    assert_unchanged(rig)


def test_mfa_session_is_used_when_the_policy_denies_the_plain_key(rig: Rig) -> None:
    rig.iam.fail("create_access_key", IamAccessDenied("denied without MFA"))
    rig.iam.fail("delete_access_key", IamAccessDenied("denied without MFA"))
    rig.iam.stand_in = rig.old
    session = Boto3StsClient().get_session_token(
        rig.old, duration_seconds=3600, serial_number=None, token_code=None, region=None
    )
    asked: list[int] = []

    def mfa_session() -> SessionCredentials:
        asked.append(1)
        return session

    result = rig.rotate(mfa_session=mfa_session)
    new = rig.stored()
    assert asked == [1] and result.used_mfa and result.old_key_deleted
    creates = [who for method, who in rig.iam.signers if method == "create_access_key"]
    deletes = [who for method, who in rig.iam.signers if method == "delete_access_key"]
    assert creates == [rig.old.access_key_id, session.access_key_id]
    assert deletes == [new.access_key_id, session.access_key_id]
    assert rig.iam_keys() == [new.access_key_id]


def test_access_denied_without_mfa_changes_nothing(rig: Rig) -> None:
    rig.iam.fail("create_access_key", IamAccessDenied("denied without MFA"))
    with pytest.raises(IamAccessDenied):
        rig.rotate()
    assert_unchanged(rig)


def test_real_access_denied_from_iam_says_mfa_may_be_required(rig: Rig) -> None:
    """moto with IAM auth on: the user may call STS but has no permission on IAM."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
    }
    rig.moto.client("iam").put_user_policy(
        UserName="alice", PolicyName="sts-only", PolicyDocument=json.dumps(policy)
    )
    _reset_auth(rig.moto.url, "0")
    try:
        with pytest.raises(IamAccessDenied, match="may require MFA"):
            rig.rotate()
    finally:
        _reset_auth(rig.moto.url, "inf")
    assert_unchanged(rig)


def _reset_auth(url: str, free_calls: str) -> None:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(  # noqa: S310 - moto on 127.0.0.1
        f"{url}/moto-api/reset-auth",
        data=free_calls.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form type would hide the body from moto
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - moto on 127.0.0.1
        pass


def test_iam_client_reads_its_endpoint_from_the_environment(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(IamUnavailable):
        Boto3IamClient(connect_timeout=1).list_access_keys(rig.old)
    assert Boto3IamClient().get_caller_identity(rig.old) == USER_ARN  # STS still on moto
