"""`vaultd doctor`: check config, module, token or key store, permissions, plugins and daemon."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("doctor", help="check the installation and say how to fix problems")
    p.set_defaults(func=run)


def _check(label: str, fn: Callable[[], str], *, required: bool = True) -> bool:
    from vaultd.errors import VaultError

    try:
        detail = fn()
    except VaultError as exc:
        print(f"{'FAIL' if required else 'info'}  {label}: {exc.code}: {exc}")
        return False
    print(f"ok    {label}{': ' + detail if detail else ''}")
    return True


def _plugin_lines(allow: tuple[str, ...]) -> None:
    """One line per discovered plugin; a broken one is a WARN line, never a failure."""
    from vaultd.plugin.registry import doctor_lines

    for line in doctor_lines(allow):
        bad = any(word in line for word in (": failed", "WARNING", "not installed"))
        print(f"{'WARN' if bad else 'info'}  plugin {line}")


def run(args: argparse.Namespace) -> int:
    from vaultd import app
    from vaultd.settings import Settings, default_config_path, load_settings

    holder: list[Settings] = []

    def config() -> str:
        holder.append(load_settings())
        path = default_config_path()
        return str(path) if path.exists() else f"{path} absent, defaults in use"

    if not _check("config", config):
        return 1
    cfg = holder[0]
    ok = True
    if app.uses_token(cfg):
        ok &= _check("pkcs11 module", lambda: app.module_path(cfg))
    ok &= _check("data dir", lambda: str(app.prepare_data_dir(cfg)))
    software: list[str] = []
    warnings: list[str] = []

    def token() -> str:
        with app.opened_vault(cfg) as vault:
            info = vault.token.inspect()
            count = len(vault.store.list()) if vault.store.exists() else 0
        if "keystore" in info:
            if not info.get("hardware"):
                software.append(str(info["keystore"]))
            return f"key store {info['keystore']!r}, key {info['key_id']}; {count} record(s)"
        attrs = info.get("key_attributes", {})
        assert isinstance(attrs, dict)  # noqa: S101 - inspect() returns a dict here
        shown = ", ".join(
            f"{k}={attrs.get(k)}" for k in ("KEY_TYPE", "VALUE_LEN", "SENSITIVE", "EXTRACTABLE")
        )
        used, limit = info.get("encryptions"), info.get("encryption_limit")
        usage = ""
        if isinstance(used, int) and isinstance(limit, int):
            usage = f"{used:,} of {limit:,} encryptions; "
            if used >= limit * 9 // 10:
                warnings.append(
                    f"WARN  the token key has made {used:,} of its {limit:,} encryptions, and "
                    "sealing stops at the limit: replace the key soon (SECURITY.md, key usage)"
                )
        return (
            f"token {info.get('token_label')!r} (serial {info.get('token_serial')}), "
            f"key {shown}; {usage}store has {count} record(s)"
        )

    if ok:
        label = "token, key and store" if app.uses_token(cfg) else "key store, key and store"
        ok &= _check(label, token)
    for name in software:
        print(
            f"WARN  keystore: {name!r} is a SOFTWARE key store, weaker than a PKCS#11 token: "
            "the vault key is only as safe as this account and its keyring "
            f"(`vaultd status` shows keystore: {name}, hardware: false)"
        )
    for line in warnings:
        print(line)
    _plugin_lines(cfg.plugins.allow)

    def daemon() -> str:
        from vaultd.ipc.client import DaemonClient

        reply = DaemonClient(cfg.socket).request("status")
        return f"running on {cfg.socket} ({'sealed' if reply.get('sealed') else 'unsealed'})"

    _check("daemon", daemon, required=False)  # not running is not a defect
    return 0 if ok else 1
