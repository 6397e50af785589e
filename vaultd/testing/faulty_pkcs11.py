"""A scripted PKCS#11 layer for fault tests: token loss, hangs and PIN lockout (tests only).

:class:`FaultyPkcs11` wraps the real python-pkcs11 module of a (SoftHSM2) token and hands
:class:`~vaultd.keys.pkcs11.TokenKey` wrapped tokens, sessions and keys.  Every call still
reaches the real token unless a scripted fault fires first:

- :meth:`FaultyPkcs11.fail` raises a python-pkcs11 error (``DeviceRemoved``,
  ``TokenNotPresent``, ``SessionHandleInvalid``, ``DeviceError``...) at the next call of an
  operation, as a token pulled out mid-run would;
- :meth:`FaultyPkcs11.hang` blocks the next call until an event is set, as a wedged reader;
- ``pin_script`` makes each ``C_Login`` fail as a real token's PIN counter would
  (:class:`PinStep`), with the matching token flags; ``pin_state`` starts the token at a step
  (e.g. FINAL_TRY) and a good login clears the flags.  SoftHSM2 itself never locks a PIN
  (docs/threat-model.md component facts), so the lockout path can only be reached this way.

:meth:`FaultyPkcs11.installed` points ``pkcs11.lib`` at the wrapper for the duration of a
``with`` block, so code that loads the module by path gets it.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal
from unittest import mock

import pkcs11
from pkcs11 import Attribute, SecretKey, TokenFlag
from pkcs11 import exceptions as pkerr

log = logging.getLogger(__name__)

Op = Literal["login", "encrypt", "decrypt", "sign", "verify", "random", "create"]
_PIN_FLAGS: Final = (
    TokenFlag.USER_PIN_COUNT_LOW | TokenFlag.USER_PIN_FINAL_TRY | TokenFlag.USER_PIN_LOCKED
)


class PinStep(enum.Enum):
    """What one scripted ``C_Login`` does: each is a refused PIN and the flags it leaves."""

    INCORRECT = TokenFlag(0)
    COUNT_LOW = TokenFlag.USER_PIN_COUNT_LOW
    FINAL_TRY = TokenFlag.USER_PIN_FINAL_TRY
    LOCKED = TokenFlag.USER_PIN_LOCKED


class _Fault:
    def __init__(
        self, error: type[pkerr.PKCS11Error] | None, release: threading.Event | None
    ) -> None:
        self.error = error
        self.release = release


class FaultyPkcs11:
    """Wraps the python-pkcs11 ``lib`` of ``module_path``; see the module docstring."""

    def __init__(
        self,
        module_path: str,
        *,
        pin_script: Sequence[PinStep] = (),
        pin_state: PinStep | None = None,
    ) -> None:
        """``pin_state`` sets the token's PIN flags before any login (e.g. already at FINAL_TRY)."""
        log.critical("FaultyPkcs11 wraps %s: a fault-injection fake for tests only", module_path)
        self.module_path = module_path
        self.calls: Counter[str] = Counter()
        self._pin_script = deque(pin_script)
        self._pin_flags: TokenFlag | None = None if pin_state is None else pin_state.value
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.Lock()

    @property
    def logins(self) -> int:
        """How many ``C_Login`` calls reached the token (scripted or real)."""
        return self.calls["login"]

    @property
    def pin_flags(self) -> TokenFlag | None:
        """The scripted PIN flags, or None (the real token's) before any or after a good login."""
        return self._pin_flags

    def fail(self, op: Op, error: type[pkerr.PKCS11Error], *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` raise ``error`` instead of reaching the token."""
        with self._lock:
            self._faults.setdefault(op, deque()).extend(_Fault(error, None) for _ in range(times))

    def hang(self, op: Op, release: threading.Event) -> None:
        """Block the next call of ``op`` until ``release`` is set; then it proceeds normally."""
        with self._lock:
            self._faults.setdefault(op, deque()).append(_Fault(None, release))

    @contextmanager
    def installed(self) -> Iterator[FaultyPkcs11]:
        """Within the block, ``pkcs11.lib(path)`` returns this wrapper for ``module_path``."""
        real = pkcs11.lib

        target = os.path.realpath(self.module_path)

        def load(path: str) -> Any:
            if os.path.realpath(path) == target:  # one module, loaded under one name
                return _Lib(real(self.module_path), self)
            return real(path)

        with mock.patch.object(pkcs11, "lib", load):
            yield self

    def before(self, op: Op) -> None:
        """Count one call of ``op`` and fire its next scripted fault, if any."""
        with self._lock:
            self.calls[op] += 1
            queue = self._faults.get(op)
            fault = queue.popleft() if queue else None
        if fault is None:
            return
        if fault.release is not None:
            fault.release.wait()
        if fault.error is not None:
            raise fault.error()

    def login(self, token: Any, user_pin: str, *, rw: bool) -> Any:
        """One ``C_Login``: the next scripted step, else the real token's answer."""
        self.before("login")
        if self._pin_script:
            step = self._pin_script.popleft()
            self._pin_flags = step.value
            raise pkerr.PinIncorrect()
        session = token.open(rw=rw, user_pin=user_pin)
        self._pin_flags = None  # a good PIN resets the counter, as on a real token
        return session


class _Lib:
    """The module as the adapter sees it; tokens come back wrapped."""

    def __init__(self, real: Any, owner: FaultyPkcs11) -> None:
        self._real = real
        self._owner = owner

    def get_tokens(self, **query: Any) -> Iterator[_Token]:
        for token in self._real.get_tokens(**query):
            yield _Token(token, self._owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Slot:
    def __init__(self, token: _Token) -> None:
        self._token = token

    def get_token(self) -> _Token:
        return self._token

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token.real.slot, name)


class _Token:
    """A token whose PIN flags follow the script and whose logins are counted."""

    def __init__(self, real: Any, owner: FaultyPkcs11) -> None:
        self.real = real
        self._owner = owner
        self.slot = _Slot(self)

    @property
    def flags(self) -> TokenFlag:
        real = TokenFlag(self.real.slot.get_token().flags)
        scripted = self._owner.pin_flags
        return real if scripted is None else (real & ~_PIN_FLAGS) | scripted

    def open(self, *, rw: bool = False, user_pin: str | None = None) -> _Session:
        if user_pin is None:
            return _Session(self.real.open(rw=rw), self._owner)
        return _Session(self._owner.login(self.real, user_pin, rw=rw), self._owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Session:
    """A session whose random source and keys go through the fault script."""

    def __init__(self, real: Any, owner: FaultyPkcs11) -> None:
        self._real = real
        self._owner = owner

    def generate_random(self, nbits: int) -> bytes:
        self._owner.before("random")
        return bytes(self._real.generate_random(nbits))

    def create_object(self, attrs: Mapping[Attribute, Any]) -> Any:
        """``C_CreateObject`` (the adapter's token counters), unless a ``create`` fault fires."""
        self._owner.before("create")
        return self._real.create_object(attrs)

    def get_objects(self, attrs: Mapping[Attribute, Any] | None = None) -> Iterator[Any]:
        for obj in self._real.get_objects(attrs):
            yield FaultyKey(obj, self._owner) if isinstance(obj, SecretKey) else obj

    def generate_key(self, *args: Any, **kwargs: Any) -> FaultyKey:
        return FaultyKey(self._real.generate_key(*args, **kwargs), self._owner)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FaultyKey(SecretKey):
    """A token key whose crypto calls go through the fault script first."""

    def __init__(self, real: Any, owner: FaultyPkcs11) -> None:
        self._real = real
        self._owner = owner

    def __getitem__(self, key: Attribute) -> Any:
        return self._real[key]

    def encrypt(self, data: bytes, **kwargs: Any) -> bytes:
        """AES-GCM encrypt on the real key, unless a fault fires."""
        self._owner.before("encrypt")
        return bytes(self._real.encrypt(data, **kwargs))

    def decrypt(self, data: bytes, **kwargs: Any) -> bytes:
        """AES-GCM decrypt on the real key, unless a fault fires."""
        self._owner.before("decrypt")
        return bytes(self._real.decrypt(data, **kwargs))

    def sign(self, data: bytes, **kwargs: Any) -> bytes:
        """HMAC on the real key, unless a fault fires."""
        self._owner.before("sign")
        return bytes(self._real.sign(data, **kwargs))

    def verify(self, data: bytes, signature: bytes, **kwargs: Any) -> bool:
        """HMAC check on the real key, unless a fault fires."""
        self._owner.before("verify")
        return bool(self._real.verify(data, signature, **kwargs))
