"""Fixtures for the audit tier: a SoftHSM2 token per test, and a real daemon installation."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.softhsm import SoftHsmToken, create_token, find_softhsm_module, reinitialize

pytestmark = pytest.mark.hsm


def require_softhsm() -> str:
    module = find_softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    return module


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsmToken]:
    """A new SoftHSM2 token; this process's module is pointed at it."""
    require_softhsm()
    token = create_token(tmp_path / "softhsm", label="vaultd-audit")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf_path))
    reinitialize(token.module_path)
    yield token
    reinitialize(token.module_path)


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    with FakeSts() as sts:
        yield sts
