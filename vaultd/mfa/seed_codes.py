"""AWS MFA TokenCodes generated from sealed virtual-MFA seeds (docs/threat-model.md T11, T27).

The daemon opens a seed only after a gate (a FIDO2 touch) passed for the request, computes one
code in memory and wipes the key. Every generated (serial, time step) is marked in the OTP
ledger before the code is returned, so no step is ever sent twice; when the current step is
spent the next one is used and the caller waits until it starts. Seeds live in ``bytearray``
buffers and are never logged (Python may still hold transient copies: see SECURITY.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from typing import Protocol

from vaultd.core.model import RecordKind
from vaultd.core.otp_ledger import OtpLedger, step_for
from vaultd.core.ports import Clock
from vaultd.core.records import TOTP_PERIOD, TotpSeed, decode_totp_seed, seed_record_name
from vaultd.errors import CodeReused, RecordCorrupt


class SeedStore(Protocol):
    """The part of :class:`vaultd.store.files.SealedStore` the seed helpers use."""

    def get(self, kind: RecordKind, name: str) -> bytes: ...

    def names(self, kind: RecordKind) -> list[str]: ...


def totp_code(key: bytearray, step: int, *, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1, RFC 4226 truncation) for time step ``step``."""
    mac = hmac.new(key, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def load_seed(store: SeedStore, serial: str) -> TotpSeed:
    """Open the sealed seed of ``serial`` (``RecordNotFound`` if none is stored)."""
    name = seed_record_name(serial)
    seed = decode_totp_seed(store.get(RecordKind.TOTP_SEED, name), name=name)
    if seed.serial != serial:  # the name is a hash of the serial; check the serial itself too
        seed.wipe()
        raise RecordCorrupt(
            f"the stored MFA seed for {serial!r} belongs to another serial: remove it with "
            f"`vaultd mfa remove {serial}` and add it again"
        )
    return seed


def seed_exists(store: SeedStore, serial: str) -> bool:
    """Whether a seed for ``serial`` is stored (without opening it)."""
    return seed_record_name(serial) in store.names(RecordKind.TOTP_SEED)


class SeedCodeSource:
    """TokenCodes from stored seeds, each (serial, step) at most once (the ``CodeSource`` role).

    ``load_seed(serial)`` opens a seed (blocking, token access); ``seed_exists(serial)`` says
    whether one is stored without opening it. The caller persists ``ledger`` after each code.
    """

    def __init__(
        self,
        load_seed: Callable[[str], TotpSeed],
        ledger: OtpLedger,
        clock: Clock,
        *,
        seed_exists: Callable[[str], bool],
    ) -> None:
        self._load = load_seed
        self._ledger = ledger
        self._clock = clock
        self._exists = seed_exists

    def has_seed(self, serial: str) -> bool:
        """Whether codes for ``serial`` can be generated here."""
        return self._exists(serial)

    def code_for(self, serial: str) -> tuple[str, float]:
        """A code for the first unused step, and the seconds to wait before sending it.

        The wait is 0 for the current step and positive for the next one. The step is marked
        used before this returns; ``CodeReused`` if the current and next steps are both spent.
        """
        now = self._clock.now()
        step = self._ledger.next_unused_step(serial, step_for(now, TOTP_PERIOD))
        if step is None:
            wait = math.ceil((step_for(now, TOTP_PERIOD) + 1) * TOTP_PERIOD - now.timestamp())
            raise CodeReused(
                "the current and the next MFA code for this device were already used; "
                f"try again in {wait} s"
            )
        seed = self._load(serial)
        try:
            code = totp_code(seed.key, step, digits=seed.digits)
        finally:
            seed.wipe()
        self._ledger.check_and_mark(serial, step, code=code)
        return code, max(0.0, step * TOTP_PERIOD - now.timestamp())
