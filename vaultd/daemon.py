"""`vaultd serve`: wires settings, token, store, STS, audit and the socket into a running daemon.

Start-up order: harden the process (no core dumps, not dumpable), check the data dir, open
the audit log, log in to the token (or start sealed when ``pin_source = "prompt"``), then
bind the socket.  SIGTERM/SIGINT stop; SIGHUP drops every cached session and approval.
All token calls run on one dedicated thread (SoftHSM2 is not safe across sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from vaultd import app
from vaultd.aws.credential_process import render
from vaultd.core.approvals import Approval
from vaultd.core.breakglass import BreakGlassDesk
from vaultd.core.model import (
    LongTermCredentials,
    Profile,
    ProfileKind,
    RecordKind,
    mask_key,
)
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.records import decode_key_pair, encode_key_pair
from vaultd.core.service import EventSink, Ports, VaultService
from vaultd.errors import (
    ApprovalUnavailable,
    AuditError,
    BadRequest,
    ConfigError,
    HsmPinFinalTry,
    HsmPinIncorrect,
    HsmPinLocked,
    InternalError,
    RateLimited,
    RecordNotFound,
    ReplySchemaViolation,
    Sealed,
)
from vaultd.ipc.peercred import PeerCred
from vaultd.ipc.protocol import (
    ApprovalsRequest,
    ApproveRequest,
    AuditTailRequest,
    BreakGlassRequest,
    CredentialsRequest,
    DenyRequest,
    EventsRequest,
    FederationRequest,
    GrantEndRequest,
    GrantRequest,
    LockRequest,
    ReportRequest,
    Request,
    RotateRequest,
    StatusRequest,
    UnlockRequest,
    approval_pending_fields,
    credentials_reply,
)
from vaultd.ipc.replies import check_reply
from vaultd.ipc.server import Connection, IpcServer
from vaultd.mfa.plugin_codes import ChainedCodeSource
from vaultd.plugin.registry import load_plugins
from vaultd.store.policy_file import load_policy

if TYPE_CHECKING:
    from vaultd.core.ports import CodeSource, SealingKey
    from vaultd.fido2.gate import TouchGate
    from vaultd.mfa.seed_codes import SeedCodeSource
    from vaultd.settings import Settings
    from vaultd.store.audit import AuditLog
    from vaultd.store.files import SealedStore

log = logging.getLogger("vaultd.daemon")
T = TypeVar("T")

HOUSEKEEPING_INTERVAL = 1.0
UNLOCK_WINDOW = 300.0
UNLOCK_MAX_FAILURES = 5


def profiles_from(settings: Settings) -> dict[str, Profile]:
    """Domain profiles from the validated settings."""
    return {
        name: Profile(
            name=name,
            kind=ProfileKind.ROLE if p.role_arn else ProfileKind.SESSION,
            credentials=p.credentials,
            source_profile=p.source_profile,
            role_arn=p.role_arn,
            mfa_serial=p.mfa_serial,
            duration_seconds=p.duration_seconds,
            external_id=p.external_id,
            role_session_name=p.role_session_name,
            region=p.region,
            approval=p.approval,
        )
        for name, p in settings.profiles.items()
    }


def _forward(conn: Connection) -> EventSink:
    """Push the service's approval events (`approval_pending`, `touch_needed`) to a client."""

    async def send(kind: str, approval: Approval) -> None:
        fields = approval_pending_fields(
            approval.id, approval.profile, approval.requester, approval.expires_at
        )
        fields["methods"] = approval.methods.value
        await conn.send_event(kind, fields)

    return send


class TokenHolder:
    """The logged-in token (or none: sealed), the store behind it, and the audit MAC."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.token: SealingKey | None = None
        self.unbind: Callable[[bytes], bytes] | None = None

    def unseal(self, pin: bytearray, *, confirm_final_try: bool = False) -> None:
        """Log in (closing any previous session first); see ``app.open_key``."""
        self.seal()
        self.token = app.open_key(self._settings, pin, confirm_final_try=confirm_final_try)

    def abandon(self) -> None:
        """Forget a token whose call hangs (closing it would block on the same lock)."""
        self.token = None

    def seal(self) -> None:
        """Log out; every later secret access raises ``Sealed``."""
        token, self.token = self.token, None
        if token is not None:
            token.close()

    def live(self) -> SealingKey:
        if self.token is None or self.token.sealed:
            raise Sealed("the vault is sealed: run `vaultd unlock`")
        return self.token

    def key_pair(self, name: str) -> LongTermCredentials:
        """Open the stored key pair ``name`` (the ``SecretSource`` port).

        A record bound to FIDO2 authenticators (``vaultd add --bind-fido2``) also needs a
        touch: its hmac-secret output unwraps the record's data key (outside the store lock).
        """
        from vaultd.fido2.gate import is_bound

        token = self.live()
        with app.store_lock(self._settings):
            store = app.open_store(self._settings, token)
            infos = {i.name: i for i in store.list() if i.kind is RecordKind.KEY_PAIR}
            info = infos.get(name)
            if info is None:
                raise RecordNotFound(
                    f"no stored key pair {name!r}: add it with `vaultd add {name}`"
                )
            plaintext = store.get(RecordKind.KEY_PAIR, name)
        if is_bound(plaintext):
            if self.unbind is None:
                raise ApprovalUnavailable(f"{name!r} is bound to a FIDO2 authenticator")
            plaintext = self.unbind(plaintext)
        return decode_key_pair(plaintext, root=info.root)

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 inside the token (the audit log's MAC)."""
        return self.live().mac(data)

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Check an audit tag (HMAC in the token, or an ECDSA signature); ``AuditTampered``."""
        self.live().mac_verify(data, tag)

    def random(self, n: int) -> bytes:
        """Random bytes from the token (FIDO2 challenges)."""
        return self.live().random(n)

    def with_store(self, fn: Callable[[SealedStore], T]) -> T:
        """Run ``fn`` on the store under the cross-process store lock."""
        token = self.live()
        with app.store_lock(self._settings):
            return fn(app.open_store(self._settings, token))


class Daemon:
    """The running daemon: one service, one socket, one token thread."""

    def __init__(self, settings: Settings) -> None:
        from vaultd.aws.sts import Boto3StsClient
        from vaultd.store.audit import AuditLog
        from vaultd.store.state import StateFile
        from vaultd.system.clock import SystemClock

        self.settings = settings
        self.clock = SystemClock()
        self.holder = TokenHolder(settings)
        self._token_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaultd-token")
        self.audit: AuditLog = AuditLog(
            settings.audit_path,
            self._audit_mac,
            self.clock,
            max_bytes=settings.audit.max_bytes,
            mac_verify=self.holder.mac_verify,
        )
        self.state = StateFile(settings.data_dir / app.STATE_FILE)
        ledger_data = self.state.load_ledger()
        ledger = OtpLedger.from_dict(ledger_data) if ledger_data is not None else OtpLedger()
        self.plugins = load_plugins(settings.plugins.allow)
        ports = Ports(
            clock=self.clock,
            sts=Boto3StsClient(),
            secrets=self.holder,
            audit=self.audit,
            state=self.state,
            run_token=self._run_token,
            run_io=self._run_io,
            gate=self._touch_gate(),
            codes=self._code_source(ledger),
            notify=self._notify,
        )
        self.service = VaultService(
            profiles_from(settings),
            ports,
            ledger=ledger,
            approval_timeout=settings.approval.timeout_seconds,
            cooldown_seconds=settings.approval.cooldown_seconds,
            serve_floor=settings.cache.serve_floor_seconds,
            cache_idle_seconds=settings.cache.idle_seconds,
            access_policy=load_policy(settings.policy_file),
            out_of_band=settings.approval.out_of_band,
            approvers=lambda: len(self._subscribers),
        )
        self._uid = os.getuid()
        allowed = {self._uid} | ({0} if settings.ipc.allow_root else set())
        self.server = IpcServer(
            self.handle,
            socket_path=settings.socket,
            allowed_uids=frozenset(allowed),
            audit_peer_refused=self._peer_refused,
            max_connections=settings.ipc.max_connections,
            read_timeout=settings.ipc.read_timeout,
            request_timeout=settings.ipc.request_timeout,
        )
        self.breakglass = BreakGlassDesk(self.service)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unlock_failures: list[float] = []
        self._subscribers: set[Connection] = set()

    def _touch_gate(self) -> TouchGate:
        import threading

        from vaultd.core.approvals import new_approval_id
        from vaultd.fido2.devices import open_devices
        from vaultd.fido2.gate import TouchGate, load_enrolled, save_enrolled, unbind_plaintext

        holder, devices = self.holder, self.settings.fido2.devices

        def unbind(blob: bytes) -> bytes:
            return unbind_plaintext(
                blob,
                lambda salt, ids: gate.hmac_output(
                    f"unseal-{new_approval_id()}",
                    salt,
                    ids,
                    on_prompt=lambda: self._notify(
                        "touch_needed", "", "critical", "touch your key to unseal a bound key"
                    ),
                    cancel=threading.Event(),
                    timeout=self.settings.approval.timeout_seconds,
                ),
            )

        holder.unbind = unbind
        gate = TouchGate(
            lambda: open_devices(devices),
            lambda: holder.with_store(load_enrolled),
            lambda cred: holder.with_store(lambda store: save_enrolled(store, cred)),
            self.clock,
            holder,
            self.settings.fido2.rp_id,
            self.audit.record,
        )
        return gate

    def _seed_codes(self, ledger: OtpLedger) -> SeedCodeSource:
        from vaultd.mfa.seed_codes import SeedCodeSource, load_seed, seed_exists

        holder = self.holder
        return SeedCodeSource(
            lambda serial: holder.with_store(lambda store: load_seed(store, serial)),
            ledger,
            self.clock,
            seed_exists=lambda serial: holder.with_store(lambda store: seed_exists(store, serial)),
        )

    def _code_source(self, ledger: OtpLedger) -> CodeSource:
        """Sealed seeds first, then the YubiKey OATH plugin when it is allowlisted."""
        seeds = self._seed_codes(ledger)
        oath = app.oath_code_source(
            self.settings,
            self.plugins,
            ledger,
            self.clock,
            on_touch=lambda message: self._notify("touch_needed", "", "info", message),
        )
        return seeds if oath is None else ChainedCodeSource(seeds, oath)

    def _notify(self, event: str, profile: str, severity: str, message: str) -> None:
        """Hand an event to the allowlisted notifier plugins (never blocks, never raises)."""
        from vaultd.plugin.api import NotifyEvent, Severity
        from vaultd.plugin.registry import notify_all

        notifiers = self.plugins.notifiers()
        if notifiers:
            notify_all(notifiers, NotifyEvent(event, profile, Severity(severity), message))

    # --- blocking work -------------------------------------------------------------------

    def _audit_mac(self, data: bytes) -> bytes:
        # Called on an I/O thread; the token adapter serialises its own calls with a lock.
        try:
            return self.holder.mac(data)
        except Sealed:
            if self._loop is not None and not self.service.sealed:
                self._loop.call_soon_threadsafe(self.service.seal)  # token lost: wipe, seal
            raise OSError("the token is sealed, so audit records cannot be MACed") from None

    async def _run_token(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the token thread; a call that hangs past the deadline seals."""
        timeout = self.settings.pkcs11.call_timeout
        future = asyncio.get_running_loop().run_in_executor(self._token_thread, fn)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.error("a token call did not return within %.1f s: sealing", timeout)
            self.service.seal()
            self.holder.abandon()
            self._token_thread.shutdown(wait=False)
            self._token_thread = ThreadPoolExecutor(1, thread_name_prefix="vaultd-token")
            raise Sealed(
                f"the token did not answer within {timeout:g} s: the vault is sealed; check "
                "the token, restart vaultd, then `vaultd unlock`"
            ) from None

    async def _run_io(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _peer_refused(self, peer: PeerCred) -> None:
        fields = {"client": {"pid": peer.pid, "uid": peer.uid}, "outcome": "PEER_REFUSED"}
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._try_audit, "peer_refused", fields)

    def _try_audit(self, event: str, fields: Mapping[str, object]) -> None:
        try:
            self.audit.record(event, fields)
        except AuditError as exc:
            log.error("%s", exc)

    # --- requests ------------------------------------------------------------------------

    async def handle(self, request: Request, conn: Connection) -> Mapping[str, object] | bytes:
        """Serve one request; a reply that fails its declared schema is never sent (T28).

        A root peer of a daemon running as another user (``ipc.allow_root``) is audited first.
        """
        if conn.peer.uid == 0 != self._uid:
            await self.service.audit_event(
                "root_peer_admitted",
                client={"pid": conn.peer.pid, "uid": 0},
                op=request.op,
                outcome="admitted: ipc.allow_root",
            )
        reply = await self._dispatch(request, conn)
        try:
            check_reply(request.op, reply)
        except ReplySchemaViolation as exc:
            log.error("refused to send the %r reply: %s", request.op, exc)
            raise InternalError(
                "vaultd refused to send a reply that does not match its schema; see its log"
            ) from None
        return reply

    async def _dispatch(self, request: Request, conn: Connection) -> Mapping[str, object] | bytes:
        """Dispatch one decoded request to the service."""
        svc = self.service
        if isinstance(request, CredentialsRequest):
            creds = await svc.credentials(
                request.profile,
                conn.requester,
                action=request.action,
                on_event=_forward(conn),
                alive=lambda: not conn.closed,
                interactive=request.interactive,
            )
            return credentials_reply(render(creds))
        if isinstance(request, ApprovalsRequest):
            return {"approvals": [a.as_dict() for a in svc.approvals.pending()]}
        if isinstance(request, ApproveRequest):
            await svc.approve(request.id, request.code)
            return {}
        if isinstance(request, DenyRequest):
            await svc.deny(request.id)
            return {}
        if isinstance(request, StatusRequest):
            return self.status()
        if isinstance(request, LockRequest):
            profile = None if request.seal else request.profile  # a seal drops everything
            await (svc.clear(profile) if profile else self.lock(seal=request.seal))
            return {}
        if isinstance(request, UnlockRequest):
            await self.unlock(
                bytearray(request.pin.encode()), confirm_final_try=request.confirm_final_try
            )
            return {}
        if isinstance(request, EventsRequest):
            return await self._stream_events(conn)
        if isinstance(request, BreakGlassRequest):
            grant = await self.breakglass.open(
                request.profile,
                conn.requester,
                reason=request.reason,
                code=request.code,
                pin=request.pin,
            )
            return {"grant": grant.as_dict()}
        if isinstance(request, GrantRequest):
            creds = await self.breakglass.read(request.id)
            return credentials_reply(render(creds))
        if isinstance(request, GrantEndRequest):
            await self.breakglass.end(request.id)
            return {}
        if isinstance(request, FederationRequest):
            # `vaultd login` shows the pending approval to the person who ran it (stderr).
            creds = await self.service.federation_session(
                request.profile, conn.requester, on_event=_forward(conn), interactive=True
            )
            return credentials_reply(render(creds))
        if isinstance(request, AuditTailRequest):
            return {"records": await self._run_io(lambda: self._audit_tail(request.n))}
        if isinstance(request, RotateRequest):
            return await self.rotate(request.name, conn)
        if isinstance(request, ReportRequest):
            return await self._run_io(self.report)
        raise BadRequest(f"op {request.op!r} is not handled by this daemon")

    async def rotate(self, name: str, conn: Connection) -> Mapping[str, object]:
        """Rotate key pair ``name`` inside the daemon, through a fresh MFA session."""
        from vaultd.aws.iam import Boto3IamClient
        from vaultd.core.rotation import rotate_key_pair

        svc = self.service
        profile = next(
            (p for p in svc.profiles.values() if p.credentials == name and not p.role_arn), None
        )
        if profile is None:
            raise ConfigError(
                f"no session profile uses the key pair {name!r}: rotation makes its IAM calls "
                "through that profile's MFA session; add one with credentials = "
                f"{name!r} and mfa_serial"
            )

        # `vaultd rotate` shows the pending approval to the person who ran it (stderr).
        session = await svc.credentials(
            profile.name, conn.requester, on_event=_forward(conn), interactive=True
        )
        await svc.authorize("vaultd:Rotate", profile, conn.requester, mfa_present=True)

        def run(store: SealedStore) -> Mapping[str, object]:
            from vaultd.fido2.gate import is_bound

            roots = {i.name: i.root for i in store.list()}

            def load(n: str) -> LongTermCredentials:
                plaintext = store.get(RecordKind.KEY_PAIR, n)
                if is_bound(plaintext):
                    raise ConfigError(
                        f"{n!r} is bound to FIDO2 authenticators, and `vaultd rotate` does not "
                        "re-bind yet: rotate the key in IAM, then `vaultd add --replace "
                        "--bind-fido2`"
                    )
                return decode_key_pair(plaintext, root=roots[n])

            def store_new(n: str, creds: LongTermCredentials) -> None:
                store.put(
                    RecordKind.KEY_PAIR,
                    n,
                    encode_key_pair(creds),
                    masked_id=mask_key(creds.access_key_id),
                    root=creds.root,
                    replace=True,
                )

            return rotate_key_pair(
                name,
                load=load,
                store_new=store_new,
                iam=Boto3IamClient(),
                audit=self.audit,
                clock=self.clock,
                mfa_session=lambda: session,
            ).as_dict()

        result = await self._run_io(lambda: self.holder.with_store(run))
        svc.cache.wipe()  # sessions of the old key stay valid at AWS, but start afresh here
        return result

    def _audit_tail(self, n: int) -> list[dict[str, object]]:
        """The newest ``n`` audit records, newest first (records never hold secrets)."""
        from vaultd.errors import AuditTampered
        from vaultd.store.audit import parse_line, tail

        records = []
        for line in tail(self.settings.audit_path, n):
            with contextlib.suppress(AuditTampered):
                records.append(parse_line(line.rstrip(b"\n")))
        return records[::-1]

    def report(self) -> Mapping[str, object]:
        """The credential report (blocking: reads the store and the audit log)."""
        import json

        from vaultd.core.report import (
            build_report,
            last_rotated_from_audit,
            last_used_from_audit,
            to_csv,
            to_json,
        )

        records, seeds = self.holder.with_store(
            lambda store: (store.list(), set(store.names(RecordKind.TOTP_SEED)))
        )
        rows = build_report(
            records,
            last_used=last_used_from_audit(self.settings.audit_path),
            fido2=[],
            profiles=self.service.profiles,
            seeds=seeds,
            now=self.clock.now(),
            last_rotated=last_rotated_from_audit(self.settings.audit_path),
        )
        return {"rows": json.loads(to_json(rows)), "csv": to_csv(rows)}

    def status(self) -> dict[str, object]:
        """The service's status plus the daemon's own."""
        status = self.service.status()
        token = self.holder.token
        hardware = self.settings.keystore == "pkcs11" or bool(
            token is not None and not token.sealed and token.inspect().get("hardware")
        )
        status.update(
            keystore=self.settings.keystore,
            hardware=hardware,
            grants=self.breakglass.active(),
            token_label=self.settings.pkcs11.token_label,
            socket=str(self.settings.socket),
            pid=os.getpid(),
        )
        return status

    async def lock(self, *, seal: bool) -> None:
        """Drop sessions, approvals and grants; with ``seal`` also log out of the token."""
        await self.service.lock(seal=seal)
        if seal:
            await self._run_token(self.holder.seal)

    async def unlock(self, pin: bytearray, *, confirm_final_try: bool = False) -> None:
        """Log in with ``pin`` (from `vaultd unlock` or the TUI) and unseal.

        Wrong PINs are rate-limited here (docs/threat-model.md T9/T12): SoftHSM2 never locks a PIN,
        and a hardware token that does should not be locked by a script guessing through vaultd.
        A token at its final PIN try raises ``HsmPinFinalTry`` without a login unless the
        client sends ``confirm_final_try`` (the person typed the confirmation).
        """
        now = self.clock.monotonic()
        recent = [t for t in self._unlock_failures if now - t < UNLOCK_WINDOW]
        self._unlock_failures = recent
        if len(recent) >= UNLOCK_MAX_FAILURES:
            pin[:] = bytes(len(pin))
            retry = UNLOCK_WINDOW - (now - recent[0])
            raise RateLimited(
                f"{len(recent)} wrong PINs in {UNLOCK_WINDOW // 60:g} minutes: try again in "
                f"{retry:.0f} s",
                retry_after=retry,
            )
        try:
            await self._run_token(
                lambda: self.holder.unseal(pin, confirm_final_try=confirm_final_try)
            )
        except HsmPinIncorrect:
            self._unlock_failures.append(now)
            log.warning("a wrong token PIN was sent to unlock (%d recent)", len(recent) + 1)
            raise
        finally:
            pin[:] = bytes(len(pin))
        self.service.sealed = False
        await self.service.audit_event("unlock", outcome="unsealed")

    async def _stream_events(self, conn: Connection) -> Mapping[str, object]:
        """Push approval events to a subscriber (the TUI) until it goes away.

        Each subscriber counts as an approver for code approvals; when the last one leaves,
        approvals only it could answer end with ``APPROVAL_UNAVAILABLE`` (docs/threat-model.md F14).
        """
        queue: asyncio.Queue[tuple[str, Approval]] = asyncio.Queue(maxsize=256)

        def on_event(event: object) -> None:
            kind = getattr(event, "kind", None)
            approval = getattr(event, "approval", None)
            if isinstance(approval, Approval) and not queue.full():
                queue.put_nowait((str(getattr(kind, "value", kind)), approval))

        unsubscribe = self.service.approvals.subscribe(on_event)
        self._subscribers.add(conn)
        try:
            await conn.send_event("subscribed", {})
            while not conn.closed:
                getter = asyncio.ensure_future(queue.get())
                closed = asyncio.ensure_future(conn.closed_event.wait())
                done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                kind, approval = getter.result()
                await conn.send_event(f"approval_{kind}", {"approval": approval.as_dict()})
        finally:
            unsubscribe()
            self._subscribers.discard(conn)
            if not self._subscribers:
                ended = self.service.approver_detached()
                if ended:
                    log.warning(
                        "the last approver (TUI) left: %d code approval(s) ended with "
                        "APPROVAL_UNAVAILABLE",
                        len(ended),
                    )
        return {}

    # --- life cycle ----------------------------------------------------------------------

    def _unseal_at_start(self) -> None:
        if not app.uses_token(self.settings):
            self.holder.unseal(bytearray())  # a software key store needs no PIN
            return
        if self.settings.pkcs11.pin_source == "prompt":
            self.service.sealed = True
            log.warning("started sealed: run `vaultd unlock` to enter the token PIN")
            return
        pin = app.read_pin(self.settings)
        try:
            self.holder.unseal(pin)
        except (HsmPinIncorrect, HsmPinLocked) as exc:
            # No automatic retry (docs/threat-model.md T9): a restart loop (systemd
            # Restart=on-failure) would spend one PIN try per start until the token locks.
            self.service.sealed = True
            log.error("started sealed: %s", exc)
        except HsmPinFinalTry:
            # Never spend the last try unattended (docs/threat-model.md T9): a person must confirm
            # it.
            self.service.sealed = True
            log.warning(
                "started sealed: token %r is at its final PIN try (one more wrong PIN locks "
                "it), so the PIN from %s was not tried; check that PIN, then run `vaultd "
                "unlock` and type `final try` when asked",
                self.settings.pkcs11.token_label,
                self.settings.pkcs11.pin_source.partition(":")[0],
            )
        finally:
            pin[:] = bytes(len(pin))

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            self.service.approvals.expire_due()
            if not self.server.check_socket_intact():
                log.error("the socket %s was replaced or re-owned: sealing", self.settings.socket)
                await self.lock(seal=True)
                self._stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HOUSEKEEPING_INTERVAL)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT."""
        loop = self._loop = asyncio.get_running_loop()
        await self._run_token(self._unseal_at_start)
        await self.server.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.lock(seal=False)))
        await self._run_io(lambda: self._try_audit("start", {"outcome": f"pid {os.getpid()}"}))
        print(f"vaultd: serving on {self.settings.socket}", flush=True)
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            await self._stop.wait()
        finally:
            housekeeping.cancel()
            await self.server.stop()
            await self._run_io(lambda: self._try_audit("stop", {"outcome": "clean"}))
            self.service.seal()
            await self._run_token(self.holder.seal)
            self._token_thread.shutdown(wait=True)


def serve(settings: Settings) -> int:
    """Harden the process, then run the daemon until it is told to stop."""
    from vaultd.store.instance_lock import DataDirLock
    from vaultd.system.hardening import harden_process

    harden_process()
    os.umask(0o077)
    app.prepare_data_dir(settings)
    with DataDirLock(settings.data_dir):  # one daemon per data dir (T34)
        asyncio.run(Daemon(settings).run())
    return 0
