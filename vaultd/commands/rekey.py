"""`vaultd rekey [--module PATH --token-label LABEL ...]`: re-seal every record, to the same
token and the store's backups, or to another token or scheme.

One atomic replacement of the store file: killed at any point, the store opens as the old or
the new generation, and running it again completes it.  Moved to another token, the store is
also sealed to the old token (a transitional recipient), so it opens with the old config or
the new one until ``vaultd keys remove`` drops the old token.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.commands._args import (
    Subparsers,
    add_management_key_argument,
    read_management_key,
    settings,
)

if TYPE_CHECKING:
    from vaultd.app import OpenStore
    from vaultd.core.ports import SealingKey
    from vaultd.settings import Settings

SCHEMES = ("auto", "aead", "ecdh", "rsa-oaep")
_CONFIG_SCHEMES = {"ecdh-p256": "ecdh", "rsa-oaep": "rsa-oaep"}
"""``pkcs11.scheme`` by key id prefix; a bare key id is a token AEAD key."""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("rekey", help="re-seal every record, to the same or to another token")
    p.add_argument("--module", metavar="PATH", help="the new token's PKCS#11 module")
    p.add_argument("--token-label", metavar="LABEL", help="the new token's label")
    p.add_argument("--scheme", metavar="S", help=f"the new key's scheme: {'|'.join(SCHEMES)}")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key-label", metavar="L", help="the new key's label (made if absent)")
    key.add_argument(
        "--piv-slot", metavar="S", help="PIV card: the vault key's slot (else pkcs11.piv_slot)"
    )
    p.add_argument(
        "--piv-audit-slot",
        metavar="S",
        help="PIV card: the audit key's slot (else pkcs11.piv_audit_slot)",
    )
    add_management_key_argument(p, after=" (the line after the PIN's when stdin is no terminal)")
    p.set_defaults(func=run)


_MOVE_OPTIONS = ("module", "token_label", "scheme", "key_label", "piv_slot", "piv_audit_slot")


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault

    if args.management_key_stdin or any(getattr(args, name) for name in _MOVE_OPTIONS):
        return _move(args, settings())
    with opened_vault(settings()) as vault:
        vault.store.reseal()
        count = len(vault.store.list())
        openers = len(vault.store.recipients())
    print(f"re-sealed {count} records to {openers} key(s) at a new store generation")
    return 0


@dataclass(frozen=True)
class _Target:
    """Where the options move the store."""

    module: str
    """The new token's allowlisted module."""
    piv_slots: tuple[str, str]
    """On a PIV card, the vault key's and the audit key's slots."""


def _piv_slots(args: argparse.Namespace, cfg: Settings) -> tuple[str, str]:
    """The PIV slots the options (else the config) name, checked."""
    from vaultd.errors import BadRequest
    from vaultd.keys.piv import check_slot

    given = (args.piv_slot, "--piv-slot"), (args.piv_audit_slot, "--piv-audit-slot")
    vault, audit = (check_slot(slot, option) if slot else None for slot, option in given)
    slots = (vault or cfg.pkcs11.piv_slot, audit or cfg.pkcs11.piv_audit_slot)
    if slots[0] == slots[1]:
        raise BadRequest(
            f"the vault key and the audit key need two different slots, not {slots[0]} twice: "
            "pass --piv-slot and --piv-audit-slot (nothing was done)"
        )
    return slots


def _check_args(args: argparse.Namespace, cfg: Settings) -> _Target:
    """The new token and slots, once the options name another present token."""
    from vaultd.app import allowed_module, module_path, uses_token
    from vaultd.errors import BadRequest
    from vaultd.keys.backup_token import identity

    if not args.module or not args.token_label:
        raise BadRequest("rekey to another token needs --module PATH and --token-label LABEL")
    if (args.scheme or "auto") not in SCHEMES:
        raise BadRequest(f"unknown scheme {args.scheme[:40]!r}: use one of {', '.join(SCHEMES)}")
    if not uses_token(cfg):
        raise BadRequest("rekey to another token needs a vault kept in a PKCS#11 token")
    module = allowed_module(cfg, args.module)
    new = identity(module, args.token_label)  # present, before any PIN
    if new == identity(module_path(cfg), cfg.pkcs11.token_label):
        raise BadRequest(
            f"token {args.token_label!r} is the vault's token already: name another token "
            "(plain `vaultd rekey` re-seals to the same one); nothing was done"
        )
    return _Target(module, _piv_slots(args, cfg))


def _open_new(args: argparse.Namespace, cfg: Settings, target: _Target) -> SealingKey:
    """The new token's vault key, logged in with a PIN read hidden or from stdin; missing keys
    of a PIV card are made as `vaultd init` makes them (``pkcs11.touch_policy``)."""
    from vaultd.app import open_token_key
    from vaultd.commands.pin import read_pin
    from vaultd.keys.piv import PivSetup

    pin = read_pin(f"user PIN of the new token {args.token_label!r}", confirm=False)
    try:
        given = read_management_key() if args.management_key_stdin else None
        return open_token_key(
            target.module,
            args.token_label,
            args.key_label or cfg.pkcs11.key_label,
            pin,
            scheme=args.scheme or "auto",
            create_key=True,
            piv_slots=target.piv_slots,
            piv_setup=PivSetup(management_key=given, touch_policy=cfg.pkcs11.touch_policy),
        )
    finally:
        pin[:] = bytes(len(pin))


def _archive(cfg: Settings, old: SealingKey) -> Path:
    """Where the old token's audit chain goes: beside the log, named by the old key."""
    path = cfg.audit_path
    return path.with_name(f"{path.name}.archive-{old.key_id.replace(':', '-')}")


def _audit_handed_over(cfg: Settings, old: SealingKey, new: SealingKey) -> bool:
    """Whether an earlier run handed the audit chain to ``new``; if not, check that the old
    token's chain is whole, before anything is written (``AuditTampered`` otherwise)."""
    from vaultd.errors import AuditTampered
    from vaultd.store import audit

    if not os.path.lexists(cfg.audit_path):
        return False
    try:
        audit.verify(cfg.audit_path, new.mac_verify)
        return True
    except AuditTampered:
        if not _archive(cfg, old).exists():  # else a killed run moved part of it already
            audit.verify(cfg.audit_path, old.mac_verify)
        return False


def _hand_over_audit(cfg: Settings, old: SealingKey, moved: OpenStore) -> None:
    """Archive the old token's audit chain (verifiable with it) and start the new token's
    with a ``store_moved`` record."""
    from vaultd.store import audit

    into = _archive(cfg, old)
    audit.archive_chain(cfg.audit_path, into)
    moved.audit("store_moved", old_key=old.key_id, new_key=moved.token.key_id, archive=str(into))


def _move(args: argparse.Namespace, cfg: Settings) -> int:
    from vaultd.app import no_daemon

    target = _check_args(args, cfg)
    with no_daemon(cfg, _STOP_FIRST):
        return _move_held(args, cfg, target)


_STOP_FIRST = (
    "stop it first: a rekey to another token hands the audit log to the new token, and a "
    "daemon still on the old one could not audit (nothing was done)"
)


def _move_held(args: argparse.Namespace, cfg: Settings, target: _Target) -> int:
    """:func:`_move` with the data dir held against a daemon."""
    from vaultd.app import open_vault_with, opened_vault
    from vaultd.keys.ecdh import HostSealedKey

    new = _open_new(args, cfg, target)
    try:
        with opened_vault(cfg) as vault:
            handed_over = _audit_handed_over(cfg, vault.token, new)
            snap = vault.store.snapshot()
            moved = open_vault_with(cfg, new)
            moved.store.move_to(snap, snap.backups, vault.token)
            if not handed_over:
                _hand_over_audit(cfg, vault.token, moved)
            old_id = vault.token.key_id
        scheme = _CONFIG_SCHEMES.get(new.key_id.partition(":")[0], "aead")
        card = isinstance(new, HostSealedKey) and new.piv_slot is not None
        notes = new.notes if isinstance(new, HostSealedKey) else []
    finally:
        new.close()
    lines = [("module", target.module), ("token_label", args.token_label), ("scheme", scheme)]
    if card:  # a PIV card's keys are found by slot
        lines += [("piv_slot", target.piv_slots[0]), ("piv_audit_slot", target.piv_slots[1])]
    else:
        lines.append(("key_label", args.key_label or cfg.pkcs11.key_label))
    _show_switch(lines, old_id, len(snap.records), args.token_label)
    for note in notes:
        print(note)
    return 0


def _show_switch(lines: list[tuple[str, str]], old_id: str, count: int, label: str) -> None:
    """The config ``lines`` to set, and the old token's removal once they are set."""
    import json

    config = "\n".join(f"{name} = {json.dumps(value)}" for name, value in lines)
    print(
        f"re-sealed {count} records to token {label!r}, the old token and the "
        f"backups.\nSet in the config (and pin_source for the new token's PIN):\n\n"
        f"[pkcs11]\n{config}\n\nThen, once `vaultd list` works with it:\n"
        f"    vaultd keys remove {old_id}"
    )
