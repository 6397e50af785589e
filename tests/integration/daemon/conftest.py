"""A real daemon per test: SoftHSM2 token, config, sealed key pair, `vaultd serve`.

STS is either moto_server (real AWS API shapes; it does not validate MFA) or FakeSts (counts
calls and injects faults) on 127.0.0.1.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import find_softhsm_module

ACCESS_KEY_ID = "AKIACANARY0000000001"
SECRET = "CanarySecretKey0000000000000000000000001"

pytestmark = pytest.mark.hsm


def _require_softhsm() -> None:
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    with FakeSts() as sts:
        yield sts


@pytest.fixture
def make_vault(tmp_path: Path, fake_sts: FakeSts) -> Iterator[object]:
    """Factory: ``make_vault(profiles=..., extra=..., start=True)`` -> a running Installation."""
    _require_softhsm()
    made: list[Installation] = []

    def make(
        *,
        profiles: dict[str, dict[str, object]] | None = None,
        extra: dict[str, object] | None = None,
        start: bool = True,
        sts_url: str | None = None,
    ) -> Installation:
        root = tmp_path / f"vault{len(made)}"
        inst = create_installation(
            root, profiles=profiles, extra=extra, sts_url=sts_url or fake_sts.url
        )
        made.append(inst)
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        if start:
            inst.start_daemon()
        return inst

    yield make
    for inst in made:
        inst.stop_daemon()


@pytest.fixture(scope="session", autouse=True)
def canary_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """docs/threat-model.md T5: after every daemon test, no stored secret is anywhere under the temp
    dirs.

    That covers the data dirs (store, state, audit log), daemon logs, the test HOME (with
    ~/.aws/cli/cache) and every file a test wrote.
    """
    yield
    needles = [SECRET.encode(), b"RootCanarySecret", b"CrashSecret"]
    hits = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits.extend(f"{path}: {n!r}" for n in needles if n in data)
    assert hits == [], hits
