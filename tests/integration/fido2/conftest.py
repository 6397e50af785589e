"""FIDO2 and MFA-seed fixtures: a real SoftHSM2 installation and software authenticators.

Authenticators are ``SoftCtap2Device`` state files in ``tmp_path`` (CI has no USB); the store
is the real sealed store on a per-test SoftHSM2 token made by ``create_installation``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from vaultd.app import STORE_FILE
from vaultd.fido2.ceremony import enroll
from vaultd.fido2.gate import TouchGate, load_enrolled, save_enrolled
from vaultd.fido2.verify import EnrolledCredential
from vaultd.keys.pkcs11 import TokenKey
from vaultd.store.audit import AuditLog
from vaultd.store.files import SealedStore
from vaultd.system.clock import SystemClock
from vaultd.testing.clock import FakeClock
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.soft_ctap2 import SoftCtap2Device
from vaultd.testing.softhsm import find_softhsm_module, reinitialize

TOUCH_DELAY = 0.02
RP_ID = "vaultd"

# Runs the CLI with the fido2 and mfa command modules registered (whether or not cli.py lists
# them yet); a new session has no controlling terminal, so no prompt can ever block a test.
_CLI = (
    "import sys\n"
    "from vaultd import cli\n"
    "cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, 'fido2', 'mfa')))\n"
    "sys.exit(cli.main())\n"
)


def key_path(root: Path, n: int) -> Path:
    return root / f"authenticator{n}.json"


def soft_key(path: Path) -> SoftCtap2Device:
    """A software authenticator at ``path`` that is touched almost at once."""
    device = SoftCtap2Device(path)
    device.set_touch("auto", TOUCH_DELAY)
    return device


@pytest.fixture
def key(tmp_path: Path) -> Callable[[int], SoftCtap2Device]:
    """``key(n)``: a handle on software authenticator ``n`` (the state file is shared)."""
    return lambda n: SoftCtap2Device(key_path(tmp_path, n))


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Installation]:
    """An installation whose settings list two software authenticators (both plugged in)."""
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    for n in (1, 2):
        soft_key(key_path(tmp_path, n))
    devices = [f"soft:{key_path(tmp_path, n)}" for n in (1, 2)]
    installation = create_installation(tmp_path / "vault", extra={"fido2": {"devices": devices}})
    with installation:
        yield installation


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(inst: Installation) -> Cli:
    """``cli(*args, input=b"")``: ``vaultd ARGS`` as a subprocess (stdin never a terminal)."""

    def run(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-c", _CLI, *args],
            input=input,
            capture_output=True,
            env=inst.env,
            timeout=60,
            check=False,
            start_new_session=True,
        )
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
        )

    return run


@pytest.fixture
def cli_json(cli: Cli) -> Callable[..., Any]:
    """``cli_json(*args)``: run ``vaultd ARGS --json`` and parse its output."""

    def run(*args: str) -> Any:
        proc = cli(*args, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.fixture
def vault(
    inst: Installation, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SealedStore, AuditLog]]:
    """This process logged in to the installation's token: its sealed store and an audit log
    MACed by the token (as the daemon has them)."""
    soft = inst.token
    monkeypatch.setenv("SOFTHSM2_CONF", str(soft.conf_path))
    reinitialize(soft.module_path)
    token = TokenKey.open(soft.module_path, soft.label, "vaultd-kek", soft.user_pin)
    try:
        store = SealedStore(inst.data_dir / STORE_FILE, token, token, SystemClock())
        yield store, AuditLog(inst.root / "audit.log", token.mac, SystemClock())
    finally:
        token.close()
        reinitialize(soft.module_path)


@pytest.fixture
def audit_events(vault: tuple[SealedStore, AuditLog]) -> Callable[[], list[str]]:
    """The events recorded in the test's audit log so far."""
    path = vault[1].path
    return lambda: (
        [json.loads(line)["event"] for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


@pytest.fixture
def enrol(
    vault: tuple[SealedStore, AuditLog], tmp_path: Path
) -> Callable[[str, int], EnrolledCredential]:
    """``enrol(name, n)``: a credential made on authenticator ``n`` and stored as ``name``."""
    store, _ = vault

    def make(name: str, n: int) -> EnrolledCredential:
        device = SoftCtap2Device(key_path(tmp_path, n))
        cred = enroll(device, name=name, user_name="alice", pin=None)
        save_enrolled(store, cred, new=True)
        return cred

    return make


MakeGate = Callable[..., TouchGate]


@pytest.fixture
def make_gate(vault: tuple[SealedStore, AuditLog], tmp_path: Path) -> MakeGate:
    """``make_gate(present=(1, 2), save=..., audit=...)``: a gate over the real store whose
    ``present`` authenticators are plugged in."""
    store, audit = vault

    def make(
        present: Sequence[int] = (1, 2),
        *,
        save: Callable[[EnrolledCredential], None] | None = None,
        audit_sink: Callable[[str, Any], None] | None = None,
        clock: FakeClock | None = None,
    ) -> TouchGate:
        return TouchGate(
            lambda: [SoftCtap2Device(key_path(tmp_path, n)) for n in present],
            lambda: load_enrolled(store),
            save or (lambda cred: save_enrolled(store, cred)),
            clock or FakeClock(),
            SystemRandom(),
            RP_ID,
            audit_sink or audit.record,
        )

    return make


class SystemRandom:
    """The ``RandomSource`` port from the OS generator (the daemon uses the token's)."""

    def random(self, n: int) -> bytes:
        import secrets

        return secrets.token_bytes(n)


@pytest.fixture
def touch() -> dict[str, Any]:
    """Keyword arguments of a touch: no prompt shown, never cancelled, 10 s."""
    return {"on_prompt": lambda: None, "cancel": threading.Event(), "timeout": 10.0}
