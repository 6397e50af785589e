"""The daemon's one owner of the vault key and the sealed store.

Every use of the token (or key store) and of the store runs on one worker thread (SoftHSM2 is
not safe across sessions), under ``pkcs11.call_timeout``: a call that hangs past it abandons
the token and seals (``docs/threat-model.md``, T9).  The store is opened once per unseal; each
store operation takes the store's file lock for that operation only, so a CLI command waiting
for a FIDO2 touch never holds what the worker needs.  A bound record's touch runs on the
calling thread, never on the worker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, TypeVar

from vaultd.core.model import LongTermCredentials, RecordInfo, RecordKind, mask_key
from vaultd.core.records import decode_key_pair, encode_key_pair
from vaultd.errors import ApprovalUnavailable, ConfigError, RecordNotFound, Sealed
from vaultd.fido2.gate import is_bound

if TYPE_CHECKING:
    from vaultd.core.ports import SealingKey
    from vaultd.store.files import SealedStore

log = logging.getLogger("vaultd.daemon")
T = TypeVar("T")

OpenKey = Callable[[bytearray, bool], "SealingKey"]
"""``open_key(pin, confirm_final_try)``: log in and return the vault key."""
OpenStore = Callable[["SealingKey"], "SealedStore"]


class TokenOwner:
    """The logged-in vault key (or none: sealed), its store, and the worker they run on."""

    def __init__(self, open_key: OpenKey, open_store: OpenStore, *, call_timeout: float) -> None:
        self._open_key = open_key
        self._open_store = open_store
        self._timeout = call_timeout
        self._key: SealingKey | None = None
        self._store: SealedStore | None = None
        self._worker = self._new_worker()
        self.on_lost: Callable[[], None] = lambda: None
        """Called (on any thread) when a call hangs and the token is abandoned."""
        self.unbind: Callable[[bytes], bytes] | None = None
        """Opens a FIDO2-bound record's plaintext with a touch (set by the composition)."""

    def _new_worker(self) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaultd-token")
        self._worker_ident: int | None = None
        executor.submit(self._remember_worker).result()
        return executor

    def _remember_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    # --- running on the worker ------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker and wait (blocking; from any thread, the worker included)."""
        if threading.get_ident() == self._worker_ident:
            return fn()
        try:
            return self._worker.submit(fn).result(self._timeout)
        except FutureTimeout:
            raise self._lost() from None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker from the event loop."""
        future = asyncio.get_running_loop().run_in_executor(self._worker, fn)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise self._lost() from None

    def _lost(self) -> Sealed:
        """Forget a token whose call hangs (closing it would block on the same lock)."""
        log.error("a token call did not return within %.1f s: sealing", self._timeout)
        self._key = self._store = None
        self._worker.shutdown(wait=False)
        self._worker = self._new_worker()
        self.on_lost()
        return Sealed(
            f"the token did not answer within {self._timeout:g} s: the vault is sealed; check "
            "the token, restart vaultd, then `vaultd unlock`"
        )

    def shutdown(self) -> None:
        """Stop the worker (after :meth:`seal`)."""
        self._worker.shutdown(wait=True)

    # --- on the worker --------------------------------------------------------------------

    def unseal(self, pin: bytearray, *, confirm_final_try: bool = False) -> None:
        """Log in (closing any previous session first) and open the store (on the worker)."""
        self.seal()
        self._key = self._open_key(pin, confirm_final_try)
        self._store = self._open_store(self._key)

    def seal(self) -> None:
        """Log out; every later secret access raises ``Sealed`` (on the worker)."""
        key, self._key, self._store = self._key, None, None
        if key is not None:
            key.close()

    @property
    def live(self) -> bool:
        """Whether a token session is logged in (read without a token call)."""
        return self._key is not None and not self._key.sealed

    def _live(self) -> SealingKey:
        if self._key is None or self._key.sealed:
            raise Sealed("the vault is sealed: run `vaultd unlock`")
        return self._key

    def _live_store(self) -> SealedStore:
        self._live()
        assert self._store is not None  # noqa: S101 - opened with the key
        return self._store

    # --- the ports, from any thread -------------------------------------------------------

    @property
    def touch_possible(self) -> bool:
        """Whether a record open may wait for a touch on the vault key (a PIV card's key)."""
        return getattr(self._key, "touch_possible", False) is True

    @property
    def key(self) -> SealingKey | None:
        """The logged-in key, if any (for status: ``inspect`` only)."""
        return self._key

    def with_store(self, fn: Callable[[SealedStore], T]) -> T:
        """Run ``fn`` on the open store, on the worker."""
        return self.call(lambda: fn(self._live_store()))

    def key_pair(self, name: str) -> LongTermCredentials:
        """Open the stored key pair ``name`` (the ``SecretSource`` port).

        A record bound to FIDO2 authenticators (``vaultd add --bind-fido2``) also needs a
        touch: its hmac-secret output unwraps the record's data key, on this thread.
        """
        info, plaintext = self.with_store(lambda store: _read_key_pair(store, name))
        if is_bound(plaintext):
            if self.unbind is None:
                raise ApprovalUnavailable(f"{name!r} is bound to a FIDO2 authenticator")
            plaintext = self.unbind(plaintext)
        return decode_key_pair(plaintext, root=info.root)

    def load_for_rotation(self, name: str) -> LongTermCredentials:
        """The stored pair ``name`` for `vaultd rotate` (the ``RotatedKeyStore`` port)."""
        info, plaintext = self.with_store(lambda store: _read_key_pair(store, name))
        if is_bound(plaintext):
            raise ConfigError(
                f"{name!r} is bound to FIDO2 authenticators, and `vaultd rotate` does not "
                "re-bind yet: rotate the key in IAM, then `vaultd add --replace --bind-fido2`"
            )
        return decode_key_pair(plaintext, root=info.root)

    def replace_key_pair(self, name: str, creds: LongTermCredentials) -> None:
        """Store ``creds`` in place of the pair ``name`` (one store write)."""
        self.with_store(
            lambda store: store.put(
                RecordKind.KEY_PAIR,
                name,
                encode_key_pair(creds),
                masked_id=mask_key(creds.access_key_id),
                root=creds.root,
                replace=True,
            )
        )

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 inside the token (the audit log's MAC)."""
        return self.call(lambda: self._live().mac(data))

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Check an audit tag (HMAC in the token, or an ECDSA signature); ``AuditTampered``."""
        self.call(lambda: self._live().mac_verify(data, tag))

    def random(self, n: int) -> bytes:
        """Random bytes from the token (FIDO2 challenges)."""
        return self.call(lambda: self._live().random(n))


def _read_key_pair(store: SealedStore, name: str) -> tuple[RecordInfo, bytes]:
    infos = {i.name: i for i in store.list() if i.kind is RecordKind.KEY_PAIR}
    info = infos.get(name)
    if info is None:
        raise RecordNotFound(f"no stored key pair {name!r}: add it with `vaultd add {name}`")
    return info, store.get(RecordKind.KEY_PAIR, name)
