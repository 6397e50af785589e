"""The daemon client as commands use it (settings decide the socket)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultd.commands._args import settings

if TYPE_CHECKING:
    from vaultd.ipc.client import DaemonClient


def client(timeout: float = 70.0) -> DaemonClient:
    """A client for the configured socket."""
    from vaultd.ipc.client import DaemonClient

    return DaemonClient(settings().socket, timeout=timeout)
