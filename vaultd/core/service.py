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
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from vaultd.core import serving
from vaultd.core.access_policy import ContextValue, Policy, default_policy, enforce
from vaultd.core.approvals import (
    NOBODY_TO_ASK,
    Approval,
    ApprovalBook,
    Resolution,
    code_approval_deliverable,
    prompt_dialog,
)
from vaultd.core.cache import DEFAULT_IDLE_SECONDS, SessionCache
from vaultd.core.joins import JoinBoard, Joiner
from vaultd.core.model import (
    ApprovalMethod,
    ClientDisplay,
    CodePrompt,
    LongTermCredentials,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
    mask_key,
)
from vaultd.core.otp_ledger import OtpLedger, step_for
from vaultd.core.ports import Clock, CodePrompter, CodeSource, Gate, Notifier, StsClient
from vaultd.core.singleflight import SingleFlight
from vaultd.errors import (
    ApprovalUnavailable,
    AuditError,
    BadRequest,
    BreakGlassOnly,
    ClientGone,
    CodeMalformed,
    ConfigError,
    DeniedCooldown,
    MfaRejected,
    PolicyDenied,
    Sealed,
    StsExpiredToken,
    UnknownProfile,
    VaultError,
)

T = TypeVar("T")
Reach = tuple[bool, ClientDisplay | None]
"""How a client can be asked: it prompts on its own terminal; the display it runs on."""
APPROVAL_PENDING = "approval_pending"
TOUCH_NEEDED = "touch_needed"
NEXT_CODE_WAIT = "next_code_wait"
CALLING_STS = "calling_sts"
TOKEN_TOUCH = "token_touch"  # noqa: S105 - an event name
TOKEN_TOUCH_LATE_SECONDS = 0.5
"""How long a record open may take before the vault key is taken to wait for a touch."""
ALSO_WAITING = "also_waiting"
SEALED_SESSION_ENDED = "the token session ended (token removed or logged out): run `vaultd unlock`"
SEALED_BY_LOCK = "sealed by `vaultd lock --seal` (or the daemon's own seal): run `vaultd unlock`"


@dataclass(frozen=True, slots=True)
class TokenWait:
    """A request whose record open waits for a touch on the vault key (no approval yet)."""

    profile: str
    id: str = ""


class EventSink(Protocol):
    """Tells the waiting client how its request goes: ``kind`` with a ``message`` for the
    progress events (``next_code_wait``, ``calling_sts``, ``token_touch``)."""

    def __call__(
        self, kind: str, approval: Approval | TokenWait, message: str = "", /
    ) -> Awaitable[None]: ...


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished background task's exception so it is not reported as lost."""
    if not task.cancelled():
        task.exception()


def _profile_of(flight_key: object) -> str:
    """The profile name in a flight key (``profile:NAME``, ``|SCOPE`` with session scopes)."""
    return str(flight_key).removeprefix("profile:").split("|", 1)[0]


def _named_cooldown(exc: DeniedCooldown) -> DeniedCooldown:
    """``exc`` saying which profile cools down (a chained role's may be its source's) and how
    to end it."""
    name = _profile_of(exc.key)
    return DeniedCooldown(
        f"a request for profile {name!r} was just denied or timed out: retry after "
        f"{math.ceil(exc.retry_after)} s, or end the cooldown with "
        f"`vaultd approvals --clear-cooldown {name}`",
        retry_after=exc.retry_after,
        key=exc.key,
    )


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
    prompter: CodePrompter | None = None
    touch_possible: Callable[[], bool] = lambda: False
    """Whether a record open may wait for a touch on the vault key (a PIV card's key)."""


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
        prompt: str = "terminal",
    ) -> None:
        """``approvers()`` counts the attached approvers (TUIs) now; ``out_of_band`` lets
        :meth:`approve` answer code approvals that no terminal or approver shows; ``prompt``
        (setting ``approval.prompt``) picks the dialog run for a client with a display but no
        terminal (:func:`~vaultd.core.approvals.prompt_dialog`, through ``ports.prompter``);
        ``session_scopes`` (setting ``approval.scope = "session"``) releases a cached session
        only to the scopes (login sessions) an approval was made in."""
        self._profiles = dict(profiles)
        self._p = ports
        self.ledger = ledger
        self.cache = SessionCache(ports.clock, floor=serve_floor, idle_seconds=cache_idle_seconds)
        self.approvals = ApprovalBook(ports.clock, timeout=approval_timeout)
        self.flight = SingleFlight(ports.clock, cooldown_seconds=cooldown_seconds)
        self.joins = JoinBoard()
        self.sealed = False
        self.sealed_reason = SEALED_SESSION_ENDED  # why, while sealed (shown by `vaultd status`)
        self.touch_waiting: set[str] = set()
        self.progress: dict[str, dict[str, str]] = {}
        self._wipers: list[Callable[[], None]] = []
        self._serial_locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._audit_timeout = audit_timeout
        self._policy = access_policy or default_policy()
        self._out_of_band = out_of_band
        self._approvers = approvers
        self._approver_only: set[str] = set()
        self._session_scopes = session_scopes
        self._prompt = prompt if ports.prompter is not None else "terminal"
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
        display: ClientDisplay | None = None,
        duration: int | None = None,
    ) -> SessionCredentials:
        """A servable session for ``profile_name``, asking the user when a code is needed.

        ``duration`` asks for a session of that many seconds instead of the profile's
        (`vaultd exec --duration`); it is cached apart from the profile's own session.

        ``kept_for`` names the daemon's own use of a session that never leaves it (``key_rotation``,
        ``federation``): it is audited as ``session_used`` with that purpose, not as a release.
        ``scope`` is the requester's approval scope (its login session): with session scopes
        on, a cached session is released only to a scope an approval was made in; any other
        scope is asked again (a fresh MFA session), docs/threat-model.md T31.

        ``alive`` tells whether the client still waits: a session made for a client that went
        away fills the cache but is not recorded as a release (nothing left the daemon).
        ``interactive``: the client shows the approval to its user (a terminal prompt), so a
        typed-code approval can be answered even with no TUI attached (see
        :meth:`approver_detached`).  ``display``: the graphical session of a client with no
        terminal, where a prompt dialog may ask (setting ``approval.prompt``).

        Every refusal is audited (best effort: when the audit log itself fails, the request is
        refused all the same).
        """
        try:
            return await self._credentials(
                profile_name,
                requester,
                action,
                on_event,
                alive,
                (interactive, display),
                kept_for,
                scope,
                duration,
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
        reach: Reach,
        kept_for: str | None,
        scope: str,
        duration: int | None = None,
    ) -> SessionCredentials:
        if self.sealed:
            raise Sealed("the vault is sealed: run `vaultd unlock`")
        profile = self._profiles.get(profile_name)
        if profile is None:
            raise UnknownProfile(
                f"no profile {profile_name!r} in the vaultd config: add [profiles.{profile_name}]"
            )
        if duration is not None:
            profile = self._with_duration(profile, duration)
        if profile.kind is ProfileKind.ASSUME_ROOT:
            raise BreakGlassOnly(
                f"profile {profile.name!r} is an AssumeRoot profile: its root sessions last at "
                "most 900 s, under the 15-minute floor the AWS SDKs need to use credentials "
                f"from {action}; run `vaultd break-glass {profile.name} --reason TEXT -- CMD`"
            )
        await self._authorize(action, profile, requester)
        key = self._session_key(profile)
        creds = self._cached(key, scope)
        if creds is None:
            # A request that must wait (approval, STS) is audited when it starts; a cache
            # hit is one record: the release below carries the request's facts.
            await self.audit_event(
                "request", profile=profile.name, action=action, client=requester_fields(requester)
            )
            try:
                creds = await self._ride(
                    self._flight_key(key, scope),
                    Joiner(requester, on_event if reach[0] else None),
                    lambda: self._fresh_session(profile, requester, action, on_event, reach, scope),
                )
            except DeniedCooldown as exc:
                raise _named_cooldown(exc) from None
            self._approved_scopes.setdefault(key, set()).add(scope)
        if alive is not None and not alive():
            raise ClientGone("the client went away before its credentials were ready")
        kept = {} if kept_for is None else {"purpose": kept_for}
        event = "release" if kept_for is None else "session_used"
        await self._audit_session(event, profile, action, requester, creds, **kept)
        return creds

    async def _ride(
        self, key: str, joiner: Joiner, fn: Callable[[], Awaitable[SessionCredentials]]
    ) -> SessionCredentials:
        """Run flight ``key``, or join the one running: a joiner is listed on its approval,
        audited and shown to the terminals already waiting (docs/threat-model.md T31).

        One that joins after the approval was answered (STS still running) is not listed: it
        gets what the cache would give its scope a moment later."""
        if self.flight.waiting(key):
            approval_id = self.joins.approval_for(key, joiner)
            if approval_id is not None:
                await self._announce_join(approval_id, joiner)
        with self.joins.flight(key):
            try:
                return await self.flight.run(key, fn)
            finally:
                if not self.flight.waiting(key):
                    self.joins.ended(key)

    async def _announce_join(self, approval_id: str, joiner: Joiner) -> None:
        """List ``joiner`` on the pending approval, audit it, and tell the waiting terminals
        (an ``also_waiting`` event: the approval with the joiner as its requester)."""
        approval = self.approvals.join(approval_id, joiner.requester)
        if approval is None:
            return
        await self.audit_event(
            "approval_joined",
            profile=approval.profile,
            approval=approval.id,
            client=requester_fields(joiner.requester),
        )
        notice = replace(approval, requester=joiner.requester)
        for sink in self.joins.sinks(approval_id):
            await sink(ALSO_WAITING, notice)
        self.joins.add_sink(approval_id, joiner.sink)

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
        keys = await self._key_pair(credentials_name, profile.name, on_event)
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
        reach: Reach,
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
                    base = await self._ride(
                        self._flight_key(source_key, scope),
                        Joiner(requester, on_event if reach[0] else None),
                        lambda: self._mfa_call(source, requester, action, on_event, profile, reach),
                    )
                    self._approved_scopes.setdefault(source_key, set()).add(scope)
                return await self._assume_role(profile, base, None, None)
        return await self._mfa_call(profile, requester, action, on_event, profile, reach)

    def _with_duration(self, profile: Profile, seconds: int) -> Profile:
        """``profile`` asking STS for ``seconds``; ``BadRequest`` outside what AWS allows for
        its kind, or too short to be served at all (the serving floor)."""
        try:
            serving.validate_duration(profile.kind, seconds, chained=False, field="duration")
        except ConfigError as exc:
            raise BadRequest(f"field duration: {exc.message}") from None
        if seconds <= self.cache.floor:
            raise BadRequest(
                f"field duration: {seconds} s is not more than the {self.cache.floor} s a session "
                "must have left to be served; ask for more"
            )
        return replace(profile, duration_seconds=seconds)

    def _session_key(self, profile: Profile) -> str:
        """The cache key of ``profile``'s session; one of another length (`vaultd exec
        --duration`) is cached apart, so it never answers the profile's own requests."""
        configured = self._profiles.get(profile.name)
        own = configured is None or configured.duration_seconds == profile.duration_seconds
        return f"profile:{profile.name}" + ("" if own else f"@{profile.duration_seconds}")

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
        reach: Reach,
    ) -> SessionCredentials:
        """GetSessionToken (or a direct AssumeRole) with the long-lived keys and a fresh code.

        One MFA ceremony at a time per MFA serial (docs/threat-model.md T10): profiles sharing a
        device queue behind each other instead of prompting at once.
        """
        creds_name, serial = self._source_of(profile)
        lock = self._serial_locks.setdefault(serial, asyncio.Lock())
        async with lock, self._progress_until_done(asked_for.name):
            keys = await self._key_pair(creds_name, asked_for.name, on_event)
            if keys.root:
                raise BreakGlassOnly(
                    f"{creds_name!r} holds root credentials: they are break-glass only and never "
                    "served to credential_process; use `vaultd break-glass`"
                )
            self.ledger.check_allowed(serial, self._p.clock.now())
            code = await self._obtain_code(asked_for, serial, requester, action, on_event, reach)
            if profile.kind is ProfileKind.ROLE:
                session = await self.counting_failures(
                    serial, self._assume_role(profile, keys, serial, code)
                )
            else:
                duration = profile.duration_seconds or serving.SESSION_DEFAULT_SECONDS
                session = await self.mfa_session(
                    keys, serial, code, duration=duration, region=profile.region
                )
                self.cache.put(self._session_key(profile), session)
            return session

    async def _key_pair(
        self, name: str, profile: str, on_event: EventSink | None
    ) -> LongTermCredentials:
        """Open the stored pair ``name``; when the vault key may need a touch and has not
        answered within ``TOKEN_TOUCH_LATE_SECONDS``, say "touch your YubiKey" (ykcs11 just
        blocks meanwhile) to the requester, the TUI (status) and the notifier, then wait on."""
        opening = asyncio.ensure_future(self.run_token(lambda: self._p.secrets.key_pair(name)))
        try:
            done, _ = await asyncio.wait({opening}, timeout=TOKEN_TOUCH_LATE_SECONDS)
            if not done and self._p.touch_possible():
                await self._token_touch_asked(profile, on_event)
            return await opening
        finally:
            opening.cancel()  # only when this request itself was cancelled
            self.progress.pop(profile, None)

    async def _token_touch_asked(self, profile: str, on_event: EventSink | None) -> None:
        message = f"touch your YubiKey to open the keys of profile {profile}"
        self.progress[profile] = {
            "id": "", "profile": profile, "state": TOKEN_TOUCH, "message": message,
        }  # fmt: skip
        self._p.notify("touch_needed", profile, "info", message)
        if on_event is not None:
            await on_event(TOKEN_TOUCH, TokenWait(profile), message)

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
        self.cache.put(self._session_key(profile), session)
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
        reach: Reach,
    ) -> str:
        """Open an approval and get a fresh code: typed by the user, or generated from the
        sealed seed after a verified FIDO2 touch.  Either way the code is marked used.

        A typed-code approval nobody can be asked for is refused before it opens
        (``ApprovalUnavailable``); a touch approval always opens: the key is the prompter.
        A client with a display but no terminal may be asked by a dialog the daemon runs.
        """
        interactive, display = reach
        method = await self._approval_method(profile, serial)
        dialog = None
        if method is ApprovalMethod.CODE:
            dialog = prompt_dialog(
                self._prompt, interactive=interactive, approvers=self._approvers(), display=display
            )
            if not self._deliverable(interactive or dialog is not None):
                raise ApprovalUnavailable(
                    f"profile {profile.name!r} needs a typed MFA code, but {NOBODY_TO_ASK}"
                )
        approval = self.approvals.open(profile.name, action, requester, method, mfa_serial=serial)
        if method is ApprovalMethod.CODE and not interactive and dialog is None:
            self._approver_only.add(approval.id)  # before any await: an approver may leave
        prompt = None
        if dialog is not None and display is not None:
            timeout = max(0.0, approval.deadline_mono - self._p.clock.monotonic())
            prompt = CodePrompt(
                dialog, approval.id, profile.name, serial, requester, display, timeout
            )
        try:
            return await self._answer(approval, serial, on_event, interactive, prompt)
        finally:
            self._approver_only.discard(approval.id)
            self.joins.closed(approval.id)

    async def _answer(
        self,
        approval: Approval,
        serial: str,
        on_event: EventSink | None,
        interactive: bool,
        prompt: CodePrompt | None,
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
        for joiner in self.joins.opened(approval.id, on_event if interactive else None):
            await self._announce_join(approval.id, joiner)
        try:
            if method is ApprovalMethod.CODE:
                code = await self._typed_code(approval, serial, prompt)
            else:
                code = await self._touch_or_typed_code(approval, serial, on_event, interactive)
        except VaultError as exc:
            await self.audit_event(
                "approval_failed", profile=profile, approval=approval.id, outcome=exc.code
            )
            raise
        await self.audit_event("approval_granted", profile=profile, approval=approval.id)
        await self._progress(approval, CALLING_STS, "calling STS", on_event, interactive)
        return code

    @contextlib.asynccontextmanager
    async def _progress_until_done(self, profile: str) -> AsyncIterator[None]:
        """Drop ``profile``'s progress line when its request ends, whatever the outcome."""
        try:
            yield
        finally:
            self.progress.pop(profile, None)

    async def _progress(
        self,
        approval: Approval,
        kind: str,
        message: str,
        on_event: EventSink | None,
        interactive: bool,
    ) -> None:
        """Say where an answered request stands: to the requester's terminal, else to the
        notifier (a program with no terminal), and in `vaultd approvals` and status."""
        self.progress[approval.profile] = {
            "id": approval.id, "profile": approval.profile, "state": kind, "message": message,
        }  # fmt: skip
        if not interactive:
            self._p.notify(kind, approval.profile, "info", message)
        if on_event is not None:
            await on_event(kind, approval, message)

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

    async def _typed_code(self, approval: Approval, serial: str, prompt: CodePrompt | None) -> str:
        waiting = asyncio.ensure_future(self.approvals.wait(approval.id))
        try:
            if prompt is not None:
                await self._run_dialog(prompt, waiting)
            resolution = await waiting
        finally:
            waiting.cancel()
            waiting.add_done_callback(_consume)
        return await self._accept_typed(resolution.code, serial)

    async def _run_dialog(self, prompt: CodePrompt, waiting: asyncio.Future[Resolution]) -> None:
        """Run the prompt dialog until it or the approval (answered elsewhere, timed out)
        ends.  Its code approves, its cancel denies; when it fails, or answers a malformed
        code, the approval is withdrawn (nothing released) and its error raised."""
        prompter = self._p.prompter
        assert prompter is not None  # noqa: S101 - no prompt is built without one
        dialog = asyncio.ensure_future(prompter.ask_code(prompt))
        try:
            both: set[asyncio.Future[Any]] = {dialog, waiting}
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                return
            answer = dialog.result()
            if answer is None:
                await self.deny(prompt.approval_id)
            else:
                self.approvals.approve(prompt.approval_id, code=answer)
        except VaultError:
            with contextlib.suppress(VaultError):
                self.approvals.withdraw(prompt.approval_id)
            raise
        finally:
            dialog.cancel()
            dialog.add_done_callback(_consume)

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
            message = (
                f"touch received, waiting {math.ceil(wait)} s for the next code "
                "(AWS accepts each code once)"
            )
            await self._progress(approval, NEXT_CODE_WAIT, message, on_event, interactive)
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

    async def approve(
        self, approval_id: str, code: str | None, *, by: Mapping[str, object] | None = None
    ) -> None:
        """Answer a pending approval with a code; ``by`` (who answered, through which channel)
        goes to the audit log."""
        approval = self.approvals.approve(approval_id, code=code)
        if by is not None:
            await self.audit_event(
                "approval_answered", profile=approval.profile, approval=approval.id, by=dict(by)
            )

    async def deny(self, approval_id: str, *, by: Mapping[str, object] | None = None) -> None:
        """Deny a pending approval (final for every waiter; starts a cooldown)."""
        approval = self.approvals.deny(approval_id)
        who = {} if by is None else {"by": dict(by)}
        await self.audit_event(
            "approval_denied", profile=approval.profile, approval=approval.id, **who
        )

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
            self.sealed, self.sealed_reason = True, SEALED_BY_LOCK
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

    async def reload(
        self, profiles: Mapping[str, Profile], policy: Policy, *, out_of_band: bool
    ) -> dict[str, list[str]]:
        """Take a reloaded config (SIGHUP): the sessions, approvals and cooldowns of profiles
        that were removed or changed (or whose source profile was) are dropped; every other
        session stays.  Returns the profile names ``added``, ``removed`` and ``changed``."""
        old = self._profiles
        changed = {n for n, p in profiles.items() if n in old and old[n] != p}
        removed = set(old) - set(profiles)
        dropped = changed | removed
        dropped |= {n for n, p in old.items() if p.source_profile in dropped}
        for name in dropped:
            self.cache.purge(f"profile:{name}")
            self._approved_scopes.pop(f"profile:{name}", None)
            self._forget_cooldowns(name)  # before the cancel: it starts no cooldown
            self.approvals.cancel_all(name)
        self._profiles = dict(profiles)
        self._policy = policy
        self._out_of_band = out_of_band
        summary = {
            "added": sorted(set(profiles) - set(old)),
            "removed": sorted(removed),
            "changed": sorted(dropped - removed),
        }
        await self.audit_event("reload", **summary)
        return summary

    def cooldowns(self) -> dict[str, int]:
        """The profiles in a deny cooldown, with the whole seconds left."""
        left: dict[str, int] = {}
        for key, seconds in self.flight.cooldowns().items():
            name = _profile_of(key)
            left[name] = max(left.get(name, 0), math.ceil(seconds))
        return left

    async def clear_cooldown(self, profile_name: str) -> None:
        """End ``profile_name``'s deny cooldown now (`vaultd approvals --clear-cooldown`)."""
        if profile_name not in self._profiles:
            raise UnknownProfile(f"no profile {profile_name!r} in the vaultd config")
        self._forget_cooldowns(profile_name)
        await self.audit_event("cooldown_cleared", profile=profile_name)

    def _forget_cooldowns(self, profile_name: str) -> None:
        """End ``profile_name``'s cooldowns (in every scope), and the one its running request
        would start."""
        self.flight.forget(f"profile:{profile_name}")
        for key in self.flight.cooldowns():
            if _profile_of(key) == profile_name:
                self.flight.forget(key)

    def seal(self, reason: str = SEALED_SESSION_ENDED) -> None:
        """The token went away (or never logged in: ``reason`` says): wipe everything, refuse
        requests until unlocked."""
        self.sealed, self.sealed_reason = True, reason
        self._wipe()
        self.approvals.cancel_all()
        self.flight.clear()

    def status(self, root_records: frozenset[str] = frozenset()) -> dict[str, object]:
        """Profiles, cached sessions and pending approvals (no secrets).

        ``root_records`` names the stored root key pairs: a profile is ``root`` (offered for
        break-glass) when it is an AssumeRoot profile or its credentials are one of them.
        """
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
                    "root": p.kind is ProfileKind.ASSUME_ROOT or p.credentials in root_records,
                }
            )
        return {
            "sealed": self.sealed,
            "sealed_reason": self.sealed_reason if self.sealed else None,
            "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "profiles": profiles,
            "approvals": [a.as_dict() for a in self.approvals.pending()],
            "touch_needed": sorted(self.touch_waiting),
            "in_progress": self.in_progress(),
            "cooldowns": self.cooldowns(),
        }

    def in_progress(self) -> list[dict[str, str]]:
        """Answered approvals still on their way to a session, by profile name."""
        return [self.progress[name] for name in sorted(self.progress)]

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
