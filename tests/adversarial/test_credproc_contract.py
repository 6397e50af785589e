"""The credential_process contract on every error path (docs/threat-model.md T16, G16; F12-F40).

For each error a real client meets — the stdlib client (`python -I -S credproc.py`) and the
`vaultd credential-process` console path — stdout is empty, the exit status is not 0, stderr
is one `vaultd: CODE: message` line, and no canary is anywhere in what it printed.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts, Fault
from vaultd.testing.harness import Installation, approve_pending, create_installation, wait_for

from .conftest import (
    CANARY_KEY_ID,
    CANARY_SECRET,
    CREDPROC,
    MakeVault,
    finish,
    raw_connect,
    record_output,
    require_softhsm,
)

pytestmark = pytest.mark.hsm
_codes = (f"{n:06d}" for n in itertools.count(700000, 7))


def clients(inst: Installation, profile: str, *, socket: Path | None = None) -> list[list[str]]:
    """Both client command lines for ``profile``."""
    sock = str(socket or inst.socket)
    return [
        [sys.executable, "-I", "-S", str(CREDPROC), "--socket", sock, profile],
        [sys.executable, "-m", "vaultd", "credential-process", "--socket", sock, profile],
    ]


def run(argv: list[str], inst: Installation) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def assert_contract(result: tuple[int, bytes, bytes], code: str | None) -> None:
    """Empty stdout, exit != 0, one stderr line naming ``code``, no canary."""
    status, out, err = result
    assert status != 0
    assert out == b""
    assert err.count(b"\n") == 1 and err.endswith(b"\n"), err
    if code is not None:
        assert err.startswith(f"vaultd: {code}: ".encode()), err
    for canary in (CANARY_KEY_ID, CANARY_SECRET):
        assert canary.encode() not in err


@pytest.fixture(scope="module")
def sts_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, FakeSts]]:
    """One daemon for the STS table: nothing cached, a fresh code per row."""
    require_softhsm()
    with FakeSts() as sts:
        inst = create_installation(tmp_path_factory.mktemp("contract") / "v", sts_url=sts.url)
        inst.add_key_pair("dev", CANARY_KEY_ID, CANARY_SECRET)
        with inst:
            inst.start_daemon()
            yield inst, sts
        record_output(inst.log().encode())


STS_ROWS = [
    (Fault(error_code="Throttling"), "STS_THROTTLED"),  # row 36
    (Fault(error_code="ServiceUnavailable"), "STS_UNAVAILABLE"),  # row 36
    (Fault(error_code="InternalFailure"), "STS_UNAVAILABLE"),  # row 36
    (Fault(drop_connection=True), "STS_UNAVAILABLE"),  # row 36: reset
    (Fault(error_code="ExpiredToken"), "STS_EXPIRED_TOKEN"),  # row 37
    (Fault(error_code="RegionDisabledException"), "STS_REGION_DISABLED"),  # row 37
    (Fault(error_code="InvalidClientTokenId"), "STS_KEY_INVALID"),  # row 37
    (Fault(error_code="RequestExpired"), "STS_CLOCK_SKEW"),  # row 18
    (Fault(error_code="AccessDenied"), "MFA_REJECTED"),  # row 17
    (Fault(expiration="past"), None),  # row 38: never served, never cached
    (Fault(expiration="malformed"), None),  # row 38
]


@pytest.mark.parametrize(("fault", "code"), STS_ROWS, ids=[c or "expiration" for _, c in STS_ROWS])
@pytest.mark.parametrize("which", [0, 1], ids=["credproc", "vaultd-credential-process"])
def test_sts_errors_keep_the_contract(
    sts_vault: tuple[Installation, FakeSts], fault: Fault, code: str | None, which: int
) -> None:
    """Rows 17, 18, 36-38: the code reaches the client, stdout empty, nothing cached."""
    inst, sts = sts_vault
    sts.clear_faults()
    sts.inject(fault, times=None)
    try:
        proc = run(clients(inst, "dev")[which], inst)
        approve_pending(inst, next(_codes), profile="dev")
        assert_contract(finish(proc), code)
    finally:
        sts.clear_faults()
    status = inst.vaultd("status", "--json")
    assert b'"expires_at": null' in status.stdout or b'"expires_at":null' in status.stdout


@pytest.fixture
def one_slot(make_vault: MakeVault) -> Installation:
    """A daemon with a cap of one connection (for BUSY)."""
    return make_vault(extra={"ipc": {"max_connections": 1, "read_timeout": 30.0}})


def test_busy_keeps_the_contract(one_slot: Installation) -> None:
    """Row 5: a client refused at the cap (the code it shows: see the next test)."""
    with raw_connect(one_slot.socket):  # the single slot is taken
        for argv in clients(one_slot, "dev"):
            assert_contract(finish(run(argv, one_slot)), None)


def test_static_error_paths_keep_the_contract(make_vault: MakeVault) -> None:
    """Rows 2, 12, 26, 39: not running, unknown or bad profile, denied, sealed.

    This installation also holds the canary TOTP seed, sealed through `vaultd mfa add-totp`.
    """
    inst = make_vault(seed=True)
    for argv in clients(inst, "dev", socket=inst.root / "absent.sock"):
        assert_contract(finish(run(argv, inst)), "DAEMON_NOT_RUNNING")  # row 39
    for argv in clients(inst, "nope"):
        assert_contract(finish(run(argv, inst)), "UNKNOWN_PROFILE")
    for argv in clients(inst, "../dev"):  # row 2: refused before any byte is sent
        status, out, err = finish(run(argv, inst))
        assert status == 2 and out == b"" and b"usage" in err
    procs = [run(argv, inst) for argv in clients(inst, "dev")]
    assert wait_for(lambda: b'"id"' in inst.vaultd("approvals", "--json").stdout)
    approvals = inst.vaultd("approvals", "--json").stdout.decode()
    approval_id = approvals.split('"id": "')[1].split('"')[0]
    inst.vaultd("deny", approval_id)
    for proc in procs:  # row 12
        assert_contract(finish(proc), "DENIED")
    inst.vaultd("lock", "--seal")
    for argv in clients(inst, "dev"):  # row 26
        assert_contract(finish(run(argv, inst)), "SEALED")


def test_busy_reaches_the_client_as_busy(one_slot: Installation) -> None:
    """Row 5: a client refused at the cap is told BUSY, every time."""
    inst = one_slot
    with raw_connect(inst.socket):
        for _ in range(10):
            assert_contract(finish(run(clients(inst, "dev")[0], inst)), "BUSY")


def test_daemon_killed_while_the_client_waits(make_vault: MakeVault) -> None:
    """T16: the daemon dies mid-request; the client fails cleanly with nothing on stdout."""
    inst = make_vault()
    procs = [run(argv, inst) for argv in clients(inst, "dev")]
    assert wait_for(lambda: b'"id"' in inst.vaultd("approvals", "--json").stdout)
    assert inst.daemon is not None
    os.kill(inst.daemon.pid, signal.SIGKILL)
    inst.daemon.wait()
    for proc in procs:
        assert_contract(finish(proc), "PROTOCOL_ERROR")


CONFIGS = [
    ("[ipc]\nmax_connections = 0\n", "ipc.max_connections"),
    ("[ipc]\nnot_a_key = 1\n", "ipc.not_a_key"),
    ('[approval]\ntimeout_seconds = "soon"\n', "approval.timeout_seconds"),
    ('[approval]\nout_of_band = "maybe"\n', "approval.out_of_band"),
    ("[cache]\nidle_seconds = 10\n", "cache.idle_seconds"),
    (
        '[profiles.dev]\ncredentials = "dev"\nmfa_serial = "arn:aws:iam::123456789012:mfa/a"\n'
        "duration_seconds = 200000\n",
        "profiles.dev",
    ),
]


@pytest.mark.parametrize(("toml", "field"), CONFIGS, ids=[f for _, f in CONFIGS])
def test_invalid_config_stops_the_daemon_naming_the_field(
    tmp_path: Path, toml: str, field: str
) -> None:
    """Row 40: CONFIG_INVALID naming the field; the daemon does not start."""
    config = tmp_path / "config.toml"
    config.write_text(f'socket = "{tmp_path}/run/vaultd.sock"\n' + toml)
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULTD_", "AWS_"))} | {
        "VAULTD_CONFIG": str(config),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "serve"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    record_output(done.stdout, done.stderr)
    assert done.returncode != 0
    assert b"CONFIG_INVALID" in done.stderr
    assert field.encode() in done.stderr
    assert not (tmp_path / "run" / "vaultd.sock").exists()
