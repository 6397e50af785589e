"""The daemon's persisted, non-secret state: the OTP ledger and rate-limit counters.

One JSON file in the data dir, written atomically (0600).  It holds no secret: only spent
codes, as digests, for a few minutes; losing it only forgets which codes were used.
"""

from __future__ import annotations

import json
from pathlib import Path

from vaultd.errors import StoreUnreadable
from vaultd.store.atomic import atomic_write

STATE_VERSION = 1
MAX_STATE_BYTES = 1 << 20


class StateFile:
    """Load and save the ledger dict (the ``StateSink`` port)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def load_ledger(self) -> dict[str, object] | None:
        """The saved ledger, or ``None`` when there is no state file yet."""
        try:
            with open(self._path, "rb") as fh:
                raw = fh.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnreadable(f"cannot read {self._path}: {exc.strerror}") from None
        if len(raw) > MAX_STATE_BYTES:
            raise StoreUnreadable(f"{self._path} is larger than 1 MiB: remove it and restart")
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise StoreUnreadable(
                f"{self._path} is not JSON: move it aside and restart (used-code memory resets)"
            ) from None
        if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
            raise StoreUnreadable(f"{self._path} has an unknown format version")
        ledger = obj.get("ledger")
        if not isinstance(ledger, dict):
            raise StoreUnreadable(f"{self._path} has no ledger object")
        return ledger

    def save_ledger(self, data: dict[str, object]) -> None:
        """Write the ledger atomically."""
        body = json.dumps({"version": STATE_VERSION, "ledger": data}, sort_keys=True)
        atomic_write(self._path, body.encode())
