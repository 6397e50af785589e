"""`vaultd doctor`: check what breaks, each problem with its fix.

Config, module, the token's PIN state (read before any login: doctor never tries a PIN that
might be the last), token key and store, profiles against stored records, touch profiles
against seeds and authenticators, the audit chain, FIDO2 devices, `~/.aws/config` lines that
point at vaultd, plugins, and the daemon's socket.  Exit status 1 when a required check fails.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from vaultd.commands._args import Subparsers
from vaultd.core.model import ApprovalMethod, RecordKind
from vaultd.errors import VaultError

if TYPE_CHECKING:
    from vaultd.app import OpenStore
    from vaultd.keys.piv import CardAccess
    from vaultd.settings import Settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("doctor", help="check the installation and say how to fix problems")
    p.add_argument(
        "--try-pin",
        action="store_true",
        help="log in even when a wrong PIN was entered since the last good login (never at "
        "the token's final try)",
    )
    p.set_defaults(func=run)


class Report:
    """Prints one line per finding and remembers whether a required check failed."""

    def __init__(self) -> None:
        self.ok = True

    def line(self, status: str, label: str, detail: str = "") -> None:
        """Print ``status  label: detail``; a FAIL marks the run failed."""
        if status == "FAIL":
            self.ok = False
        print(f"{status:<5} {label}{': ' + detail if detail else ''}")

    def check(self, label: str, fn: Callable[[], str], *, required: bool = True) -> bool:
        """Run ``fn``; its text is the detail, a ``VaultError`` a FAIL (info if not required)."""

        try:
            detail = fn()
        except VaultError as exc:
            self.line("FAIL" if required else "info", label, f"{exc.code}: {exc}")
            return False
        self.line("ok", label, detail)
        return True


def _pin_source(cfg: Settings) -> str:
    source = cfg.pkcs11.pin_source
    if source.startswith("file:"):
        return f"the PIN file {source.removeprefix('file:')}"
    return "the OS keyring" if source == "keyring" else "a prompt"


def _pin_state(report: Report, cfg: Settings, try_pin: bool) -> bool:
    """Whether doctor may log in: never at a final try or a lock; after a wrong PIN only with
    ``--try-pin``."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import app

    holder: list[bool] = []

    def state() -> str:
        pin = app.token_pin_state(cfg)
        holder.append(not pin.unsafe_to_guess or (try_pin and not pin.final_try and not pin.locked))
        return f"token {cfg.pkcs11.token_label!r}: {pin.describe()}; PIN from {_pin_source(cfg)}"

    if not report.check("token PIN", state) or not holder:
        return False
    if not holder[0]:
        report.line(
            "FAIL",
            "token login",
            f"not tried, so no PIN try is spent: check {_pin_source(cfg)}, then run `vaultd "
            "unlock` (or `vaultd doctor --try-pin` when it is not the final try)",
        )
    return holder[0]


def _token_line(vault: OpenStore, warnings: list[str]) -> str:
    info = vault.token.inspect()
    count = len(vault.store.list()) if vault.store.exists() else 0
    if "keystore" in info:
        if not info.get("hardware"):
            warnings.append(
                f"keystore: {info['keystore']!r} is a SOFTWARE key store, weaker than a PKCS#11 "
                "token: the vault key is only as safe as this account and its keyring "
                f"(`vaultd status` shows keystore: {info['keystore']}, hardware: false)"
            )
        return f"key store {info['keystore']!r}, key {info['key_id']}; {count} record(s)"
    scheme = _HOST_SEALED.get(str(info.get("scheme")))
    if scheme is not None:
        _host_sealed_warnings(info, warnings)
        return (
            f"token {info.get('token_label')!r} (serial {info.get('token_serial')}), scheme "
            f"{scheme} ({info.get('key_id')}), audit {info.get('audit')}; store has {count} "
            "record(s)"
        )
    attrs = info.get("key_attributes", {})
    shown = ", ".join(
        f"{k}={attrs.get(k)}"
        for k in ("KEY_TYPE", "VALUE_LEN", "SENSITIVE", "EXTRACTABLE")
        if isinstance(attrs, dict)
    )
    used, limit = info.get("encryptions"), info.get("encryption_limit")
    usage = ""
    if isinstance(used, int) and isinstance(limit, int):
        usage = f"{used:,} of {limit:,} encryptions; "
        if used >= limit * 9 // 10:
            warnings.append(
                f"the token key has made {used:,} of its {limit:,} encryptions, and sealing "
                "stops at the limit: replace the key soon (SECURITY.md, key usage)"
            )
    return (
        f"token {info.get('token_label')!r} (serial {info.get('token_serial')}), "
        f"key {shown}; {usage}store has {count} record(s)"
    )


_HOST_SEALED: Final = {"ecdh-p256": "token ECDH", "rsa-oaep": "token RSA-OAEP"}
_GIVES_UP: Final = {
    "ecdh-p256": (
        "scheme: token ECDH. The P-256 key never leaves the token, but each record open puts "
        "the ECDH secret and that record's AES key in this host's memory for the moment of the "
        "open (token AEAD keeps them in the token); one ECDH per open, no key is kept"
    ),
    "rsa-oaep": (
        "scheme: token RSA-OAEP. The RSA-2048 key never leaves the token, but each record open "
        "puts that record's data key in this host's memory for the moment of the open (token "
        "AEAD keeps it in the token); one unwrap per open, no key is kept. RSA-2048 gives about "
        "112-bit strength, against 128 for P-256 and 256 for token AEAD's AES-256"
    ),
}


def _host_sealed_warnings(info: dict[str, object], warnings: list[str]) -> None:
    """What token ECDH or token RSA-OAEP gives up against token AEAD (SECURITY.md, sealing
    schemes)."""
    warnings.append(_GIVES_UP[str(info.get("scheme"))])
    if not info.get("rollback_protection"):
        warnings.append(
            "rollback protection is unavailable on this token: it keeps no data objects, so "
            "the store generation is not anchored and an older copy of the store would open "
            "(SECURITY.md)"
        )


def _store_checks(report: Report, cfg: Settings, vault: OpenStore) -> None:
    """Profiles against the records the store holds; the audit chain under the token's MAC."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.core.records import seed_record_name
    from vaultd.fido2.gate import load_enrolled
    from vaultd.store.audit import verify

    stored = set(vault.store.names(RecordKind.KEY_PAIR)) if vault.store.exists() else set()
    seeds = set(vault.store.names(RecordKind.TOTP_SEED)) if vault.store.exists() else set()
    enrolled = [c for c in load_enrolled(vault.store) if not c.suspect] if stored else []
    for name, profile in sorted(cfg.profiles.items()):
        if profile.credentials and profile.credentials not in stored:
            report.line(
                "FAIL",
                f"profile {name}",
                f"credentials {profile.credentials!r} is not stored: `vaultd add "
                f"{profile.credentials}`",
            )
        if profile.approval is ApprovalMethod.CODE:
            continue
        source = cfg.profiles.get(profile.source_profile or name, profile)
        serial = source.mfa_serial
        if serial and seed_record_name(serial) not in seeds:
            report.line(
                "FAIL",
                f"profile {name}",
                f"approval {profile.approval.value!r} needs the sealed seed of {serial}: "
                f"`vaultd mfa add-totp {serial}`",
            )
        if not enrolled:
            report.line(
                "FAIL",
                f"profile {name}",
                f"approval {profile.approval.value!r} needs an enrolled security key: "
                "`vaultd fido2 enroll --name NAME`",
            )
    report.line("ok", "profiles", f"{len(cfg.profiles)} checked against the store")
    if cfg.audit_path.exists():
        report.check(
            "audit log",
            lambda: f"{verify(cfg.audit_path, vault.token.mac_verify)} records, chain intact",
        )
    else:
        report.line("info", "audit log", f"{cfg.audit_path} absent (no daemon has run yet)")


def _open_checks(report: Report, cfg: Settings, warnings: list[str]) -> None:
    """Log in once: the key, the store, the profiles against it and the audit chain."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import app

    label = "token, key and store" if app.uses_token(cfg) else "key store, key and store"
    try:
        with app.opened_vault(cfg) as vault:
            report.line("ok", label, _token_line(vault, warnings))
            _store_checks(report, cfg, vault)
            _piv_policy(report, vault)  # last: a second PC/SC connection (see piv_policy)
            _piv_access(report, vault)
    except VaultError as exc:
        report.line("FAIL", label, f"{exc.code}: {exc}")


def _piv_policy(report: Report, vault: OpenStore) -> None:
    """The PIV vault key's PIN and touch policy, and what touch "always" buys."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.keys.ecdh import HostSealedKey

    key = vault.token
    if not isinstance(key, HostSealedKey) or key.piv_slot is None:
        return
    label = f"PIV slot {key.piv_slot} policy"
    policy = key.piv_policy()
    if policy is None:
        report.line(
            "info",
            label,
            "unread: needs yubikit (pip install 'vaultd[yubikey]') and firmware 5.3 or later",
        )
        return
    pin, touch = policy
    if touch == "always":
        gain = (
            "every record open waits for a finger on the key, so malware that has the PIN "
            "cannot open a record without it"
        )
    else:
        gain = (
            'with touch "always" (pkcs11.touch_policy, set before `vaultd init` makes the key) '
            "malware that has the PIN could not open a record without a finger on the key"
        )
    report.line("ok", label, f"PIN {pin}, touch {touch}: {gain}")


def _piv_access(report: Report, vault: OpenStore) -> None:
    """Factory default PIN, PUK or management key on the PIV card: each a WARN with its fix."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.keys.ecdh import HostSealedKey

    key = vault.token
    access = key.card_access() if isinstance(key, HostSealedKey) else None
    if access is None:
        return
    if access.default_pin:
        report.line(
            "WARN",
            "PIV PIN",
            "the factory default (123456): anyone holding the card can use its keys; change "
            "it with `ykman piv access change-pin`, then `vaultd pin store`",
        )
    if access.default_puk:
        report.line(
            "WARN",
            "PIV PUK",
            "the factory default (12345678): anyone holding the card can set a new PIN once "
            "it is blocked; change it with `ykman piv access change-puk`",
        )
    report.line(*_management_key_line(access))


def _management_key_line(access: CardAccess) -> tuple[str, str, str]:
    label = "PIV management key"
    if access.default_management_key and access.management_key_stored:
        return (
            "WARN",
            label,
            "an interrupted `vaultd init --protect-management-key` left the factory default "
            "in place: run it again to complete it",
        )
    if access.default_management_key:
        return (
            "WARN",
            label,
            "the factory default: anyone holding the card can replace its keys, the vault "
            "key with them; run `vaultd init --protect-management-key`",
        )
    where = (
        "stored PIN-protected on the card"
        if access.management_key_stored
        else "kept off the card: making keys needs it with --management-key-stdin"
    )
    return "ok", label, f"not the factory default; {where}"


def _fido2_devices(report: Report, cfg: Settings) -> None:
    if all(p.approval is ApprovalMethod.CODE for p in cfg.profiles.values()):
        return

    def count() -> str:
        # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
        from vaultd.fido2.devices import open_devices

        devices = open_devices(cfg.fido2.devices)
        for device in devices:
            device.close()
        if not devices:
            from vaultd.errors import ApprovalUnavailable

            raise ApprovalUnavailable(
                f"no security key found ({', '.join(cfg.fido2.devices)}): plug one in; touch "
                "profiles cannot be approved without it"
            )
        return f"{len(devices)} present"

    report.check("FIDO2 devices", count, required=False)


def _daemon(report: Report, cfg: Settings) -> None:
    """Whether the daemon answers, and whether it runs with the config file as it is now."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.commands.status import stale_config

    def running() -> str:
        # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
        from vaultd.ipc.client import DaemonClient

        reply = DaemonClient(cfg.socket).request("status")
        stale.append(stale_config(reply))
        state = "sealed" if reply.get("sealed") else "unsealed"
        return f"running on {cfg.socket} ({state})"

    stale: list[str] = []
    report.check("daemon", running, required=False)  # not running is not a defect
    if stale and stale[0]:
        report.line("WARN", "daemon config", stale[0])


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import app
    from vaultd.commands.doctor_aws import check_aws_config
    from vaultd.plugin.registry import doctor_lines
    from vaultd.settings import default_config_path, load_settings

    report = Report()
    holder: list[Settings] = []

    def config() -> str:
        holder.append(load_settings())
        path = default_config_path()
        return str(path) if path.exists() else f"{path} absent, defaults in use"

    if not report.check("config", config):
        return 1
    cfg = holder[0]
    ready = True
    if app.uses_token(cfg):
        ready = report.check("pkcs11 module", lambda: app.module_path(cfg))
    ready &= report.check("data dir", lambda: str(app.prepare_data_dir(cfg)))
    if ready and app.uses_token(cfg):
        ready = _pin_state(report, cfg, args.try_pin)
    warnings: list[str] = []
    if ready:
        _open_checks(report, cfg, warnings)
    for warning in warnings:
        report.line("WARN", warning)
    _fido2_devices(report, cfg)
    for status, label, detail in check_aws_config(cfg):
        report.line(status, label, detail)
    for line in doctor_lines(cfg.plugins.allow):
        bad = any(word in line for word in (": failed", "WARNING", "not installed"))
        report.line("WARN" if bad else "info", f"plugin {line}")
    _daemon(report, cfg)
    return 0 if report.ok else 1
