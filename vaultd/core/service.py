"""VaultService: the daemon's use cases, over ports only.

Getting credentials for a profile:

1. serve from the cache while the 15-minute floor is met;
2. otherwise, single-flight per session key: one approval, one code, one STS call, shared by
   every concurrent caller;
3. the code is checked against the single-use ledger and the rate limits before STS sees it;
4. the release is audited (fsynced) before the credentials leave.

Blocking work (token, store, STS, audit writes) goes through the injected ``run_token`` and
``run_io`` callables, so this module stays free of threads and I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from vaultd.core import serving
from vaultd.core.access_policy import ContextValue, Policy, default_policy, enforce
from vaultd.core.approvals import (
    NOBODY_TO_ASK,
    Approval,
    ApprovalBook,
    code_approval_deliverable,
)
from vaultd.core.cache import DEFAULT_IDLE_SECONDS, SessionCache
from vaultd.core.model import (
    ApprovalMethod,
    LongTermCredentials,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
    mask_key,
)
from vaultd.core.otp_ledger import OtpLedger, step_for
from vaultd.core.ports import Clock, CodeSource, Gate, Notifier, StsClient
from vaultd.core.singleflight import SingleFlight
from vaultd.errors import (
    ApprovalUnavailable,
    AuditError,
    BreakGlassOnly,
    ClientGone,
    CodeMalformed,
    ConfigError,
    MfaRejected,
    PolicyDenied,
    Sealed,
    StsExpiredToken,
    UnknownProfile,
    VaultError,
)

T = TypeVar("T")
EventSink = Callable[[str, Approval], Awaitable[None]]
APPROVAL_PENDING = "approval_pending"
TOUCH_NEEDED = "touch_needed"


def _consume(task: asyncio.Future[object]) -> None:
    """Retrieve a finished background task's exception so it is not reported as lost."""
    if not task.cancelled():
        task.exception()


def _no_notify(event: str, profile: str, severity: str, message: str) -> None:
    """The default notifier: nothing to tell."""


def _no_approvers() -> int:
    """The default approver count: no TUI is attached."""
    return 0


class Runner(Protocol):
    """Runs a blocking callable off the event loop and returns its result."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class SecretSource(Protocol):
    """Opens sealed records (blocking; called through ``run_token``)."""

    def key_pair(self, name: str) -> LongTermCredentials: ...


class AuditSink(Protocol):
    """Writes and fsyncs audit records; raises ``AuditError`` if it cannot."""

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        """Blocking: returns once the record is fsynced."""
        ...

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        """Returns once the record is fsynced (records of concurrent callers share a commit);
        raises ``AuditError`` if that has not happened within ``timeout`` seconds."""
        ...


class StateSink(Protocol):
    """Persists the OTP ledger (blocking)."""

    def save_ledger(self, data: dict[str, object]) -> None: ...


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything the service needs from outside."""

    clock: Clock
    sts: StsClient
    secrets: SecretSource
    audit: AuditSink
    state: StateSink
    run_token: Runner
    run_io: Runner
    gate: Gate | None = None
    codes: CodeSource | None = None
    notify: Notifier = _no_notify


def requester_fields(r: Requester) -> dict[str, object]:
    """The audit fields describing a requesting process."""
    return {
        "pid": r.pid,
        "uid": r.uid,
        "executable": r.executable,
        "cwd": r.cwd,
        "parent_pid": r.parent_pid,
        "parent_command": r.parent_command,
        "parent_executable": r.parent_executable,
    }


def policy_context(profile: str, requester: Requester, now: datetime) -> dict[str, ContextValue]:
    """The condition keys vaultd supplies for a request (docs/threat-model.md T33: explicit deny
    wins).

    ``vaultd:ClientExecutable`` holds both the connecting client and its parent (the program
    a user recognises, such as ``aws`` or ``terraform``), so a statement can name either.
    """
    executables = [e for e in (requester.executable, requester.parent_executable) if e]
    context: dict[str, ContextValue] = {
        "vaultd:ClientUid": requester.uid,
        "vaultd:ClientPid": requester.pid,
        "vaultd:Profile": profile,
        "aws:CurrentTime": now,
    }
    if executables:
        context["vaultd:ClientExecutable"] = executables
    return context


class VaultService:
    """Credentials, approvals, lock and status for the daemon."""

    def __init__(
        self,
        profiles: Mapping[str, Profile],
        ports: Ports,
        *,
        ledger: OtpLedger,
        approval_timeout: float = serving.DEFAULT_APPROVAL_TIMEOUT,
        cooldown_seconds: float = 30.0,
        serve_floor: int = serving.SERVE_FLOOR_SECONDS,
        cache_idle_seconds: float = DEFAULT_IDLE_SECONDS,
        audit_timeout: float = 2.0,
        access_policy: Policy | None = None,
        out_of_band: bool = False,
        approvers: Callable[[], int] = _no_approvers,
        session_scopes: bool = False,
    ) -> None:
        """``approvers()`` counts the attached approvers (TUIs) now; ``out_of_band`` lets
        :meth:`approve` answer code approvals that no terminal or approver shows;
        ``session_scopes`` (setting ``approval.scope = "session"``) releases a cached session
        only to the scopes (login sessions) an approval was made in."""
        self._profiles = dict(profiles)
        self._p = ports
        self.ledger = ledger
        self.cache = SessionCache(ports.clock, floor=serve_floor, idle_seconds=cache_idle_seconds)
        self.approvals = ApprovalBook(ports.clock, timeout=approval_timeout)
        self.flight = SingleFlight(ports.clock, cooldown_seconds=cooldown_seconds)
        self.sealed = False
        self.touch_waiting: set[str] = set()
        self._wipers: list[Callable[[], None]] = []
        self._serial_locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._audit_timeout = audit_timeout
        self._policy = access_policy or default_policy()
        self._out_of_band = out_of_band
        self._approvers = approvers
        self._approver_only: set[str] = set()
        self._session_scopes = session_scopes
        self._approved_scopes: dict[str, set[str]] = {}

    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self._profiles

    @property
    def ports(self) -> Ports:
        return self._p

    # --- credentials ---------------------------------------------------------------------

    async def credentials(
        self,
        profile_name: str,
        requester: Requester,
        *,
        action: str = "credential_process",
        on_event: EventSink | None = None,
        alive: Callable[[], bool] | None = None,
        interactive: bool = False,
        kept_for: str | None = None,
        scope: str = "",
    ) -> SessionCredentials:
        """A servable session for ``profile_name``, asking the user when a code is needed.

        ``kept_for`` names the daemon's own use of a session that never leaves it (``key_rotation``,
        ``federation``): it is audited as ``session_used`` with that purpose, not as a release.
        ``scope`` is the requester's approval scope (its login session): with session scopes
        on, a cached session is released only to a scope an approval was made in; any other
        scope is asked again (a fresh MFA session), docs/threat-model.md T31.

        ``alive`` tells whether the client still waits: a session made for a client that went
        away fills the cache but is not recorded as a release (nothing left the daemon).
        ``interactive``: the client shows the approval to its user (a terminal prompt), so a
        typed-code approval can be answered even with no TUI attached (see
        :meth:`approver_detached`).

        Every refusal is audited (best effort: when the audit log itself fails, the request is
        refused all the same).
        """
        try:
            return await self._credentials(
                profile_name, requester, action, on_event, alive, interactive, kept_for, scope
            )
        except AuditError:
            raise
        except VaultError as exc:
            with contextlib.suppress(AuditError):
                await self.audit_event(
                    "refused",
                    profile=profile_name,
                    action=action,
                    client=requester_fields(requester),
                    outcome=exc.code,
                )
            raise

    async def _credentials(
        self,
        profile_name: str,
        requester: Requester,
        action: str,
        on_event: EventSink | None,
        alive: Callable[[], bool] | None,
        interactive: bool,
        kept_for: str | None,
        scope: str,
    ) -> SessionCredentials:
        if self.sealed:
            raise Sealed("the vault is sealed: run `vaultd unlock`")
        profile = self._profiles.get(profile_name)
        if profile is None:
            raise UnknownProfile(
                f"no profile {profile_name!r} in the vaultd config: add [profiles.{profile_name}]"
            )
        if profile.kind is ProfileKind.ASSUME_ROOT:
            raise BreakGlassOnly(
                f"profile {profile.name!r} is an AssumeRoot profile: its root sessions last at "
                "most 900 s, under the 15-minute floor the AWS SDKs need to use credentials "
                f"from {action}; run `vaultd break-glass {profile.name} --reason TEXT -- CMD`"
            )
        await self._authorize(action, profile, requester)
        key = f"profile:{profile.name}"
        creds = self._cached(key, scope)
        if creds is None:
            # A request that must wait (approval, STS) is audited when it starts; a cache
            # hit is one record: the release below carries the request's facts.
            await self.audit_event(
                "request", profile=profile.name, action=action, client=requester_fields(requester)
            )
            creds = await self.flight.run(
                self._flight_key(key, scope),
                lambda: self._fresh_session(
                    profile, requester, action, on_event, interactive, scope
                ),
            )
            self._approved_scopes.setdefault(key, set()).add(scope)
        if alive is not None and not alive():
            raise ClientGone("the client went away before its credentials were ready")
        kept = {} if kept_for is None else {"purpose": kept_for}
        event = "release" if kept_for is None else "session_used"
        await self._audit_session(event, profile, action, requester, creds, **kept)
        return creds

    async def _audit_session(
        self,
        event: str,
        profile: Profile,
        action: str,
        requester: Requester,
        session: SessionCredentials,
        **extra: str,
    ) -> None:
        """Audit a session released (or kept) for ``requester``: its masked key id, expiry."""
        await self.audit_event(
            event,
            profile=profile.name,
            action=action,
            client=requester_fields(requester),
            session_key_id=mask_key(session.access_key_id),
            expiration=session.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **extra,
        )

    async def federation_session(
        self,
        profile_name: str,
        requester: Requester,
        *,
        on_event: EventSink | None = None,
        interactive: bool = False,
        scope: str = "",
    ) -> SessionCredentials:
        """A GetFederationToken session for console sign-in of a profile without a role.

        AWS accepts no MFA on GetFederationToken, so presence is proven first: the profile's
        MFA session must exist or be made now (an approval with a fresh code or a touch).
        The long-lived keys stay here; only the federation session leaves.
        """
        profile = self._profiles.get(profile_name)
        if profile is None or profile.credentials is None or profile.role_arn is not None:
            raise ConfigError(
                f"console sign-in through GetFederationToken needs a session profile with "
                f"stored credentials; {profile_name!r} is not one"
            )
        mfa = await self.credentials(
            profile_name,
            requester,
            action="login",
            on_event=on_event,
            interactive=interactive,
            kept_for="federation",
            scope=scope,
        )
        credentials_name = profile.credentials
        keys = await self.run_token(lambda: self._p.secrets.key_pair(credentials_name))
        if keys.root:
            raise BreakGlassOnly("root credentials are break-glass only: use `vaultd break-glass`")
        left = int(mfa.seconds_left(self._p.clock.now()))
        duration = max(900, min(serving.ROLE_DEFAULT_SECONDS, left))
        session = await self.run_io(
            lambda: self._p.sts.get_federation_token(
                keys, name=f"vaultd-{profile.name}"[:32], duration_seconds=duration,
                region=profile.region,
            )
        )  # fmt: skip
        await self._audit_session("release", profile, "login", requester, session)
        return session

    async def _fresh_session(
        self,
        profile: Profile,
        requester: Requester,
        action: str,
        on_event: EventSink | None,
        interactive: bool,
        scope: str,
    ) -> SessionCredentials:
        if profile.kind is ProfileKind.ROLE and profile.source_profile is not None:
            duration = profile.duration_seconds or serving.ROLE_DEFAULT_SECONDS
            if serving.role_uses_chaining(duration):
                source = self._profiles[profile.source_profile]
                source_key = f"profile:{source.name}"
                # Chained without a prompt only inside a scope where the source was approved.
                base = self._cached(source_key, scope)
                if base is None:
                    base = await self.flight.run(
                        self._flight_key(source_key, scope),
                        lambda: self._mfa_call(
                            source, requester, action, on_event, profile, interactive
                        ),
                    )
                    self._approved_scopes.setdefault(source_key, set()).add(scope)
                return await self._assume_role(profile, base, None, None)
        return await self._mfa_call(profile, requester, action, on_event, profile, interactive)

    def _cached(self, key: str, scope: str) -> SessionCredentials | None:
        """The cached session under ``key`` if ``scope`` may have it without a new approval."""
        if self._session_scopes and scope not in self._approved_scopes.get(key, ()):
            return None
        return self.cache.get(key)

    def _flight_key(self, key: str, scope: str) -> str:
        """One flight per scope under session scopes: a waiter from another login session never
        rides an approval shown for this one."""
        return f"{key}|{scope}" if self._session_scopes else key

    async def _mfa_call(
        self,
        profile: Profile,
        requester: Requester,
        action: str,
        on_event: EventSink | None,
        asked_for: Profile,
        interactive: bool,
    ) -> SessionCredentials:
        """GetSessionToken (or a direct AssumeRole) with the long-lived keys and a fresh code.

        One MFA ceremony at a time per MFA serial (docs/threat-model.md T10): profiles sharing a
        device queue behind each other instead of prompting at once.
        """
        creds_name, serial = self._source_of(profile)
        async with self._serial_locks.setdefault(serial, asyncio.Lock()):
            keys = await self.run_token(lambda: self._p.secrets.key_pair(creds_name))
            if keys.root:
                raise BreakGlassOnly(
                    f"{creds_name!r} holds root credentials: they are break-glass only and never "
                    "served to credential_process; use `vaultd break-glass`"
                )
            self.ledger.check_allowed(serial, self._p.clock.now())
            code = await self._obtain_code(
                asked_for, serial, requester, action, on_event, interactive
            )
            if profile.kind is ProfileKind.ROLE:
                session = await self.counting_failures(
                    serial, self._assume_role(profile, keys, serial, code)
                )
            else:
                duration = profile.duration_seconds or serving.SESSION_DEFAULT_SECONDS
                session = await self.mfa_session(
                    keys, serial, code, duration=duration, region=profile.region
                )
                self.cache.put(f"profile:{profile.name}", session)
            return session

    async def mfa_session(
        self,
        keys: LongTermCredentials,
        serial: str,
        code: str,
        *,
        duration: int,
        region: str | None,
    ) -> SessionCredentials:
        """GetSessionToken with an MFA code (a rejected code counts), its expiration checked."""
        session = await self.counting_failures(
            serial,
            self.run_io(
                lambda: self._p.sts.get_session_token(
                    keys,
                    duration_seconds=duration,
                    serial_number=serial,
                    token_code=code,
                    region=region,
                )
            ),
        )
        serving.validate_expiration(session.expiration, self._p.clock.now())
        return session

    async def counting_failures(
        self, serial: str, call: Awaitable[SessionCredentials]
    ) -> SessionCredentials:
        """Await an MFA-bearing STS call; a rejected code counts towards the rate limit."""
        try:
            session = await call
        except MfaRejected:
            self.ledger.record_failure(serial, self._p.clock.now())
            await self.save_ledger()
            raise
        self.ledger.record_success(serial)
        await self.save_ledger()
        return session

    async def _assume_role(
        self,
        profile: Profile,
        creds: LongTermCredentials | SessionCredentials,
        serial: str | None,
        code: str | None,
    ) -> SessionCredentials:
        assert profile.role_arn is not None  # noqa: S101 - guaranteed by settings validation
        role_arn = profile.role_arn
        duration = profile.duration_seconds or serving.ROLE_DEFAULT_SECONDS
        try:
            session = await self.run_io(
                lambda: self._p.sts.assume_role(
                    creds,
                    role_arn=role_arn,
                    role_session_name=profile.role_session_name or f"vaultd-{profile.name}",
                    duration_seconds=duration,
                    external_id=profile.external_id,
                    serial_number=serial,
                    token_code=code,
                    region=profile.region,
                )
            )
        except StsExpiredToken:
            if profile.source_profile is not None:
                self.cache.purge(f"profile:{profile.source_profile}")
            raise
        serving.validate_expiration(session.expiration, self._p.clock.now())
        self.cache.put(f"profile:{profile.name}", session)
        return session

    async def _authorize(self, action: str, profile: Profile, requester: Requester) -> None:
        iam_action = "vaultd:Exec" if action == "exec" else "vaultd:GetCredentials"
        await self.authorize(iam_action, profile, requester)

    async def authorize(
        self,
        iam_action: str,
        profile: Profile,
        requester: Requester,
        *,
        mfa_present: bool = False,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> None:
        """Evaluate the access policy; a denial is audited and raised before any prompt.

        ``mfa_present`` sets ``vaultd:MultiFactorAuthPresent`` for actions checked after the
        user passed MFA (rotation, break-glass); ``extra`` adds the action's own condition keys.
        """
        context = policy_context(profile.name, requester, self._p.clock.now())
        if mfa_present:
            context["vaultd:MultiFactorAuthPresent"] = True
        context.update(extra or {})
        # A requester whose executable could not be read is refused by any statement that
        # names executables (fail closed, docs/threat-model.md T33).
        unknown = frozenset() if requester.executable else frozenset({"vaultd:ClientExecutable"})
        try:
            enforce(self._policy, iam_action, f"profile/{profile.name}", context, unknown=unknown)
        except PolicyDenied as exc:
            await self.audit_event(
                "policy_refused",
                profile=profile.name,
                action=iam_action,
                client=requester_fields(requester),
                outcome=exc.code,
                reason=str(exc.statement),
            )
            raise

    def _source_of(self, profile: Profile) -> tuple[str, str]:
        """The stored key pair name and MFA serial behind ``profile``."""
        source = profile
        if profile.credentials is None and profile.source_profile is not None:
            source = self._profiles[profile.source_profile]
        assert source.credentials is not None  # noqa: S101 - settings validation
        serial = profile.mfa_serial or source.mfa_serial
        assert serial is not None  # noqa: S101 - settings validation
        return source.credentials, serial

    async def _obtain_code(
        self,
        profile: Profile,
        serial: str,
        requester: Requester,
        action: str,
        on_event: EventSink | None,
        interactive: bool,
    ) -> str:
        """Open an approval and get a fresh code: typed by the user, or generated from the
        sealed seed after a verified FIDO2 touch.  Either way the code is marked used.

        A typed-code approval nobody can be asked for is refused before it opens
        (``ApprovalUnavailable``); a touch approval always opens: the key is the prompter.
        """
        method = await self._approval_method(profile, serial)
        if method is ApprovalMethod.CODE and not self._deliverable(interactive):
            raise ApprovalUnavailable(
                f"profile {profile.name!r} needs a typed MFA code, but {NOBODY_TO_ASK}"
            )
        approval = self.approvals.open(profile.name, action, requester, method)
        if method is ApprovalMethod.CODE and not interactive:
            self._approver_only.add(approval.id)  # before any await: an approver may leave
        try:
            return await self._answer(approval, serial, on_event, interactive)
        finally:
            self._approver_only.discard(approval.id)

    async def _answer(
        self, approval: Approval, serial: str, on_event: EventSink | None, interactive: bool
    ) -> str:
        """Announce an opened approval, then wait for its code (typed, or after a touch)."""
        profile, method = approval.profile, approval.methods
        await self.audit_event(
            "approval_opened",
            profile=profile,
            approval=approval.id,
            methods=method.value,
            client=requester_fields(approval.requester),
        )
        if on_event is not None and method is not ApprovalMethod.TOUCH:
            await on_event(APPROVAL_PENDING, approval)
        try:
            if method is ApprovalMethod.CODE:
                code = await self._typed_code(approval, serial)
            else:
                code = await self._touch_or_typed_code(approval, serial, on_event, interactive)
        except VaultError as exc:
            await self.audit_event(
                "approval_failed", profile=profile, approval=approval.id, outcome=exc.code
            )
            raise
        await self.audit_event("approval_granted", profile=profile, approval=approval.id)
        return code

    def _deliverable(self, interactive: bool) -> bool:
        return code_approval_deliverable(
            interactive=interactive, approvers=self._approvers(), out_of_band=self._out_of_band
        )

    def approver_detached(self) -> list[Approval]:
        """Call when an approver (a `vaultd tui` events subscriber) went away.

        With no approver left and ``out_of_band`` off, every pending typed-code approval whose
        requester has no terminal of its own ends now, and all its waiters get
        ``ApprovalUnavailable`` (docs/threat-model.md F14).  Nobody denied, so no deny cooldown
        starts: the next request from a terminal, or with a TUI open, is asked afresh.
        Returns the approvals ended.
        """
        if self._deliverable(False):
            return []
        ended = []
        for approval_id in sorted(self._approver_only):
            with contextlib.suppress(VaultError):
                ended.append(self.approvals.withdraw(approval_id))
        return ended

    async def _approval_method(self, profile: Profile, serial: str) -> ApprovalMethod:
        """The method this approval can use: touch needs a gate and a stored seed."""
        if profile.approval is ApprovalMethod.CODE:
            return ApprovalMethod.CODE
        gate, codes = self._p.gate, self._p.codes
        has_seed = codes is not None and await self.run_io(lambda: codes.has_seed(serial))
        if gate is not None and has_seed:
            return profile.approval
        if profile.approval is ApprovalMethod.TOUCH_OR_CODE:
            return ApprovalMethod.CODE
        raise ApprovalUnavailable(
            f"profile {profile.name!r} is approved by touch, but no seed is stored for "
            f"{serial}: store it with `vaultd mfa add-totp {serial}` (or set approval = "
            '"code")'
        )

    async def _typed_code(self, approval: Approval, serial: str) -> str:
        resolution = await self.approvals.wait(approval.id)
        return await self._accept_typed(resolution.code, serial)

    async def _accept_typed(self, code: str | None, serial: str) -> str:
        if code is None:
            raise CodeMalformed("the approval carried no MFA code")
        self.ledger.check_and_mark_typed(serial, code, step_for(self._p.clock.now()))
        await self.save_ledger()
        return code

    # Long: one race of touch against typed code; both futures and the cancel share one finally.
    async def _touch_or_typed_code(
        self, approval: Approval, serial: str, on_event: EventSink | None, interactive: bool
    ) -> str:
        """Run the touch gate and (for touch-or-code) wait for a typed code; first one wins.

        Once the touch has failed, touch-or-code is a typed-code approval: it ends with
        ``ApprovalUnavailable`` at once when nobody can be asked for the code.
        """
        gate, codes = self._p.gate, self._p.codes
        assert gate is not None and codes is not None  # noqa: S101 - _approval_method checked
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        timeout = max(0.0, approval.deadline_mono - self._p.clock.monotonic())

        def prompted() -> None:  # called on the gate's thread once the device waits
            loop.call_soon_threadsafe(self._touch_prompted, approval, on_event)

        touch = asyncio.ensure_future(
            self.run_io(
                lambda: gate.approve(
                    approval.id,
                    require_uv=False,
                    pin=None,
                    on_prompt=prompted,
                    cancel=cancel,
                    timeout=timeout,
                )
            )
        )
        typed = asyncio.ensure_future(self.approvals.wait(approval.id))
        try:
            pending = {touch, typed}
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if typed in done:
                    cancel.set()
                    return await self._accept_typed(typed.result().code, serial)
                if touch.exception() is None:
                    break
                failure = touch.exception()
                assert failure is not None  # noqa: S101 - checked just above
                if approval.methods is ApprovalMethod.TOUCH:
                    with contextlib.suppress(VaultError):
                        self.approvals.deny(approval.id)
                    raise failure
                if not self._deliverable(interactive):
                    with contextlib.suppress(VaultError):
                        self.approvals.withdraw(approval.id)
                    continue
                if not interactive:
                    self._approver_only.add(approval.id)
                self._p.notify("touch_failed", approval.profile, "warning", "type the code instead")
        finally:
            cancel.set()
            self.touch_waiting.discard(approval.id)
            if not typed.done():
                typed.cancel()
            for task in (touch, typed):
                task.add_done_callback(_consume)
        with contextlib.suppress(VaultError):
            self.approvals.approve(approval.id, code=None)
        code, wait = await self.run_io(lambda: codes.code_for(serial))
        await self.save_ledger()
        if wait > 0:
            await asyncio.sleep(wait)
        return code

    def _touch_prompted(self, approval: Approval, on_event: EventSink | None) -> None:
        self.touch_waiting.add(approval.id)
        self._p.notify(
            "touch_needed",
            approval.profile,
            "info",
            f"touch your security key to approve {approval.profile}",
        )
        if on_event is not None:
            task = asyncio.ensure_future(on_event(TOUCH_NEEDED, approval))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # --- approvals, lock, status ---------------------------------------------------------

    async def approve(self, approval_id: str, code: str | None) -> None:
        """Answer a pending approval with a code."""
        self.approvals.approve(approval_id, code=code)

    async def deny(self, approval_id: str) -> None:
        """Deny a pending approval (final for every waiter; starts a cooldown)."""
        approval = self.approvals.deny(approval_id)
        await self.audit_event("approval_denied", profile=approval.profile, approval=approval.id)

    def on_wipe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the vault locks or seals (grants held elsewhere)."""
        self._wipers.append(callback)

    def _wipe(self) -> None:
        self.cache.wipe()
        self._approved_scopes.clear()
        for wipe in self._wipers:
            wipe()

    async def lock(self, *, seal: bool) -> None:
        """Drop every cached session and pending approval; with ``seal``, also log out."""
        self._wipe()
        self.approvals.cancel_all()
        self.flight.clear()
        if seal:
            self.sealed = True
        await self.audit_event("lock", outcome="sealed" if seal else "locked")

    async def clear(self, profile_name: str) -> None:
        """Drop one profile's cached session and pending approvals, and forget its deny
        cooldown (`vaultd clear`); sessions of other profiles, even roles chained from it,
        stay."""
        if profile_name not in self._profiles:
            raise UnknownProfile(f"no profile {profile_name!r} in the vaultd config")
        key = f"profile:{profile_name}"
        self.cache.purge(key)
        self.flight.forget(key)
        self.approvals.cancel_all(profile_name)
        await self.audit_event("clear", profile=profile_name, outcome="cleared")

    def seal(self) -> None:
        """The token went away: wipe everything, refuse requests until unlocked."""
        self.sealed = True
        self._wipe()
        self.approvals.cancel_all()
        self.flight.clear()

    def status(self) -> dict[str, object]:
        """Profiles, cached sessions and pending approvals (no secrets)."""
        now = self._p.clock.now()
        sessions = {e.key.removeprefix("profile:"): e for e in self.cache.entries()}
        profiles = []
        for name, p in sorted(self._profiles.items()):
            entry = sessions.get(name)
            profiles.append(
                {
                    "name": name,
                    "kind": p.kind.value,
                    "approval": p.approval.value,
                    "expires_at": entry.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
                    if entry
                    else None,
                    "seconds_left": int(entry.seconds_left) if entry else None,
                    "target_account": p.target_account,
                    "root_task": p.root_task,
                }
            )
        return {
            "sealed": self.sealed,
            "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "profiles": profiles,
            "approvals": [a.as_dict() for a in self.approvals.pending()],
            "touch_needed": sorted(self.touch_waiting),
        }

    # --- plumbing ------------------------------------------------------------------------

    async def audit_event(self, event: str, **fields: object) -> None:
        """Write one audit record, or raise ``AuditError`` if that takes over the deadline."""
        await self._p.audit.record_async(event, fields, timeout=self._audit_timeout)

    async def save_ledger(self) -> None:
        """Persist the OTP ledger (used codes, failure counters)."""
        data = self.ledger.to_dict()
        await self.run_io(lambda: self._p.state.save_ledger(data))

    async def run_token(self, fn: Callable[[], T]) -> T:
        """Run a token call on the token thread; a lost token seals the vault."""
        try:
            return await self._p.run_token(fn)
        except Sealed:
            self.seal()
            raise

    async def run_io(self, fn: Callable[[], T]) -> T:
        """Run blocking I/O (STS, audit, FIDO2) off the event loop."""
        return await self._p.run_io(fn)
