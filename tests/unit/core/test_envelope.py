"""Envelope v1: round trips, golden vectors, tamper and truncation rejection (docs/threat-model.md
T6, T8).

The key wrapper is ``FakeKeyWrapper`` (real AES-256-GCM in software): the core has no real peer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from vaultd.core.envelope import EnvelopeHeader, pack_fields, parse_header, seal, unseal
from vaultd.errors import HsmError, RecordCorrupt, StoreError
from vaultd.testing.fakes import FakeKeyWrapper

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "envelope_v1.json").read_text()
)["vectors"]
KEY = bytes(range(32))
BIND: dict[str, Any] = {"kind": "key_pair", "name": "prod", "generation": 3, "context": b"meta"}


def _pinned(vector: dict[str, Any]) -> FakeKeyWrapper:
    iv = bytes.fromhex(vector["iv"])
    return FakeKeyWrapper(
        bytes.fromhex(vector["key"]), key_id=vector["key_id"], random=lambda n: iv[:n]
    )


def _bind(vector: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": vector["kind"],
        "name": vector["name"],
        "generation": vector["generation"],
        "context": bytes.fromhex(vector["context"]),
    }


@pytest.fixture
def wrapper() -> FakeKeyWrapper:
    return FakeKeyWrapper(KEY, key_id="kek-1")


@pytest.fixture
def blob(wrapper: FakeKeyWrapper) -> bytes:
    return seal(wrapper, b"secret plaintext", **BIND)


@pytest.mark.parametrize("plaintext", [b"", b"x", b"\x00" * 1000])
def test_round_trip(wrapper: FakeKeyWrapper, plaintext: bytes) -> None:
    assert unseal(wrapper, seal(wrapper, plaintext, **BIND), **BIND) == plaintext


def test_fresh_iv_per_seal(wrapper: FakeKeyWrapper) -> None:
    ivs = {parse_header(seal(wrapper, b"p", **BIND)).iv for _ in range(50)}
    assert len(ivs) == 50


def test_parse_header(blob: bytes) -> None:
    header = parse_header(blob)
    assert header == EnvelopeHeader(1, 1, "kek-1", blob[12:24])
    assert blob[:4] == b"VDE1"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_unseals(vector: dict[str, Any]) -> None:
    blob = bytes.fromhex(vector["blob"])
    assert unseal(_pinned(vector), blob, **_bind(vector)) == bytes.fromhex(vector["plaintext"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_is_reproduced_by_seal(vector: dict[str, Any]) -> None:
    plaintext = bytes.fromhex(vector["plaintext"])
    assert seal(_pinned(vector), plaintext, **_bind(vector)) == bytes.fromhex(vector["blob"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_layout_by_hand(vector: dict[str, Any]) -> None:
    """Rebuild header and AAD independently of envelope.py and decrypt with AESGCM directly."""
    blob = bytes.fromhex(vector["blob"])
    key_id = vector["key_id"].encode()
    header = b"VDE1\x01\x01" + bytes([len(key_id)]) + key_id
    iv = bytes.fromhex(vector["iv"])
    assert blob.startswith(header + iv)

    def lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    aad = b"".join(
        lp(f)
        for f in (
            b"VDE1",
            b"\x01",
            b"\x01",
            key_id,
            vector["kind"].encode(),
            vector["name"].encode(),
            vector["generation"].to_bytes(8, "big"),
            bytes.fromhex(vector["context"]),
        )
    )
    body = blob[len(header) + 12 :]
    plaintext = AESGCM(bytes.fromhex(vector["key"])).decrypt(iv, body, aad)
    assert plaintext == bytes.fromhex(vector["plaintext"])


def test_every_single_byte_flip_is_rejected(wrapper: FakeKeyWrapper, blob: bytes) -> None:
    """Header, key id, IV, ciphertext and tag: every position, two different flips."""
    rejected = 0
    for i in range(len(blob)):
        for mask in (0x01, 0x80):
            mutated = bytearray(blob)
            mutated[i] ^= mask
            with pytest.raises(RecordCorrupt):
                unseal(wrapper, bytes(mutated), **BIND)
            rejected += 1
    assert rejected == 2 * len(blob)


@pytest.mark.parametrize("length", [0, 11, 27])
def test_truncations_named_in_threats(wrapper: FakeKeyWrapper, blob: bytes, length: int) -> None:
    with pytest.raises(RecordCorrupt, match="truncated"):
        unseal(wrapper, blob[:length], **BIND)


def test_every_truncation_and_extension_is_rejected(wrapper: FakeKeyWrapper, blob: bytes) -> None:
    for length in range(len(blob)):
        with pytest.raises(RecordCorrupt):
            unseal(wrapper, blob[:length], **BIND)
    with pytest.raises(RecordCorrupt):
        unseal(wrapper, blob + b"\x00", **BIND)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "totp_seed"},
        {"name": "other"},
        {"generation": 4},
        {"generation": 2},
        {"context": b"meta2"},
        {"context": b""},
    ],
)
def test_binding_mismatch_is_rejected(
    wrapper: FakeKeyWrapper, blob: bytes, change: dict[str, Any]
) -> None:
    with pytest.raises(RecordCorrupt):
        unseal(wrapper, blob, **{**BIND, **change})


def test_fields_are_length_prefixed(wrapper: FakeKeyWrapper) -> None:
    """Moving bytes between adjacent fields changes the AAD."""
    blob = seal(wrapper, b"p", kind="k", name="ab", generation=1, context=b"c")
    with pytest.raises(RecordCorrupt):
        unseal(wrapper, blob, kind="k", name="a", generation=1, context=b"bc")
    with pytest.raises(RecordCorrupt):
        unseal(wrapper, blob, kind="ka", name="b", generation=1, context=b"c")
    assert pack_fields(b"ab", b"c") != pack_fields(b"a", b"bc")


def test_other_key_with_same_id_is_rejected(blob: bytes) -> None:
    with pytest.raises(RecordCorrupt):
        unseal(FakeKeyWrapper(bytes(32), key_id="kek-1"), blob, **BIND)


def test_key_id_mismatch_names_needed_key(blob: bytes) -> None:
    other = FakeKeyWrapper(KEY, key_id="kek-2")
    with pytest.raises(RecordCorrupt, match="'kek-1'") as info:
        unseal(other, blob, **BIND)
    assert "kek-2" in str(info.value)


def test_unknown_version_and_algorithm(wrapper: FakeKeyWrapper, blob: bytes) -> None:
    with pytest.raises(RecordCorrupt, match="version 2"):
        unseal(wrapper, blob[:4] + b"\x02" + blob[5:], **BIND)
    with pytest.raises(RecordCorrupt, match="algorithm 9"):
        parse_header(blob[:5] + b"\x09" + blob[6:])


def test_generation_out_of_range(wrapper: FakeKeyWrapper, blob: bytes) -> None:
    with pytest.raises(StoreError):
        seal(wrapper, b"p", kind="k", name="n", generation=-1)
    with pytest.raises(RecordCorrupt):
        unseal(wrapper, blob, **{**BIND, "generation": 2**64})


def test_seal_refuses_bad_iv_source_and_key_id() -> None:
    short = FakeKeyWrapper(KEY, key_id="k", random=lambda n: b"\x00" * (n - 1))
    with pytest.raises(HsmError, match="IV"):
        seal(short, b"p", **BIND)
    with pytest.raises(HsmError, match="key id"):
        seal(FakeKeyWrapper(KEY, key_id="k" * 256), b"p", **BIND)
    with pytest.raises(HsmError, match="key id"):
        seal(FakeKeyWrapper(KEY, key_id=""), b"p", **BIND)


_prefix = st.sampled_from([b"", b"VDE1", b"VDE1\x01", b"VDE1\x01\x01", b"VDE1\x01\x01\x05kek-1"])


@given(data=st.one_of(st.binary(max_size=120), st.tuples(_prefix, st.binary(max_size=80))))
def test_unseal_of_arbitrary_bytes_raises_only_record_corrupt(
    data: bytes | tuple[bytes, bytes],
) -> None:
    blob = data if isinstance(data, bytes) else data[0] + data[1]
    with pytest.raises(RecordCorrupt):
        unseal(FakeKeyWrapper(KEY, key_id="kek-1"), blob, **BIND)


def test_algorithm_follows_the_key_id_scheme() -> None:
    from vaultd.core.envelope import (
        ALG_AES_256_GCM,
        ALG_ECDH_P256,
        ALG_RSA_OAEP,
        algorithm_for,
        seals_publicly,
    )

    assert algorithm_for("ecdh-p256:" + "ab" * 16) == ALG_ECDH_P256
    assert algorithm_for("rsa-oaep:" + "ab" * 16) == ALG_RSA_OAEP
    assert seals_publicly("rsa-oaep:" + "ab" * 16)  # so its store carries the index tag
    for key_id in ("0" * 32, "fake-key", "other:scheme", "ecdh-p256", "rsa-oaep"):
        assert algorithm_for(key_id) == ALG_AES_256_GCM
