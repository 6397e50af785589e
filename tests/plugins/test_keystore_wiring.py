"""The software key store wired in: ``keystore = "keyring"`` through settings, the CLI and doctor.

No OS keyring daemon runs here, so keyring is pointed at a fake: the in-memory backend below
(``keyring.set_keyring``). The CLI runs in-process (``vaultd.cli.main``) so that it sees that
backend; settings come from ``VAULTD_*`` environment variables, as in a real shell.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from vaultd import app, cli
from vaultd.errors import AuditTampered, KeyStoreUnavailable, Sealed
from vaultd.plugin import registry
from vaultd.settings import load_settings
from vaultd.store.audit import AuditLog, verify
from vaultd.system.clock import SystemClock

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY1"
KEY_ID = "AKIACANARY0000000001"


class MemoryKeyring(KeyringBackend):
    """A fake keyring backend that keeps entries in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


@pytest.fixture
def memory() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: MemoryKeyring) -> Path:
    """A software-key-store installation in ``tmp_path``; returns the data dir."""
    data = tmp_path / "data"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("VAULTD_DATA_DIR", str(data))
    monkeypatch.setenv("VAULTD_SOCKET", str(tmp_path / "run" / "vaultd.sock"))
    monkeypatch.setenv("VAULTD_KEYSTORE", "keyring")
    monkeypatch.setenv("VAULTD_PLUGINS__ALLOW", '["keystore/keyring"]')
    monkeypatch.delenv("VAULTD_PKCS11__MODULE", raising=False)
    return data


def vaultd(capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``vaultd ARGS`` in-process; return (status, stdout, stderr)."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin))
        status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def add_work(capsys: pytest.CaptureFixture[str]) -> None:
    pair = json.dumps({"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET})
    status, out, err = vaultd(capsys, "add", "work", stdin=pair)
    assert (status, err) == (0, "")
    assert "stored key pair 'work'" in out


def test_init_add_list_through_the_cli(
    env: Path, memory: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = vaultd(capsys, "init")
    assert (status, err) == (0, "")
    assert "key store 'keyring'" in out
    assert "SOFTWARE" in out
    assert set(memory.entries) == {("vaultd", "vaultd-kek"), ("vaultd", "vaultd-kek-audit")}

    add_work(capsys)
    status, out, _ = vaultd(capsys, "list", "--json")
    assert status == 0
    (row,) = json.loads(out)
    assert (row["name"], row["kind"]) == ("work", "key_pair")
    assert KEY_ID not in row["key_id"]

    store = (env / app.STORE_FILE).read_bytes()
    assert SECRET.encode() not in store
    assert KEY_ID.encode() not in store
    generation = json.loads(store.split(b"\n", 1)[1])["generation"]  # after the magic line
    assert generation >= 1
    assert memory.entries[("vaultd", "vaultd-kek-generation")] == f"v1:{generation}"


def test_an_older_store_copy_is_refused_by_the_keyring_anchor(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vaultd(capsys, "init")[0] == 0
    add_work(capsys)
    old = env.parent / "old.vault"
    shutil.copy(env / app.STORE_FILE, old)
    status, _, err = vaultd(capsys, "remove", "--yes", "work")
    assert status == 0, err
    shutil.copy(old, env / app.STORE_FILE)

    status, out, err = vaultd(capsys, "list")
    assert status == 74
    assert "STORE_ROLLBACK" in err
    assert out == ""


def test_a_damaged_generation_entry_stops_the_store(
    env: Path, memory: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vaultd(capsys, "init")[0] == 0
    memory.entries[("vaultd", "vaultd-kek-generation")] = "seven"
    status, _, err = vaultd(capsys, "list")
    assert status == KeyStoreUnavailable.exit_status
    assert "KEYSTORE_UNAVAILABLE" in err
    assert "seven" not in err


def test_keystore_is_refused_when_a_token_module_is_set(
    env: Path,
    memory: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAULTD_PKCS11__MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    status, out, err = vaultd(capsys, "init")
    assert (status, out) == (78, "")
    assert "CONFIG_INVALID" in err
    assert "keystore = 'keyring'" in err
    assert "pkcs11.module" in err
    assert memory.entries == {}


def test_keystore_must_be_allowlisted(
    env: Path,
    memory: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAULTD_PLUGINS__ALLOW", "[]")
    status, _, err = vaultd(capsys, "init")
    assert status == 78
    assert "plugins.allow" in err
    assert memory.entries == {}


def test_doctor_warns_and_reports_every_plugin_even_a_broken_one(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAULTD_PLUGINS__ALLOW", '["keystore/keyring", "mfa/broken"]')
    real = registry.entry_points

    def with_broken(*, group: str) -> list[EntryPoint]:
        found = list(real(group=group))
        if group == "vaultd.mfa":
            found.append(EntryPoint("broken", "vaultd_no_such_module:Plugin", group))
        return found

    monkeypatch.setattr(registry, "entry_points", with_broken)
    assert vaultd(capsys, "init")[0] == 0

    status, out, _ = vaultd(capsys, "doctor")
    assert status == 0
    lines = out.splitlines()
    assert "pkcs11 module" not in out
    assert any(
        line.startswith("ok    key store, key and store: key store 'keyring'") for line in lines
    )
    assert any(
        line.startswith("WARN  keystore: 'keyring' is a SOFTWARE key store") for line in lines
    )
    assert any(
        line.startswith("WARN  plugin mfa/broken") and "ModuleNotFoundError" in line
        for line in lines
    )
    assert any(line.startswith("info  plugin keystore/keyring (vaultd") for line in lines)
    assert any(line.startswith("info  plugin mfa/yubikey-oath") for line in lines)


def test_key_store_vault_macs_the_audit_log_and_seals(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vaultd(capsys, "init")[0] == 0
    log_path = tmp_path / "audit.log"
    with app.opened_vault(load_settings()) as vault:
        token = vault.token
        AuditLog(log_path, token.mac, SystemClock()).record("start", {"outcome": "test"})
        assert verify(log_path, token.mac_verify) == 1
        tag = token.mac(b"record")
        with pytest.raises(AuditTampered):
            token.mac_verify(b"record", bytes([tag[0] ^ 1]) + tag[1:])
    assert token.sealed
    with pytest.raises(Sealed):
        token.mac(b"record")
