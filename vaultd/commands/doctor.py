"""`vaultd doctor`: check config, module, token, key, permissions and daemon, with fixes."""

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
    ok = _check("pkcs11 module", lambda: app.module_path(cfg))
    ok &= _check("data dir", lambda: str(app.prepare_data_dir(cfg)))

    def token() -> str:
        with app.opened_vault(cfg) as vault:
            info = vault.token.inspect()
            count = len(vault.store.list()) if vault.store.exists() else 0
        attrs = info.get("key_attributes", {})
        assert isinstance(attrs, dict)  # noqa: S101 - inspect() returns a dict here
        shown = ", ".join(
            f"{k}={attrs.get(k)}" for k in ("KEY_TYPE", "VALUE_LEN", "SENSITIVE", "EXTRACTABLE")
        )
        return (
            f"token {info.get('token_label')!r} (serial {info.get('token_serial')}), "
            f"key {shown}; store has {count} record(s)"
        )

    if ok:
        ok &= _check("token, key and store", token)

    def daemon() -> str:
        from vaultd.ipc.client import DaemonClient

        reply = DaemonClient(cfg.socket).request("status")
        return f"running on {cfg.socket} ({'sealed' if reply.get('sealed') else 'unsealed'})"

    _check("daemon", daemon, required=False)  # not running is not a defect
    return 0 if ok else 1
