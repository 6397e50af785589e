"""Fixtures for the STS tier: moto on 127.0.0.1, the fault-injecting FakeSts, a clean AWS env."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vaultd.core.model import SessionCredentials
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.moto_server import MotoServer


@pytest.fixture(autouse=True)
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and the AWS config files point into tmp_path; no ambient AWS_* variable survives."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    return home


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def moto(moto_session: MotoServer) -> MotoServer:
    """The shared moto server, emptied for this test."""
    moto_session.reset()
    return moto_session


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    with FakeSts() as fake:
        yield fake


@pytest.fixture
def session_credentials() -> SessionCredentials:
    """Credentials as if from an earlier GetSessionToken (for chained, MFA-less AssumeRole)."""
    return SessionCredentials(
        "ASIACANARYSESSION001",
        "canary-session-secret-0123456789abcdefgh",
        "canary-session-token/0123456789+abc=",
        datetime.now(UTC) + timedelta(hours=1),
    )
