"""`vaultd serve`: the daemon.

- :mod:`~vaultd.daemon.lifecycle`: :class:`Daemon` (start, signals, housekeeping, stop) and
  :func:`serve`;
- :mod:`~vaultd.daemon.handlers`: the handler of every socket op (the op table's daemon side);
- :mod:`~vaultd.daemon.events`: approval events to waiting clients and TUI subscribers;
- :mod:`~vaultd.daemon.token_owner`: the one owner of the token and the sealed store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaultd.daemon.lifecycle import Daemon, serve

__all__ = ["Daemon", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy: vaultd.app imports the token owner from this package, and lifecycle imports app.
    if name in __all__:
        from vaultd.daemon import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(name)
