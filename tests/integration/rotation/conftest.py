"""Fixtures for rotation: moto (IAM and STS) on 127.0.0.1, a SoftHSM2 token, a sealed store.

The store and the audit log are the real ones (``SealedStore`` and ``AuditLog``) over a fresh
SoftHSM2 token per test; IAM and STS are moto, reached through ``AWS_ENDPOINT_URL`` exactly as a
user would point botocore at another endpoint.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.keys.pkcs11 import TokenKey
from vaultd.store.atomic import ensure_private_dir
from vaultd.store.audit import AuditLog
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.moto_server import MotoServer
from vaultd.testing.softhsm import create_token, find_softhsm_module, reinitialize


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def moto(moto_session: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The shared moto server, emptied; botocore reaches it only through AWS_ENDPOINT_URL."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_session.url)
    moto_session.reset()
    return moto_session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenKey]:
    """A logged-in vault on a new SoftHSM2 token."""
    module = find_softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (softhsm2-util and libsofthsm2.so)")
    soft = create_token(tmp_path / "softhsm", label="vaultd-rotation")
    monkeypatch.setenv("SOFTHSM2_CONF", str(soft.conf_path))
    reinitialize(soft.module_path)
    vault = TokenKey.open(
        soft.module_path, soft.label, "vaultd-kek", soft.user_pin, create_key=True
    )
    yield vault
    vault.close()
    reinitialize(soft.module_path)


@pytest.fixture
def store(tmp_path: Path, token: TokenKey, clock: FakeClock) -> SealedStore:
    data = tmp_path / "data"
    ensure_private_dir(data)
    sealed = SealedStore(data / "store.vault", token, token, clock)
    sealed.initialize()
    return sealed


@pytest.fixture
def audit(tmp_path: Path, token: TokenKey, clock: FakeClock) -> AuditLog:
    return AuditLog(tmp_path / "data" / "audit.log", token.mac, clock)
