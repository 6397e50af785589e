"""In-memory fakes of the key and anchor ports, for tests and the demo only.

They keep the AES key in process memory, so they protect nothing: never use them for real
credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.errors import StoreRollback
from vaultd.plugin.api import AesGcmKey


class FakeKeyWrapper(AesGcmKey):
    """A ``KeyWrapper`` fake: real AES-256-GCM with a key held in memory (tests and demo only).

    ``key`` is 32 bytes (random when omitted); ``random`` supplies IVs and may be pinned so
    golden vectors are reproducible.
    """

    def __init__(
        self,
        key: bytes | None = None,
        *,
        key_id: str = "fake-key",
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if key is None:
            key = AESGCM.generate_key(bit_length=256)
        if len(key) != 32:
            raise ValueError("FakeKeyWrapper needs a 32-byte AES-256 key")
        super().__init__(key, key_id, random=random)


class FakeGenerationAnchor:
    """A ``GenerationAnchor`` fake: an in-memory counter that only moves forward (tests, demo)."""

    def __init__(self, generation: int = 0) -> None:
        self._generation = generation

    def read_generation(self) -> int:
        """The current generation."""
        return self._generation

    def advance_generation(self, value: int) -> None:
        """Move to ``value``; refuses (``StoreRollback``) unless it is greater than the current."""
        if value <= self._generation:
            raise StoreRollback(
                f"refusing to move the store generation anchor from {self._generation} to "
                f"{value}: it only moves forward (another writer may have updated the store)"
            )
        self._generation = value
