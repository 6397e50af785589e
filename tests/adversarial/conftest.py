"""Shared pieces of the adversarial suite: real daemons, raw sockets and the canary scan.

Every installation made here seals the canary key pair (and, where a test adds it, the canary
TOTP seed) through the real CLI.  At the end of the session the canary scan searches every
temp dir of the run, every stdout/stderr captured through :func:`record_output`, the audit
logs and each test HOME (with its ``~/.aws/cli/cache``), all under the run's temp
dirs: zero hits (docs/threat-model.md T5, G1).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import vaultd.credproc
from vaultd.ipc.protocol import HEADER_SIZE, MAX_FRAME, encode_request
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import (
    MFA_SERIAL,
    Installation,
    approve_pending,
    create_installation,
)
from vaultd.testing.softhsm import find_softhsm_module

# Unique to this suite, so a hit can only come from a leak of what these tests stored.
CANARY_KEY_ID = "AKIACANARYADV0000001"
CANARY_SECRET = "AdversarialCanarySecret0000000000000001"
CANARY_SEED = "JBSWY3DPEHPK3PXPADVCANARYSEEDQQ"
CREDPROC = Path(vaultd.credproc.__file__)
SERVED_CAP = 64

_OUTPUTS: list[bytes] = []
_PINS: dict[str, Path] = {}

MakeVault = Callable[..., Installation]


def pytest_configure(config: pytest.Config) -> None:
    """Register ``slow(reason=...)``: the few tests that take seconds, and why."""
    config.addinivalue_line("markers", "slow(reason): takes seconds; the reason says why")


def record_output(*streams: bytes) -> None:
    """Keep captured stdout/stderr bytes for the end-of-session canary scan."""
    _OUTPUTS.extend(streams)


def require_softhsm() -> None:
    """Skip when SoftHSM2 is not installed."""
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


def credproc(inst: Installation, profile: str) -> subprocess.Popen[bytes]:
    """The stdlib client, as `credential_process` runs it (`python -I -S credproc.py`)."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(CREDPROC), "--socket", str(inst.socket), profile],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Wait for a client; its output is kept for the canary scan."""
    out, err = proc.communicate(timeout=timeout)
    record_output(out, err)
    return proc.returncode, out, err


def raw_connect(path: Path, timeout: float = 10.0) -> socket.socket:
    """A raw Unix-socket client; like vaultd's clients it waits out a full listen backlog."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def read_frame(sock: socket.socket) -> bytes | None:
    """One server frame's body, or None when the server closed first."""
    header = _recv_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    assert length <= MAX_FRAME
    return _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        try:
            chunk = sock.recv(size - len(buf))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None
        buf += chunk
    return buf


def patient_credentials(path: Path) -> bytes:
    """A good client that waits in the listen backlog (a blocking connect), then asks.

    The shipped clients connect with a timeout and give up on a full backlog at once: see
    test_socket_protocol.py::test_clients_wait_for_a_full_listen_backlog.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.settimeout(30)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode_request("credentials", profile="dev"))  # BUSY may be queued
        while True:
            body = read_frame(sock)
            assert body is not None, "the daemon closed the connection without a reply"
            if not body.startswith(b'{"v":1,"event"'):
                return body


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    """A local STS that counts calls and injects faults."""
    with FakeSts() as sts:
        yield sts


@pytest.fixture
def make_vault(tmp_path: Path, fake_sts: FakeSts) -> Iterator[MakeVault]:
    """Factory: a real installation with the canary key pair, optionally a running daemon."""
    require_softhsm()
    made: list[Installation] = []

    def make(
        *,
        profiles: dict[str, dict[str, object]] | None = None,
        extra: dict[str, object] | None = None,
        start: bool = True,
        seed: bool = False,
    ) -> Installation:
        inst = create_installation(
            tmp_path / f"vault{len(made)}", profiles=profiles, extra=extra, sts_url=fake_sts.url
        )
        made.append(inst)
        _PINS[inst.token.user_pin] = inst.root / "pin"
        inst.add_key_pair("dev", CANARY_KEY_ID, CANARY_SECRET)
        if seed:
            inst.vaultd("mfa", "add-totp", MFA_SERIAL, input=CANARY_SEED.encode())
        if start:
            inst.start_daemon()
        return inst

    yield make
    for inst in made:
        inst.stop_daemon()
        record_output(inst.log().encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """One daemon per module with a cached `dev` session: short deadlines, a cap of 64.

    ``ipc.read_timeout`` 3 s, ``ipc.request_timeout`` 5 s, ``ipc.max_connections`` 64.
    """
    require_softhsm()
    ipc = {"read_timeout": 3.0, "request_timeout": 5.0, "max_connections": SERVED_CAP}
    with FakeSts() as sts:
        inst = create_installation(
            tmp_path_factory.mktemp("served") / "vault", sts_url=sts.url, extra={"ipc": ipc}
        )
        _PINS[inst.token.user_pin] = inst.root / "pin"
        inst.add_key_pair("dev", CANARY_KEY_ID, CANARY_SECRET)
        with inst:
            inst.start_daemon()
            proc = credproc(inst, "dev")
            approve_pending(inst, "123456", profile="dev")
            code, _, err = finish(proc)
            assert code == 0, err
            yield inst
        record_output(inst.log().encode())


def served_from_cache(inst: Installation) -> bytes:
    """One credential_process run that must succeed from the cache; returns its stdout."""
    code, out, err = finish(credproc(inst, "dev"), timeout=30)
    assert code == 0, err
    assert out.startswith(b'{"Version": 1') or out.startswith(b'{"Version":1')
    return out


def _scan_targets(base: Path) -> Iterator[tuple[str, bytes]]:
    for path in base.rglob("*"):
        if path.is_file() and not path.is_symlink() and not path.is_fifo():
            yield str(path), path.read_bytes()
    for i, data in enumerate(_OUTPUTS):
        yield f"captured output #{i}", data


@pytest.fixture(scope="session", autouse=True)
def canary_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """docs/threat-model.md T5/G1: no canary in temp dirs, captured output, audit logs or the CLI
    cache.

    The key, secret and seed are searched everywhere; each token PIN everywhere except the
    0600 PIN file it was deliberately written to (the ``file:`` PIN source of the harness).
    """
    yield
    needles = [CANARY_KEY_ID.encode(), CANARY_SECRET.encode(), CANARY_SEED.encode()]
    hits = []
    for where, data in _scan_targets(tmp_path_factory.getbasetemp()):
        hits.extend(f"{where}: {n[:8]!r}..." for n in needles if n in data)
        for pin, pin_file in _PINS.items():
            if where != str(pin_file) and pin.encode() in data:
                hits.append(f"{where}: token PIN")
    assert hits == [], hits


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
