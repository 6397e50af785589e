"""Rotate a stored AWS access key inside the daemon (long-lived keys never leave it).

:func:`rotate` is the daemon's use case: it checks the access policy, gets the MFA session,
then runs the blocking :func:`rotate_key_pair` off the event loop.  The store is locked only
for each load and store, never across an IAM call.

1. load the old key pair and ask STS who it is (GetCallerIdentity);
2. CreateAccessKey with the old key; on AccessDenied, and when an MFA session can be had, again
   with the MFA session (IAM policies often require MFA to manage one's own keys);
3. verify the new key: GetCallerIdentity must name the same ARN (retried with back-off, since
   IAM is eventually consistent);
4. store the new key in place of the old, only once it verified;
5. DeleteAccessKey the old key with the new one (or with the MFA session when that is denied).

If 3 or 4 fails the new key is deleted again (best effort) and the old one stays stored; if 5
fails the new key is stored and works, and the result says the old key still exists.  Every
step is audited as a ``rotation_step`` event with masked key ids; until the new key is stored
an audit failure stops the rotation (fail closed), afterwards it is only logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, TypeVar

from vaultd.core.model import LongTermCredentials, Requester, SessionCredentials, mask_key
from vaultd.core.ports import Clock
from vaultd.core.service import AuditSink, EventSink, VaultService
from vaultd.errors import (
    AuditError,
    ConfigError,
    IamAccessDenied,
    IamError,
    IamUnavailable,
    RotationAborted,
    RotationError,
    StsKeyInvalid,
    StsThrottled,
    StsUnavailable,
    VaultError,
)

log = logging.getLogger("vaultd.core.rotation")
T = TypeVar("T")
Credentials = LongTermCredentials | SessionCredentials

EVENT = "rotation_step"
MAX_VERIFY_DELAY = 8.0
_RETRYABLE = (StsKeyInvalid, StsThrottled, StsUnavailable, IamUnavailable)


class RotatedKeyStore(Protocol):
    """The stored key pairs rotation reads and replaces (blocking, one store operation each)."""

    def load_for_rotation(self, name: str) -> LongTermCredentials:
        """The stored pair ``name``; ``ConfigError`` if rotation cannot re-store it (bound)."""
        ...

    def replace_key_pair(self, name: str, creds: LongTermCredentials) -> None: ...


class IamKeys(Protocol):
    """The IAM and STS calls rotation makes (:class:`vaultd.aws.iam.Boto3IamClient`)."""

    def create_access_key(self, creds: Credentials) -> LongTermCredentials: ...

    def delete_access_key(self, creds: Credentials, access_key_id: str) -> None: ...

    def get_caller_identity(self, creds: Credentials) -> str: ...


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What a finished rotation did; key ids are masked."""

    name: str
    old_key_id: str
    new_key_id: str
    rotated_at: datetime
    old_key_deleted: bool
    used_mfa: bool

    @property
    def message(self) -> str:
        """One line for the user; says what to do when the old key is left in IAM."""
        done = f"rotated {self.name!r}: {self.old_key_id} -> {self.new_key_id}"
        if self.old_key_deleted:
            return f"{done}; the old key was deleted"
        return (
            f"{done}; the new key is stored and works, but the old key {self.old_key_id} still "
            "exists in IAM: delete it in the console or with `aws iam delete-access-key` (find "
            "its id with `aws iam list-access-keys`)"
        )

    def as_dict(self) -> dict[str, object]:
        """The result as JSON-ready fields (for the daemon's reply)."""
        return {
            "name": self.name,
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "rotated_at": self.rotated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "old_key_deleted": self.old_key_deleted,
            "used_mfa": self.used_mfa,
            "message": self.message,
        }


def rotate_key_pair(
    name: str,
    *,
    load: Callable[[str], LongTermCredentials],
    store_new: Callable[[str, LongTermCredentials], None],
    iam: IamKeys,
    audit: AuditSink,
    clock: Clock,
    mfa_session: Callable[[], SessionCredentials] | None = None,
    verify_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> RotationResult:
    """Rotate the stored key pair ``name`` (see the module docstring); blocking.

    ``load(name)`` opens the stored pair; ``store_new(name, creds)`` replaces it.  Errors before
    a new key exists propagate unchanged (nothing changed); later ones raise
    :class:`RotationAborted` saying what was cleaned up.
    """
    if verify_attempts < 1:
        raise ValueError("verify_attempts must be at least 1")
    run = _Rotation(name, iam, audit, mfa_session)
    old = run.step("load", lambda: load(name))
    run.fields["key_id"] = mask_key(old.access_key_id)
    arn = run.step("identity", lambda: iam.get_caller_identity(old))
    creator, new = run.create(old)
    try:
        run.step("verify", lambda: _verify(iam, new, arn, verify_attempts, sleep))
    except Exception as exc:
        raise run.abort("verify", exc, creator, new) from exc
    run.store(load, store_new, creator, new)
    rotated_at = clock.now()
    deleted = run.delete_old(old, new, creator)
    return RotationResult(
        name=name,
        old_key_id=mask_key(old.access_key_id),
        new_key_id=mask_key(new.access_key_id),
        rotated_at=rotated_at,
        old_key_deleted=deleted,
        used_mfa=run.session is not None,
    )


def _verify(
    iam: IamKeys, new: LongTermCredentials, arn: str, attempts: int, sleep: Callable[[float], None]
) -> None:
    """GetCallerIdentity with ``new`` must name ``arn``; retry while the key is not in effect."""
    for attempt in range(1, attempts + 1):
        try:
            got = iam.get_caller_identity(new)
        except _RETRYABLE:
            if attempt == attempts:
                raise
            sleep(min(2.0 ** (attempt - 1), MAX_VERIFY_DELAY))
            continue
        if got != arn:
            raise RotationError(f"the new key acts as {got!r}, not as the old key's {arn!r}")
        return


def _code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, VaultError) else type(exc).__name__


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, VaultError) else f"unexpected {type(exc).__name__}"


def _via(creds: Credentials, old: LongTermCredentials) -> str:
    return "old_key" if creds is old else "mfa_session"


def _gone(exc: BaseException) -> bool:
    return isinstance(exc, IamError) and exc.aws_code == "NoSuchEntity"


class _Rotation:
    """State of one rotation: audit fields, whether audit failures are fatal, the MFA session."""

    def __init__(
        self,
        name: str,
        iam: IamKeys,
        audit: AuditSink,
        mfa_session: Callable[[], SessionCredentials] | None,
    ) -> None:
        self.iam = iam
        self.fields: dict[str, object] = {"name": name}
        self._audit = audit
        self._mfa_session = mfa_session
        self.session: SessionCredentials | None = None
        self._strict = True

    def record(self, step: str, outcome: str, **extra: object) -> None:
        """Audit one step; fatal (``AuditError``) until the new key is stored, then logged."""
        try:
            self._audit.record(EVENT, {**self.fields, "step": step, "outcome": outcome, **extra})
        except AuditError as exc:
            if self._strict:
                raise
            log.warning("rotation of %s: audit of step %s failed: %s", self.fields, step, exc)

    def step(self, step: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` and audit its outcome; failures propagate."""
        try:
            value = fn()
        except Exception as exc:
            self.record(step, _code(exc))
            raise
        self.record(step, "ok")
        return value

    def mfa(self) -> SessionCredentials:
        """The MFA session, asked for at most once (it may prompt the user)."""
        if self.session is None:
            assert self._mfa_session is not None  # noqa: S101 - callers check
            self.session = self.step("mfa_session", self._mfa_session)
        return self.session

    def create(self, old: LongTermCredentials) -> tuple[Credentials, LongTermCredentials]:
        """CreateAccessKey with ``old``, or with the MFA session when that is denied."""
        creator: Credentials = old
        try:
            try:
                new = self.iam.create_access_key(old)
            except IamAccessDenied as exc:
                if self._mfa_session is None:
                    raise
                self.record("create", exc.code, via="old_key")
                creator = self.mfa()
                new = self.iam.create_access_key(creator)
        except Exception as exc:
            self.record("create", _code(exc), via=_via(creator, old))
            raise
        new = replace(new, root=old.root)
        self.fields["new_key_id"] = mask_key(new.access_key_id)
        try:
            self.record("create", "ok", via=_via(creator, old))
        except AuditError as exc:
            raise self.abort("create", exc, creator, new) from exc
        return creator, new

    def store(
        self,
        load: Callable[[str], LongTermCredentials],
        store_new: Callable[[str, LongTermCredentials], None],
        creator: Credentials,
        new: LongTermCredentials,
    ) -> None:
        """Replace the stored pair; on failure read it back to decide whether to undo."""
        name = str(self.fields["name"])
        try:
            store_new(name, new)
        except Exception as exc:
            try:
                stored = load(name).access_key_id
            except Exception:
                self.record("store", _code(exc))
                raise RotationAborted(
                    f"rotating {name!r} stopped: storing the new key failed ({_reason(exc)}) and "
                    "the store could not be read back, so neither key was deleted. Check "
                    f"`vaultd list`, then delete the key that is not stored "
                    f"({self.fields['key_id']} or {self.fields['new_key_id']}) with "
                    "`aws iam delete-access-key`",
                    step="store",
                    leftover_key_id=mask_key(new.access_key_id),
                ) from exc
            if stored != new.access_key_id:
                self.record("store", _code(exc))
                raise self.abort("store", exc, creator, new) from exc
        self._strict = False
        self.record("store", "ok")

    def abort(
        self, step: str, exc: BaseException, creator: Credentials, new: LongTermCredentials
    ) -> RotationAborted:
        """Delete the new key again (best effort) and describe what is left."""
        name, masked = self.fields["name"], mask_key(new.access_key_id)
        self._strict = False
        try:
            self.iam.delete_access_key(creator, new.access_key_id)
        except Exception as cleanup:
            if not _gone(cleanup):
                self.record("cleanup", _code(cleanup))
                return RotationAborted(
                    f"rotating {name!r} stopped at {step}: {_reason(exc)}. Deleting the new key "
                    f"{masked} failed too ({_code(cleanup)}): delete it in the IAM console or "
                    f"with `aws iam delete-access-key`; the old key {self.fields['key_id']} "
                    "stays stored and in use",
                    step=step,
                    leftover_key_id=masked,
                )
        self.record("cleanup", "ok")
        return RotationAborted(
            f"rotating {name!r} stopped at {step}: {_reason(exc)}. The new key {masked} was "
            f"deleted again; the old key {self.fields['key_id']} stays stored and in use",
            step=step,
            leftover_key_id=None,
        )

    def delete_old(
        self, old: LongTermCredentials, new: LongTermCredentials, creator: Credentials
    ) -> bool:
        """DeleteAccessKey the old key; ``False`` (audited and logged) if it is still there."""
        via = "new_key"
        try:
            try:
                self.iam.delete_access_key(new, old.access_key_id)
            except IamAccessDenied:
                if self._mfa_session is None:
                    raise
                via = "mfa_session"
                self.iam.delete_access_key(self.mfa(), old.access_key_id)
            except StsKeyInvalid:  # the new key is not yet in effect in IAM
                via = _via(creator, old)
                self.iam.delete_access_key(creator, old.access_key_id)
        except Exception as exc:
            if not _gone(exc):
                self.record("delete_old", _code(exc), via=via)
                log.warning("rotation of %s: the old key is still in IAM (%s)", self.fields, exc)
                return False
        self.record("delete_old", "ok", via=via)
        return True


async def rotate(
    service: VaultService,
    name: str,
    requester: Requester,
    *,
    on_event: EventSink | None,
    keys: RotatedKeyStore,
    iam: IamKeys,
    scope: str = "",
) -> Mapping[str, object]:
    """Rotate key pair ``name`` through a fresh MFA session of the session profile using it.

    The access policy is evaluated first (``vaultd:Rotate``, with MFA present: rotation never
    runs without the session it is about to ask for), so a denial comes before any prompt.
    A cached session proves no MFA in this request, so it is judged again without it
    (docs/threat-model.md T31).  The MFA session never leaves the daemon: it is audited as used
    for ``key_rotation``.
    """
    profile = next(
        (p for p in service.profiles.values() if p.credentials == name and not p.role_arn), None
    )
    if profile is None:
        raise ConfigError(
            f"no session profile uses the key pair {name!r}: rotation makes its IAM calls "
            f"through that profile's MFA session; add one with credentials = {name!r} and "
            "mfa_serial"
        )
    await service.authorize("vaultd:Rotate", profile, requester, mfa_present=True)
    cached = service.cache.get(f"profile:{profile.name}")
    session = await service.credentials(
        profile.name,
        requester,
        on_event=on_event,
        interactive=True,
        kept_for="key_rotation",
        scope=scope,
    )
    if session is cached:
        await service.authorize("vaultd:Rotate", profile, requester, mfa_present=False)
    ports = service.ports
    result = await service.run_io(
        lambda: rotate_key_pair(
            name,
            load=keys.load_for_rotation,
            store_new=keys.replace_key_pair,
            iam=iam,
            audit=ports.audit,
            clock=ports.clock,
            mfa_session=lambda: session,
        )
    )
    service.cache.wipe()  # sessions of the old key stay valid at AWS, but start afresh here
    return result.as_dict()
