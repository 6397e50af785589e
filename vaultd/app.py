"""Composition root: settings -> adapters.  The only module that names concrete adapters.

The vault key comes from a PKCS#11 token (``keystore = "pkcs11"``, the default) or from an
allowlisted ``vaultd.keystore`` plugin; either way callers get a :class:`SealingKey`: the
``KeyWrapper`` and ``GenerationAnchor`` ports plus the audit MAC, ``inspect`` and ``close``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.aws.iam import Boto3IamClient
from vaultd.aws.sts import Boto3StsClient
from vaultd.core.approvals import new_approval_id
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.ports import CodeSource, Notifier, SealingKey, StsClient
from vaultd.daemon.token_owner import TokenOwner
from vaultd.errors import ConfigError, PluginError
from vaultd.fido2.devices import open_devices
from vaultd.fido2.gate import TouchGate, load_enrolled, save_enrolled, unbind_plaintext
from vaultd.ipc.server import Handler, IpcServer
from vaultd.keys.keystore import KeyStoreKey
from vaultd.mfa.plugin_codes import ChainedCodeSource, PluginCodeSource
from vaultd.mfa.seed_codes import SeedCodeSource, load_seed, seed_exists
from vaultd.plugin.api import CodeSource as CodeSourcePlugin
from vaultd.plugin.api import KeyStore, KeyStoreBacking, KeyStoreConfig, NotifyEvent, Severity
from vaultd.plugin.registry import Kind, LoadedPlugins, allows, load_plugins, notify_all
from vaultd.store.atomic import check_private, ensure_private_dir
from vaultd.store.audit import AuditLog
from vaultd.store.audit_facts import AuditFactsReader
from vaultd.store.file_lock import StoreFileLock
from vaultd.store.files import SealedStore
from vaultd.store.state import StateFile
from vaultd.system.clock import SystemClock
from vaultd.system.procinfo import describe_process
from vaultd.system.prompt_drivers import DialogPrompter

if TYPE_CHECKING:
    from vaultd.core.ports import Clock
    from vaultd.ipc.peercred import PeerCred
    from vaultd.keys.backup_token import BackupToken
    from vaultd.keys.piv import PivSetup
    from vaultd.keys.pkcs11 import PinState
    from vaultd.keys.recovery import BackupOpener
    from vaultd.settings import Settings
    from vaultd.system.running import Running

STORE_FILE = "store.vault"
STATE_FILE = "state.json"
LOCK_FILE = "store.lock"


PKCS11 = "pkcs11"
"""The ``keystore`` setting's value for a PKCS#11 token."""


OATH_PLUGIN = "yubikey-oath"
"""The entry-point name of the YubiKey OATH code source."""


def oath_code_source(
    settings: Settings,
    plugins: LoadedPlugins,
    ledger: OtpLedger,
    clock: Clock,
    *,
    on_touch: Callable[[str], None],
) -> PluginCodeSource | None:
    """The ledgered YubiKey OATH code source, or ``None`` when it is not in ``plugins.allow``.

    ``PluginError`` (PLUGIN_UNAVAILABLE) when it is allowlisted but did not load.
    """

    if not allows(settings.plugins.allow, Kind.MFA, OATH_PLUGIN):
        return None
    plugin = plugins.require(Kind.MFA, OATH_PLUGIN)
    if not isinstance(plugin, CodeSourcePlugin):
        raise PluginError(
            f"plugin mfa/{OATH_PLUGIN} does not compute codes for a given time; install "
            "the yubikey-oath plugin shipped with vaultd"
        )
    names = settings.plugins.yubikey_oath_names
    return PluginCodeSource(plugin.configured(names=names, on_touch=on_touch), ledger, clock)


def module_path(settings: Settings) -> str:
    """The allowlisted, safely installed PKCS#11 module (docs/threat-model.md T25)."""
    if not settings.pkcs11.module:
        raise ConfigError(
            'pkcs11.module is not set: add `[pkcs11] module = "/path/to/module.so"` to the '
            "config (for example /usr/lib/softhsm/libsofthsm2.so)"
        )
    return allowed_module(settings, settings.pkcs11.module)


def allowed_module(settings: Settings, path: str) -> str:
    """The real path of the PKCS#11 module ``path`` if it is allowlisted and safely installed."""
    # Lazy: pkcs11 loads only for commands that open the token.
    from vaultd.keys.pkcs11 import DEFAULT_MODULE_ALLOWLIST, check_module_path

    allow = (*DEFAULT_MODULE_ALLOWLIST, *settings.pkcs11.module_allowlist)
    return check_module_path(path, allow)


def uses_token(settings: Settings) -> bool:
    """Whether the vault key is in a PKCS#11 token (and so needs a module and a PIN)."""
    return settings.keystore == PKCS11


def token_pin_state(settings: Settings) -> PinState:
    """The token's PIN flags, read before any login (``vaultd doctor`` never guesses)."""
    from vaultd.keys.pkcs11 import read_pin_state

    return read_pin_state(module_path(settings), settings.pkcs11.token_label)


def read_pin(settings: Settings) -> bytearray:
    """The token PIN from ``pkcs11.pin_source``."""
    from vaultd.keys.pin import read_pin as _read_pin

    return _read_pin(settings.pkcs11.pin_source, token_label=settings.pkcs11.token_label)


def open_token_key(
    module_path: str,
    token_label: str,
    key_label: str,
    pin: str | bytearray,
    *,
    scheme: str = "auto",
    create_key: bool = False,
    confirm_final_try: bool = False,
    piv_slots: tuple[str, str] = ("82", "9a"),
    piv_setup: PivSetup | None = None,
) -> SealingKey:
    """Open the vault key under the scheme :func:`~vaultd.keys.schemes.choose_scheme` picks.

    ``piv_slots`` and ``piv_setup`` are for PIV cards (:mod:`vaultd.keys.piv`).
    """
    from vaultd.keys import piv
    from vaultd.keys.ecdh import EcdhTokenKey
    from vaultd.keys.pkcs11 import TokenKey
    from vaultd.keys.rsa_oaep import RsaTokenKey
    from vaultd.keys.schemes import choose_scheme

    chosen = choose_scheme(module_path, token_label, key_label, scheme, trial=create_key)
    args = (module_path, token_label, key_label, pin)
    if chosen == "aead":
        if piv_setup is not None and piv_setup.protect:
            raise piv.not_a_card(token_label)
        return TokenKey.open(*args, create_key=create_key, confirm_final_try=confirm_final_try)
    host_sealed = EcdhTokenKey if chosen == "ecdh" else RsaTokenKey
    return host_sealed.open(
        *args,
        create_key=create_key,
        confirm_final_try=confirm_final_try,
        piv_slots=piv_slots,
        piv_setup=piv_setup,
    )


def open_token(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
    piv_setup: PivSetup | None = None,
) -> SealingKey:
    """Log in to the token and check its vault key, under ``pkcs11.scheme``.

    On a PIV card, ``create_key`` generates missing keys as ``piv_setup`` says (its touch policy
    replaced by ``pkcs11.touch_policy``).

    A token at its final PIN try is logged into only with ``confirm_final_try``, which only a
    person's typed confirmation may set (``HsmPinFinalTry`` otherwise; docs/threat-model.md T9).
    """
    from vaultd.keys.piv import PivSetup

    return open_token_key(
        module_path(settings),
        settings.pkcs11.token_label,
        settings.pkcs11.key_label,
        pin,
        scheme=settings.pkcs11.scheme,
        create_key=create_key,
        confirm_final_try=confirm_final_try,
        piv_slots=(settings.pkcs11.piv_slot, settings.pkcs11.piv_audit_slot),
        piv_setup=replace(piv_setup or PivSetup(), touch_policy=settings.pkcs11.touch_policy),
    )


def open_key(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
    piv_setup: PivSetup | None = None,
) -> SealingKey:
    """The vault key ``keystore`` names: the token (logged in with ``pin``) or a key store.

    A key store ignores ``pin`` and ``confirm_final_try`` and makes its keys on first use,
    whatever ``create_key``.
    """
    if uses_token(settings):
        return open_token(
            settings,
            pin,
            create_key=create_key,
            confirm_final_try=confirm_final_try,
            piv_setup=piv_setup,
        )
    return open_keystore(settings)


def open_keystore(settings: Settings) -> KeyStoreKey:
    """The allowlisted key store plugin named by ``keystore``, opened on its key.

    ``PluginError`` when it did not load or cannot anchor the store generation and MAC the
    audit log; ``HsmError`` subclasses from the plugin when its key cannot be had.
    """

    name = settings.keystore
    plugin = load_plugins(settings.plugins.allow, (Kind.KEYSTORE,)).require(Kind.KEYSTORE, name)
    if not isinstance(plugin, KeyStore):  # the registry checked this; it narrows the type
        raise PluginError(f"plugin keystore/{name} is not a key store")
    backing = plugin.open(KeyStoreConfig(key_label=settings.keystore_key_label))
    if not isinstance(backing, KeyStoreBacking):
        raise PluginError(
            f"key store {name!r} keeps no store generation or audit MAC key, so it cannot "
            'hold a vault; use keystore = "pkcs11" or a key store that does'
        )
    return KeyStoreKey(name, backing, is_hardware=plugin.is_hardware)


def prepare_data_dir(settings: Settings) -> Path:
    """Create (0700) or check the data dir."""

    ensure_private_dir(settings.data_dir)
    check_private(settings.data_dir, is_dir=True)
    return settings.data_dir


def open_store(settings: Settings, token: SealingKey) -> SealedStore:
    """The sealed store in the data dir, anchored and index-tagged by the token (or key store).

    Each store operation holds the cross-process store lock for that operation only.
    """
    data_dir = prepare_data_dir(settings)
    lock = StoreFileLock(data_dir / LOCK_FILE)
    return SealedStore(
        data_dir / STORE_FILE,
        token,
        token,
        SystemClock(),
        file_lock=lock.held,
        authenticator=token,
    )


def recovery_store(settings: Settings, key: BackupOpener) -> SealedStore:
    """The store in the data dir read with a backup alone: a typed recovery key or a logged-in
    backup token (the vault's token is lost)."""
    data_dir = prepare_data_dir(settings)
    lock = StoreFileLock(data_dir / LOCK_FILE)
    return SealedStore.for_recovery(data_dir / STORE_FILE, key, SystemClock(), file_lock=lock.held)


def open_backup_token(
    settings: Settings,
    module: str,
    token_label: str,
    pin: bytearray,
    *,
    key_label: str | None,
    piv_slot: str | None,
    create_key: bool,
) -> BackupToken:
    """A backup token (issue 14) logged in with ``pin``; ``module`` must be allowlisted, as
    the vault's is (docs/threat-model.md T25); its touches are announced on stderr."""
    from vaultd.keys.backup_token import BackupToken

    path = allowed_module(settings, module)
    token = BackupToken.open(
        path, token_label, pin, key_label=key_label, piv_slot=piv_slot, create_key=create_key
    )
    announce_touches(token)  # only commands open backup tokens
    return token


@dataclass
class OpenStore:
    """A logged-in vault key and its store, for one CLI command."""

    token: SealingKey
    store: SealedStore
    audit_log: AuditLog

    def audit(self, event: str, **fields: object) -> None:
        """Append ``event`` to the vault's audit chain, tagged by this command's token session,
        naming this process (``by``) and the channel ``cli``; a running daemon may append at the
        same time (the log's writer lock serialises them).  Raises ``AuditError`` on failure."""
        me = describe_process(os.getpid())
        by = {"uid": me.uid, "pid": me.pid, "executable": me.executable, "channel": "cli"}
        self.audit_log.record(event, {**fields, "by": by})


def no_daemon(settings: Settings, fix: str) -> Running:
    """Hold the one-daemon-per-data-dir lock (docs/threat-model.md T34) for a command that must
    not run beside ``vaultd serve``; ``DaemonAlreadyRunning`` ending in ``fix`` if one runs."""
    from vaultd.store.instance_lock import DataDirLock

    return DataDirLock(settings.data_dir, fix)


@contextmanager
def opened_vault(
    settings: Settings, *, create_key: bool = False, piv_setup: PivSetup | None = None
) -> Iterator[OpenStore]:
    """Read the PIN, log in, open the store; log out and wipe the PIN afterwards.

    A key store plugin needs no PIN and no module.  No store lock is held across the ``with``
    body (a touch, a prompt): each store operation takes it for itself.
    """
    pin = bytearray()
    if uses_token(settings):
        module_path(settings)  # refuse a bad module before asking for a PIN
        pin = read_pin(settings)
    try:
        token = open_key(settings, pin, create_key=create_key, piv_setup=piv_setup)
    finally:
        pin[:] = bytes(len(pin))
    if uses_token(settings):
        announce_touches(token)
    try:
        yield open_vault_with(settings, token)
    finally:
        token.close()


def announce_touches(key: SealingKey | BackupToken) -> None:
    """For a command that opens records itself: each open on a PIV key that has waited
    ``TOKEN_TOUCH_LATE_SECONDS`` says "touch your YubiKey" on stderr, as the daemon does on
    the requesting terminal (ykcs11 just blocks)."""
    from vaultd.core.service import TOKEN_TOUCH_LATE_SECONDS
    from vaultd.keys.backup_token import BackupToken
    from vaultd.keys.ecdh import HostSealedKey

    if isinstance(key, HostSealedKey | BackupToken) and key.touch_possible:
        key.announce_touch(_say_touch, after=TOKEN_TOUCH_LATE_SECONDS)


def _say_touch() -> None:
    print("vaultd: touch your YubiKey (it blinks) to open a record", file=sys.stderr, flush=True)


def open_vault_with(settings: Settings, token: SealingKey) -> OpenStore:
    """The store and audit log of the data dir under the logged-in ``token``."""
    audit = AuditLog(
        settings.audit_path,
        token.mac,
        SystemClock(),
        max_bytes=settings.audit.max_bytes,
        mac_verify=token.mac_verify,
    )
    return OpenStore(token, open_store(settings, token), audit)


def clock() -> SystemClock:
    """The system clock, for commands."""
    return SystemClock()


def cli_touch_gate(settings: Settings, vault: OpenStore) -> TouchGate:
    """A CLI command's FIDO2 gate over its open store (the daemon's is built in
    :func:`daemon_parts`); the CLI does not write into the daemon's audit chain."""
    return TouchGate(
        lambda: open_devices(settings.fido2.devices),
        lambda: load_enrolled(vault.store),
        lambda cred: save_enrolled(vault.store, cred),
        SystemClock(),
        vault.token,
        settings.fido2.rp_id,
        lambda event, fields: None,
    )


# --- the daemon's adapters ------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonParts:
    """Every concrete adapter the daemon runs on, built once by :func:`daemon_parts`."""

    clock: SystemClock
    owner: TokenOwner
    audit: AuditLog
    audit_facts: AuditFactsReader
    state: StateFile
    ledger: OtpLedger
    plugins: LoadedPlugins
    sts: StsClient
    iam: Boto3IamClient
    gate: TouchGate
    codes: CodeSource
    notify: Notifier
    prompter: DialogPrompter


def sts_client() -> StsClient:
    """The STS adapter (boto3) the daemon uses, for checks a command makes before a prompt."""
    return Boto3StsClient()


def daemon_parts(
    settings: Settings,
    *,
    audit_mac: Callable[[bytes], bytes],
    audit_verify: Callable[[bytes, bytes], None],
) -> DaemonParts:
    """The daemon's adapters; ``audit_mac`` and ``audit_verify`` tag and check audit records
    through the daemon's token guard."""
    clock = SystemClock()
    owner = TokenOwner(
        lambda pin, final: open_key(settings, pin, confirm_final_try=final),
        lambda key: open_store(settings, key),
        call_timeout=settings.pkcs11.call_timeout,
    )
    audit = AuditLog(
        settings.audit_path,
        audit_mac,
        clock,
        max_bytes=settings.audit.max_bytes,
        mac_verify=audit_verify,
    )
    state = StateFile(settings.data_dir / STATE_FILE)
    ledger_data = state.load_ledger()
    ledger = OtpLedger.from_dict(ledger_data) if ledger_data is not None else OtpLedger()
    plugins = load_plugins(settings.plugins.allow)
    notify = _notifier(plugins)
    gate = _touch_gate(settings, owner, clock, audit, notify)
    return DaemonParts(
        clock=clock,
        owner=owner,
        audit=audit,
        audit_facts=AuditFactsReader(settings.audit_path),
        state=state,
        ledger=ledger,
        plugins=plugins,
        sts=sts_client(),
        iam=Boto3IamClient(),
        gate=gate,
        codes=_code_source(settings, owner, plugins, ledger, clock, notify),
        notify=notify,
        prompter=DialogPrompter(),
    )


def _notifier(plugins: LoadedPlugins) -> Notifier:
    def notify(event: str, profile: str, severity: str, message: str) -> None:
        """Hand an event to the allowlisted notifier plugins (never blocks, never raises)."""
        notifiers = plugins.notifiers()
        if notifiers:
            notify_all(notifiers, NotifyEvent(event, profile, Severity(severity), message))

    return notify


def _touch_gate(
    settings: Settings, owner: TokenOwner, clock: Clock, audit: AuditLog, notify: Notifier
) -> TouchGate:
    """The daemon's FIDO2 gate over the owned store; it also opens bound records."""
    gate = TouchGate(
        lambda: open_devices(settings.fido2.devices),
        lambda: owner.with_store(load_enrolled),
        lambda cred: owner.with_store(lambda store: save_enrolled(store, cred)),
        clock,
        owner,
        settings.fido2.rp_id,
        audit.record,
    )

    def unbind(blob: bytes) -> bytes:
        return unbind_plaintext(
            blob,
            lambda salt, ids: gate.hmac_output(
                f"unseal-{new_approval_id()}",
                salt,
                ids,
                on_prompt=lambda: notify(
                    "touch_needed", "", "critical", "touch your key to unseal a bound key"
                ),
                cancel=threading.Event(),
                timeout=settings.approval.timeout_seconds,
            ),
        )

    owner.unbind = unbind
    return gate


def _code_source(
    settings: Settings,
    owner: TokenOwner,
    plugins: LoadedPlugins,
    ledger: OtpLedger,
    clock: Clock,
    notify: Notifier,
) -> CodeSource:
    """Sealed seeds first, then the YubiKey OATH plugin when it is allowlisted."""
    seeds = SeedCodeSource(
        lambda serial: owner.with_store(lambda store: load_seed(store, serial)),
        ledger,
        clock,
        seed_exists=lambda serial: owner.with_store(lambda store: seed_exists(store, serial)),
    )
    oath = oath_code_source(
        settings,
        plugins,
        ledger,
        clock,
        on_touch=lambda message: notify("touch_needed", "", "info", message),
    )
    return seeds if oath is None else ChainedCodeSource(seeds, oath)


def ipc_server(
    settings: Settings, handler: Handler, *, audit_peer_refused: Callable[[PeerCred], None]
) -> IpcServer:
    """The daemon's socket: the user's uid (and root with ``ipc.allow_root``) only."""
    allowed = {os.getuid()} | ({0} if settings.ipc.allow_root else set())
    return IpcServer(
        handler,
        socket_path=settings.socket,
        allowed_uids=frozenset(allowed),
        audit_peer_refused=audit_peer_refused,
        max_connections=settings.ipc.max_connections,
        read_timeout=settings.ipc.read_timeout,
        request_timeout=settings.ipc.request_timeout,
    )
