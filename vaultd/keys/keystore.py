"""A vault key held by an allowlisted key store plugin, with the surface of the token's."""

from __future__ import annotations

import hmac

from vaultd.errors import AuditTampered, Sealed, StoreRollback
from vaultd.plugin.api import KeyStoreBacking


class KeyStoreKey:
    """A vault key held by a key store plugin, with the same surface as ``TokenKey``."""

    def __init__(self, name: str, backing: KeyStoreBacking, *, is_hardware: bool) -> None:
        self._name = name
        self._backing: KeyStoreBacking | None = backing
        self._key_id = backing.key_id
        self.is_hardware = is_hardware

    @property
    def key_id(self) -> str:
        """The key store's non-secret key id."""
        return self._key_id

    @property
    def sealed(self) -> bool:
        """True once closed."""
        return self._backing is None

    def _live(self) -> KeyStoreBacking:
        if self._backing is None:
            raise Sealed("the vault is sealed (locked); run `vaultd unlock`")
        return self._backing

    def random(self, n: int) -> bytes:
        """``n`` random bytes."""
        return self._live().random(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM, tag appended."""
        return self._live().encrypt(iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; ``RecordCorrupt`` on a mismatch."""
        return self._live().decrypt(iv, ciphertext, aad)

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 under the key store's audit key."""
        return self._live().mac(data)

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Raise ``AuditTampered`` unless ``tag`` is the MAC of ``data`` (constant time)."""
        if not hmac.compare_digest(self.mac(data), bytes(tag)):
            raise AuditTampered("an audit record's MAC does not match; the audit log was altered")

    def read_generation(self) -> int:
        """The store generation kept by the key store."""
        return self._live().read_generation()

    def advance_generation(self, value: int) -> None:
        """Record ``value``; ``StoreRollback`` unless it exceeds the current generation."""
        backing = self._live()
        current = backing.read_generation()
        if value <= current:
            raise StoreRollback(
                f"refusing to move the store generation from {current} to {value}; the store "
                f"is older than key store {self._name!r} records (restore the newest store)"
            )
        backing.write_generation(value)

    def inspect(self) -> dict[str, object]:
        """Non-secret facts for ``vaultd doctor``."""
        return {"keystore": self._name, "hardware": self.is_hardware, "key_id": self._key_id}

    def close(self) -> None:
        """Drop the key store's handle; later calls raise ``Sealed``."""
        self._backing = None
