"""SoftHSM2 fixtures: a fresh token per test in ``tmp_path``, with the module reinitialized."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pkcs11
import pytest

from vaultd.app import open_token_key
from vaultd.core.ports import SealingKey
from vaultd.keys.pkcs11 import TokenKey
from vaultd.testing.softhsm import SoftHsmToken, create_token, find_softhsm_module, reinitialize

TOKEN_LABEL = "vaultd-test"

OpenStore = Callable[..., TokenKey]
RawSession = Callable[..., AbstractContextManager[pkcs11.Session]]


@pytest.fixture
def key_label() -> str:
    """The label of the vault's key-encryption key in these tests."""
    return "vaultd-kek"


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsmToken]:
    """A new SoftHSM2 token; this process's module is pointed at it."""
    module = find_softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (softhsm2-util and libsofthsm2.so)")
    token = create_token(tmp_path / "softhsm", label=TOKEN_LABEL)
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf_path))
    reinitialize(token.module_path)
    yield token
    reinitialize(token.module_path)  # drops any session a failing test left open


@pytest.fixture
def open_vault(softhsm: SoftHsmToken, key_label: str) -> Iterator[OpenStore]:
    """Open a vault on the test token; every vault opened is closed at teardown."""
    opened: list[TokenKey] = []

    def _open(
        *, create_key: bool = False, pin: str | bytearray | None = None, label: str | None = None
    ) -> TokenKey:
        vault = TokenKey.open(
            softhsm.module_path,
            softhsm.label if label is None else label,
            key_label,
            softhsm.user_pin if pin is None else pin,
            create_key=create_key,
        )
        opened.append(vault)
        return vault

    yield _open
    for vault in opened:
        vault.close()


@pytest.fixture(params=["aead", "ecdh"])
def token(
    request: pytest.FixtureRequest, softhsm: SoftHsmToken, key_label: str
) -> Iterator[SealingKey]:
    """The test token's sealing key under each scheme (token AEAD, token ECDH), created."""
    key = open_token_key(
        softhsm.module_path,
        softhsm.label,
        key_label,
        softhsm.user_pin,
        scheme=request.param,
        create_key=True,
    )
    yield key
    key.close()


@pytest.fixture
def raw_session(softhsm: SoftHsmToken) -> RawSession:
    """A python-pkcs11 session of the test's own, to build or inspect objects directly.

    ``login=True`` logs in (only while no vault is open: login state is per process); a PIN-less
    session sees the private objects while a vault is open.
    """

    @contextmanager
    def _session(*, login: bool = False) -> Iterator[pkcs11.Session]:
        token = pkcs11.lib(softhsm.module_path).get_token(token_label=softhsm.label)
        session = token.open(rw=True, user_pin=softhsm.user_pin if login else None)
        try:
            yield session
        finally:
            session.close()

    return _session
