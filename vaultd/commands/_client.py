"""The daemon client as commands use it (settings decide the socket)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultd.commands._args import settings

if TYPE_CHECKING:
    from vaultd.ipc.client import DaemonClient


def client(timeout: float = 70.0) -> DaemonClient:
    """A client for the configured socket (a root daemon is trusted where ``ipc.allow_root``)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.ipc.client import DaemonClient

    cfg = settings()
    return DaemonClient(cfg.socket, timeout=timeout, allow_root_daemon=cfg.ipc.allow_root)
