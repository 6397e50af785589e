"""Used TOTP time steps and failure counters per MFA serial, as pure, persistable state.

Each (serial, time step) goes to STS at most once, across restarts (docs/threat-model.md T11).
Typed codes cannot be mapped to a step without the seed, so they are also remembered by a digest of
the code for the retention window.  Failures are limited per serial: at most 5 per 5 minutes, then
growing delays, and a lock after 20 in a row until the user unlocks it (docs/threat-model.md T12).
Failure times are wall-clock seconds so that persisted lockouts survive restarts.

Spent codes are not secrets (AWS refuses a second use), and only their digests are kept.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from vaultd.errors import CodeReused, MfaLocked, RateLimited, StoreUnreadable

LEDGER_VERSION = 1
STEP_SECONDS = 30
KEEP_STEPS = 10
"""Steps kept behind the newest one seen per serial (5 minutes).

Pruned steps are summarised by ``floor``, the highest step dropped: every step at or below it
is refused, so a pruned step is never sent again.
"""

FAILURE_WINDOW_SECONDS = 300.0
MAX_FAILURES_PER_WINDOW = 5
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 3600.0
LOCK_AFTER_FAILURES = 20

_MAX_SERIAL_LEN = 256
_MAX_ABS_STEP = 2**40
_DIGEST_LEN = 64


def step_for(t: datetime, period: int = STEP_SECONDS) -> int:
    """The TOTP time step that contains the aware datetime ``t``."""
    if t.tzinfo is None:
        raise ValueError("step_for needs a timezone-aware datetime")
    if period <= 0:
        raise ValueError("the TOTP period must be positive")
    return math.floor(t.timestamp() / period)


def _digest(serial: str, code: str) -> str:
    return hashlib.sha256(f"{serial}\x00{code}".encode()).hexdigest()


@dataclass(slots=True)
class _SerialState:
    steps: set[int] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)
    failures: list[float] = field(default_factory=list)
    consecutive: int = 0
    last_failure: float | None = None
    floor: int | None = None

    def spent(self, step: int) -> bool:
        return step in self.steps or (self.floor is not None and step <= self.floor)

    def prune(self) -> None:
        seen = [*self.steps, *self.codes.values()]
        if not seen:
            return
        horizon = max(seen) - KEEP_STEPS
        dropped = [s for s in seen if s < horizon]
        if dropped:
            self.floor = max(dropped) if self.floor is None else max(self.floor, *dropped)
        self.steps = {s for s in self.steps if s >= horizon}
        self.codes = {d: s for d, s in self.codes.items() if s >= horizon}

    def empty(self) -> bool:
        return (
            not (self.steps or self.codes or self.failures or self.consecutive)
            and self.floor is None
        )


class OtpLedger:
    """Used steps, typed-code digests and failure counters for every MFA serial."""

    def __init__(self) -> None:
        self._serials: dict[str, _SerialState] = {}

    def _state(self, serial: str) -> _SerialState:
        return self._serials.setdefault(serial, _SerialState())

    # --- single use -------------------------------------------------------------------

    def is_used(self, serial: str, step: int) -> bool:
        """Whether ``step`` was already used for ``serial`` (or lies at or below pruned steps)."""
        state = self._serials.get(serial)
        return state is not None and state.spent(step)

    def check_and_mark(self, serial: str, step: int, *, code: str | None = None) -> None:
        """Mark a generated code's ``step`` as used, or raise ``CodeReused`` if it was.

        Pass the generated ``code`` too, so a later typed copy of it is refused as well.
        """
        if self.is_used(serial, step) or (code is not None and self._code_seen(serial, code)):
            raise CodeReused(
                "this MFA code's time step was already used for this device; wait for the next code"
            )
        self._mark(serial, step, code)

    def check_and_mark_typed(self, serial: str, code: str, step: int) -> None:
        """Mark a typed ``code`` submitted during ``step``, or raise ``CodeReused``.

        A typed code is refused when the same code was used for ``serial`` within the
        retention window; ``step`` is marked so no generated code reuses it.
        """
        state = self._serials.get(serial)
        pruned = state is not None and state.floor is not None and step <= state.floor
        if self._code_seen(serial, code) or pruned:
            raise CodeReused("this MFA code was already used; wait for the next code")
        self._mark(serial, step, code)

    def next_unused_step(self, serial: str, current_step: int) -> int | None:
        """``current_step`` if unused, else the next step if unused, else ``None``.

        A generated code for a later step may be sent only once that step has started.
        """
        for step in (current_step, current_step + 1):
            if not self.is_used(serial, step):
                return step
        return None

    def _code_seen(self, serial: str, code: str) -> bool:
        state = self._serials.get(serial)
        return state is not None and _digest(serial, code) in state.codes

    def _mark(self, serial: str, step: int, code: str | None) -> None:
        state = self._state(serial)
        state.steps.add(step)
        if code is not None:
            state.codes[_digest(serial, code)] = step
        state.prune()

    # --- failures and rate limits -----------------------------------------------------

    def record_failure(self, serial: str, now: datetime) -> None:
        """Count a failed code or PIN for ``serial`` at wall time ``now``."""
        state = self._state(serial)
        t = self._normalise(state, now)
        state.failures = [*state.failures, t][-MAX_FAILURES_PER_WINDOW:]
        state.consecutive += 1
        state.last_failure = t

    def record_success(self, serial: str) -> None:
        """A code was accepted: clear the failure counters of ``serial``."""
        self._reset_failures(serial)

    def unlock(self, serial: str) -> None:
        """Lift a lock after the user verified themselves in the TUI; clears the counters."""
        self._reset_failures(serial)

    def is_locked(self, serial: str) -> bool:
        """Whether ``serial`` is locked after too many consecutive failures."""
        state = self._serials.get(serial)
        return state is not None and state.consecutive >= LOCK_AFTER_FAILURES

    def check_allowed(self, serial: str, now: datetime) -> None:
        """Raise ``MfaLocked`` or ``RateLimited`` (with ``retry_after``) if a try is not allowed."""
        state = self._serials.get(serial)
        if state is None:
            return
        if state.consecutive >= LOCK_AFTER_FAILURES:
            raise MfaLocked(
                f"MFA for this device is locked after {state.consecutive} failed codes in a "
                "row; unlock it in `vaultd tui` with user verification"
            )
        t = self._normalise(state, now)
        recent = [f for f in state.failures if f > t - FAILURE_WINDOW_SECONDS]
        retry = 0.0
        if len(recent) >= MAX_FAILURES_PER_WINDOW:
            retry = recent[-MAX_FAILURES_PER_WINDOW] + FAILURE_WINDOW_SECONDS - t
        if state.consecutive >= MAX_FAILURES_PER_WINDOW and state.last_failure is not None:
            exponent = state.consecutive - MAX_FAILURES_PER_WINDOW
            backoff = min(BACKOFF_BASE_SECONDS * 2.0 ** min(exponent, 32), BACKOFF_MAX_SECONDS)
            retry = max(retry, state.last_failure + backoff - t)
        if retry > 0:
            raise RateLimited(
                f"too many failed MFA codes for this device; retry after {math.ceil(retry)} s",
                retry_after=retry,
            )

    @staticmethod
    def _normalise(state: _SerialState, now: datetime) -> float:
        """Wall seconds of ``now``; failure times ahead of it (a clock step back) become now."""
        t = now.timestamp()
        state.failures = [min(f, t) for f in state.failures]
        if state.last_failure is not None:
            state.last_failure = min(state.last_failure, t)
        return t

    def _reset_failures(self, serial: str) -> None:
        state = self._serials.get(serial)
        if state is None:
            return
        state.failures = []
        state.consecutive = 0
        state.last_failure = None
        if state.empty():
            del self._serials[serial]

    # --- persistence ------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """JSON-safe state for an adapter to persist."""
        serials: dict[str, object] = {}
        for serial, state in sorted(self._serials.items()):
            if state.empty():
                continue
            serials[serial] = {
                "steps": sorted(state.steps),
                "codes": dict(sorted(state.codes.items())),
                "failures": list(state.failures),
                "consecutive": state.consecutive,
                "last_failure": state.last_failure,
                "floor": state.floor,
            }
        return {"version": LEDGER_VERSION, "serials": serials}

    @classmethod
    def from_dict(cls, data: object) -> OtpLedger:
        """Rebuild a ledger from :meth:`to_dict` output; raise ``StoreUnreadable`` if invalid."""
        obj = _mapping(data, "ledger", {"version", "serials"})
        if _integer(obj["version"], "version") != LEDGER_VERSION:
            _bad("version is not supported")
        ledger = cls()
        serials = obj["serials"]
        if not isinstance(serials, dict):
            _bad("serials is not an object")
        for serial, raw in serials.items():
            if not isinstance(serial, str) or not 0 < len(serial) <= _MAX_SERIAL_LEN:
                _bad("a serial is empty or too long")
            ledger._serials[serial] = _parse_serial(raw)
        return ledger


_SERIAL_FIELDS = {"steps", "codes", "failures", "consecutive", "last_failure", "floor"}


def _parse_serial(raw: object) -> _SerialState:
    obj = _mapping(raw, "serial entry", _SERIAL_FIELDS)
    steps_raw = obj["steps"]
    if not isinstance(steps_raw, list):
        _bad("steps is not a list")
    steps = {_step(s) for s in steps_raw}
    codes_raw = obj["codes"]
    if not isinstance(codes_raw, dict):
        _bad("codes is not an object")
    codes: dict[str, int] = {}
    for digest, step in codes_raw.items():
        if (
            not isinstance(digest, str)
            or len(digest) != _DIGEST_LEN
            or digest.strip("0123456789abcdef")
        ):
            _bad("a code digest is malformed")
        codes[digest] = _step(step)
    failures_raw = obj["failures"]
    if not isinstance(failures_raw, list) or len(failures_raw) > MAX_FAILURES_PER_WINDOW:
        _bad("failures is not a short list")
    failures = [_timestamp(f, "failures") for f in failures_raw]
    consecutive = _integer(obj["consecutive"], "consecutive")
    if consecutive < 0:
        _bad("consecutive is negative")
    last_raw = obj["last_failure"]
    last = None if last_raw is None else _timestamp(last_raw, "last_failure")
    floor = None if obj["floor"] is None else _step(obj["floor"])
    return _SerialState(steps, codes, failures, consecutive, last, floor)


def _bad(problem: str) -> NoReturn:
    raise StoreUnreadable(
        f"the OTP ledger state is invalid ({problem}); restore the previous state file"
    )


def _mapping(value: object, what: str, keys: set[str]) -> dict[str, object]:
    if not isinstance(value, dict) or set(value) != keys:
        _bad(f"{what} does not have exactly the fields {', '.join(sorted(keys))}")
    return value


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{what} is not an integer")
    return value


def _step(value: object) -> int:
    step = _integer(value, "a step")
    if abs(step) > _MAX_ABS_STEP:
        _bad("a step is out of range")
    return step


def _timestamp(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _bad(f"{what} holds a value that is not a finite number")
    if abs(value) > 1e12:
        _bad(f"{what} holds a time out of range")
    return float(value)
