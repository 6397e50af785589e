"""The ``status`` use case: the service's state plus the daemon's own facts (no secrets)."""

from __future__ import annotations

from dataclasses import dataclass

from vaultd.core.breakglass import BreakGlassDesk
from vaultd.core.service import VaultService


@dataclass(frozen=True, slots=True)
class DaemonFacts:
    """What the daemon knows of itself: settings it runs with and its process."""

    keystore: str
    hardware: bool
    token_label: str
    socket: str
    pid: int
    config_digest: str


def daemon_status(
    service: VaultService,
    breakglass: BreakGlassDesk,
    facts: DaemonFacts,
    root_records: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """The ``status`` reply; ``root_records`` names the stored root key pairs."""
    status = service.status(root_records)
    status.update(
        keystore=facts.keystore,
        hardware=facts.hardware,
        grants=breakglass.active(),
        token_label=facts.token_label,
        socket=facts.socket,
        pid=facts.pid,
        config_digest=facts.config_digest,
    )
    return status
