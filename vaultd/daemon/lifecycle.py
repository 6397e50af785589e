"""The running daemon: start, signals, housekeeping, stop; requests go through the op table.

Start-up order: harden the process (no core dumps, not dumpable), check the data dir, open
the audit log, log in to the token (or start sealed when ``pin_source = "prompt"``), then
bind the socket.  SIGTERM/SIGINT stop; SIGHUP reloads the profiles and the policy (see
:meth:`Daemon.reload`).
Every adapter comes from :func:`vaultd.app.daemon_parts`; the token and the store are used only
through their one owner (:mod:`vaultd.daemon.token_owner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import TypeVar

from vaultd import app
from vaultd.core.breakglass import BreakGlassDesk
from vaultd.core.final_try import FinalTryGate
from vaultd.core.model import Profile, ProfileKind
from vaultd.core.service import Ports, VaultService
from vaultd.core.status import DaemonFacts
from vaultd.core.unlock_limit import UnlockLimiter
from vaultd.daemon.events import Subscribers
from vaultd.daemon.handlers import HANDLERS, Reply
from vaultd.daemon.journal import LoggedAudit
from vaultd.errors import (
    AuditError,
    BadRequest,
    HsmPinFinalTry,
    HsmPinIncorrect,
    HsmPinLocked,
    InternalError,
    ReplySchemaViolation,
    Sealed,
    VaultError,
)
from vaultd.ipc.peercred import PeerCred
from vaultd.ipc.protocol import Request
from vaultd.ipc.replies import check_reply
from vaultd.ipc.server import Connection
from vaultd.settings import ProfileSettings, Settings, config_digest, load_settings
from vaultd.store.instance_lock import DataDirLock
from vaultd.store.policy_file import load_policy
from vaultd.system.hardening import harden_process

T = TypeVar("T")
log = logging.getLogger("vaultd.daemon")

HOUSEKEEPING_INTERVAL = 1.0


def profiles_from(settings: Settings) -> dict[str, Profile]:
    """Domain profiles from the validated settings."""
    return {
        name: Profile(
            name=name,
            kind=_kind(p),
            credentials=p.credentials,
            source_profile=p.source_profile,
            role_arn=p.role_arn,
            mfa_serial=p.mfa_serial,
            duration_seconds=p.duration_seconds,
            external_id=p.external_id,
            role_session_name=p.role_session_name,
            region=p.region,
            approval=p.approval,
            target_account=p.assume_root_account,
            root_task=p.assume_root_task,
        )
        for name, p in settings.profiles.items()
    }


def _log_token_lost(exc: Sealed) -> None:
    log.warning(
        "token lost (%s): sealed, every session dropped; run `vaultd unlock` once it is back", exc
    )


def _restart_only_changes(running: Settings, loaded: Settings) -> list[str]:
    """The settings edited in ``loaded`` that a reload does not apply (``[approval] timeout``,
    ``[pkcs11]``, ``socket``...), by name."""
    old, new = running.model_dump(), loaded.model_dump()
    for dump in (old, new):
        del dump["profiles"], dump["policy_file"]
        dump["approval"].pop("out_of_band")
    edited: list[str] = []
    for section, value in new.items():
        before = old.get(section)
        if isinstance(value, dict) and isinstance(before, dict):
            edited += [f"{section}.{key}" for key in value if value[key] != before.get(key)]
        elif value != before:
            edited.append(section)
    return sorted(edited)


def _kind(p: ProfileSettings) -> ProfileKind:
    if p.assume_root:
        return ProfileKind.ASSUME_ROOT
    return ProfileKind.ROLE if p.role_arn else ProfileKind.SESSION


class Daemon:
    """The running daemon: one service, one socket, one token owner."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config_digest = config_digest()
        """The digest of the config file the running profiles and policy come from."""
        self.parts = parts = app.daemon_parts(
            settings, audit_mac=self._audit_mac, audit_verify=self._audit_verify
        )
        self.owner = parts.owner
        self.audit = parts.audit
        ports = Ports(
            clock=parts.clock,
            sts=parts.sts,
            secrets=parts.owner,
            audit=LoggedAudit(parts.audit),
            state=parts.state,
            # The owner's methods hand their token work to its worker themselves, so a bound
            # record's touch waits on an I/O thread, never on the worker.
            run_token=self._run_token,
            run_io=asyncio.to_thread,
            gate=parts.gate,
            codes=parts.codes,
            notify=parts.notify,
            prompter=parts.prompter,
            touch_possible=lambda: parts.owner.touch_possible,
        )
        self.service = VaultService(
            profiles_from(settings),
            ports,
            ledger=parts.ledger,
            approval_timeout=settings.approval.timeout_seconds,
            cooldown_seconds=settings.approval.cooldown_seconds,
            serve_floor=settings.cache.serve_floor_seconds,
            cache_idle_seconds=settings.cache.idle_seconds,
            access_policy=load_policy(settings.policy_file),
            out_of_band=settings.approval.out_of_band,
            approvers=lambda: len(self.subscribers),
            session_scopes=settings.approval.scope == "session",
            prompt=settings.approval.prompt,
        )
        self.subscribers = Subscribers(self.service)
        self._uid = os.getuid()
        self.server = app.ipc_server(settings, self.handle, audit_peer_refused=self._peer_refused)
        self.breakglass = BreakGlassDesk(self.service)
        self.unlock_limit = UnlockLimiter(parts.clock)
        self.final_try = FinalTryGate(parts.clock)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.owner.on_lost = self._token_lost

    # --- the token guard -------------------------------------------------------------------

    def _token_lost(self) -> None:
        """A token call hung (any thread): wipe and seal the service on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.service.seal)

    async def _run_token(self, fn: Callable[[], T]) -> T:
        """Run a token call off the loop; log a token lost while unsealed (the service seals)."""
        try:
            return await asyncio.to_thread(fn)
        except Sealed as exc:
            if not self.service.sealed:
                _log_token_lost(exc)
            raise

    def _audit_mac(self, data: bytes) -> bytes:
        # Called on an I/O thread; the owner runs it on its worker.
        try:
            return self.owner.mac(data)
        except Sealed as exc:
            raise self._sealed_audit(exc) from None

    def _audit_verify(self, data: bytes, tag: bytes) -> None:
        # The audit writer checks the last record's tag when it loads; same worker, same rules.
        try:
            self.owner.mac_verify(data, tag)
        except Sealed as exc:
            raise self._sealed_audit(exc) from None

    def _sealed_audit(self, exc: Sealed) -> AuditError:
        """Seal on a token lost mid-run; say plainly that a sealed vault cannot sign records."""
        lost = not self.service.sealed
        if self._loop is not None and lost:
            _log_token_lost(exc)
            self._loop.call_soon_threadsafe(self.service.seal)  # token lost: wipe, seal
        why = "the token was lost or stopped answering" if lost else str(exc)
        return AuditError(
            f"audit records cannot be signed while the vault is sealed ({why}); nothing was "
            "released: run `vaultd unlock` once the token is back"
        )

    def _peer_refused(self, peer: PeerCred) -> None:
        fields = {"client": {"pid": peer.pid, "uid": peer.uid}, "outcome": "PEER_REFUSED"}
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._try_audit, "peer_refused", fields)

    def _try_audit(self, event: str, fields: Mapping[str, object]) -> None:
        """Record a daemon event; while sealed that cannot be signed, which is expected."""
        try:
            self.audit.record(event, fields)
        except AuditError as exc:
            log.log(logging.INFO if self.service.sealed else logging.ERROR, "%s: %s", event, exc)

    # --- requests --------------------------------------------------------------------------

    async def handle(self, request: Request, conn: Connection) -> Reply:
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

    async def _dispatch(self, request: Request, conn: Connection) -> Reply:
        handler = HANDLERS.get(request.op)
        if handler is None:
            raise BadRequest(f"op {request.op!r} is not handled by this daemon")
        return await handler(self, request, conn)

    def facts(self) -> DaemonFacts:
        """The daemon's own part of ``status``."""
        key = self.owner.key
        hardware = app.uses_token(self.settings) or bool(
            key is not None and not key.sealed and key.inspect().get("hardware")
        )
        return DaemonFacts(
            keystore=self.settings.keystore,
            hardware=hardware,
            token_label=self.settings.pkcs11.token_label,
            socket=str(self.settings.socket),
            pid=os.getpid(),
            config_digest=self.config_digest,
        )

    async def reload(self) -> None:
        """SIGHUP: take the profiles, the policy and ``approval.out_of_band`` from the config
        file again, keeping every session whose profile did not change (`vaultd lock` drops
        them all); log what changed, and which edited settings wait for a restart.  A config
        that does not load leaves the running one in place."""
        digest = config_digest()  # before loading: a later edit still shows as a difference
        try:
            settings = load_settings()
            policy = load_policy(settings.policy_file)
        except VaultError as exc:
            log.error("config not reloaded, the running one stays: %s: %s", exc.code, exc)
            return
        summary = await self.service.reload(
            profiles_from(settings), policy, out_of_band=settings.approval.out_of_band
        )
        self.config_digest = digest
        changes = "; ".join(f"{k}: {', '.join(v)}" for k, v in summary.items() if v)
        log.info("config reloaded (%s)", changes or "no profile changed")
        restart = _restart_only_changes(self.settings, settings)
        if restart:
            log.warning("restart vaultd to apply the edited %s", ", ".join(restart))

    async def lock(self, *, seal: bool) -> None:
        """Drop sessions, approvals and grants; with ``seal`` also log out of the token."""
        await self.service.lock(seal=seal)
        if seal:
            await self.owner.run(self.owner.seal)

    async def unlock(self, pin: bytearray, *, final_try_answer: str | None = None) -> bool:
        """Log in with ``pin`` (from `vaultd unlock` or the TUI) and unseal; False, with the
        token untouched, when the vault is unsealed already (a wrong PIN from any client must
        not log a working daemon out of its token).

        Wrong PINs are rate-limited (``vaultd.core.unlock_limit``).  A token at its final PIN
        try raises ``HsmPinFinalTry`` with a fresh challenge, without a login, unless
        ``final_try_answer`` repeats the last challenge (``vaultd.core.final_try``, T9).
        """
        try:
            if not self.service.sealed and self.owner.live:
                return False
            confirmed = final_try_answer is not None and self.final_try.answer(final_try_answer)
            if final_try_answer is not None and not confirmed:
                raise HsmPinFinalTry(
                    "the words typed do not match the last final-try challenge, or it expired, "
                    "so no login was tried: run `vaultd unlock` again and type the new words",
                    challenge=self.final_try.issue(),
                )
            await self._login(pin, confirmed)
        finally:
            pin[:] = bytes(len(pin))
        self.service.sealed = False
        await self.service.audit_event("unlock", outcome="unsealed")
        return True

    async def _login(self, pin: bytearray, confirmed: bool) -> None:
        """One rate-limited token login; an unconfirmed final try gets a fresh challenge."""
        recent = self.unlock_limit.check()
        try:
            await self.owner.run(lambda: self.owner.unseal(pin, confirm_final_try=confirmed))
        except HsmPinIncorrect:
            self.unlock_limit.failed()
            log.warning("a wrong token PIN was sent to unlock (%d recent)", recent + 1)
            raise
        except HsmPinFinalTry as exc:
            raise HsmPinFinalTry(exc.message, challenge=self.final_try.issue()) from None

    # --- life cycle ------------------------------------------------------------------------

    def _start_sealed(self, reason: str) -> None:
        """Stay sealed from the start (on the worker: nothing is cached yet to wipe)."""
        self.service.sealed, self.service.sealed_reason = True, reason

    def _unseal_at_start(self) -> None:
        if not app.uses_token(self.settings):
            self.owner.unseal(bytearray())  # a software key store needs no PIN
            return
        if self.settings.pkcs11.pin_source == "prompt":
            self._start_sealed("started sealed (pkcs11.pin_source = prompt): run `vaultd unlock`")
            log.warning("started sealed: run `vaultd unlock` to enter the token PIN")
            return
        pin = app.read_pin(self.settings)
        try:
            self.owner.unseal(pin)
        except (HsmPinIncorrect, HsmPinLocked) as exc:
            # No automatic retry (docs/threat-model.md T9): a restart loop (systemd
            # Restart=on-failure) would spend one PIN try per start until the token locks.
            self._start_sealed(f"started sealed, the token refused the PIN: {exc.message}")
            log.error("started sealed: %s", exc)
        except HsmPinFinalTry:
            # Never spend the last try unattended (T9): a person must confirm it.
            self._start_sealed(
                "started sealed: the token is at its final PIN try; run `vaultd unlock` and "
                "type `final try` when asked"
            )
            log.warning(
                "started sealed: token %r is at its final PIN try (one more wrong PIN locks "
                "it), so the PIN from %s was not tried; check that PIN, then run `vaultd "
                "unlock` and type back the words it shows",
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
        await self.owner.run(self._unseal_at_start)
        await self.server.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        await asyncio.to_thread(self._try_audit, "start", {"outcome": f"pid {os.getpid()}"})
        print(f"vaultd: serving on {self.settings.socket}", flush=True)
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            await self._stop.wait()
        finally:
            housekeeping.cancel()
            await self.server.stop()
            await asyncio.to_thread(self._try_audit, "stop", {"outcome": "clean"})
            self.service.seal()
            await self.owner.run(self.owner.seal)
            self.owner.shutdown()


def serve(settings: Settings) -> int:
    """Harden the process, then run the daemon until it is told to stop."""
    harden_process()
    os.umask(0o077)
    app.prepare_data_dir(settings)
    with DataDirLock(settings.data_dir):  # one daemon per data dir (docs/threat-model.md T34)
        asyncio.run(Daemon(settings).run())
    return 0
