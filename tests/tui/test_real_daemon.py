"""The real `vaultd tui` in tmux against a real daemon (SoftHSM2 token, `vaultd serve`).

A `credential-process` call runs in the background until the code typed into the TUI approves
it; STS is the local FakeSts, which records the TokenCode it received.  A second test checks
that the FakeDaemonClient used by the Pilot tests answers with the real daemon's shapes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

from vaultd import cli
from vaultd.errors import VaultError
from vaultd.ipc.client import AsyncDaemonClient
from vaultd.testing.clock import FakeClock
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import find_softhsm_module
from vaultd.testing.tmux import TmuxServer, tmux_server

from .fakes import FakeDaemonClient

ACCESS_KEY_ID = "AKIACANARY0000000007"
SECRET = "CanarySecretKey0000000000000000000000007"
CODE = "314159"

pytestmark = [
    pytest.mark.hsm,
    pytest.mark.skipif(
        find_softhsm_module() is None or shutil.which("softhsm2-util") is None,
        reason="SoftHSM2 is not installed (apt-get install softhsm2)",
    ),
]

# `vaultd tui` as cli.main runs it; until cli.COMMAND_MODULES lists "tui", the same add_parser
# and run are driven through a two-line argparse launcher.
LAUNCHER = (
    "import argparse, sys; from vaultd.commands import tui; p = argparse.ArgumentParser(); "
    "tui.add_parser(p.add_subparsers()); a = p.parse_args(['tui']); sys.exit(a.func(a))"
)


def tui_command() -> list[str]:
    if "tui" in cli.COMMAND_MODULES:
        return [sys.executable, "-m", "vaultd", "tui"]
    return [sys.executable, "-c", LAUNCHER]


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, FakeSts]]:
    with FakeSts() as sts:
        inst = create_installation(tmp_path_factory.mktemp("tui") / "vault", sts_url=sts.url)
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        inst.start_daemon()
        try:
            yield inst, sts
        finally:
            inst.stop_daemon()


def credential_process(inst: Installation, profile: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vaultd", "credential-process", profile],
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextmanager
def tui_tmux(env: Mapping[str, str]) -> Iterator[TmuxServer]:
    """A private tmux server whose session ``tui`` (started by the test) runs the TUI."""
    with tmux_server("tui", {**env, "TERM": "xterm-256color"}) as server:
        yield server


@pytest.fixture
def tmux(vault: tuple[Installation, FakeSts]) -> Iterator[TmuxServer]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    with tui_tmux(vault[0].env) as server:
        yield server


def test_vaultd_tui_in_tmux_approves_a_pending_request(
    vault: tuple[Installation, FakeSts], tmux: TmuxServer
) -> None:
    inst, sts = vault
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", *tui_command())
    tmux.wait_for("connected", "unsealed", "dev")

    client = credential_process(inst, "dev")
    try:
        tmux.wait_for(
            "Release credentials for dev?",
            "credential_process",
            f"pid {client.pid}",
            "expires in 0:00:",
        )
        tmux.run("send-keys", "-t", "tui", "1", "2", "Enter")  # incomplete: refused
        tmux.wait_for("enter the 6-digit code")
        # One key at a time, each seen on screen before the next, as a person types.
        typed = [("BSpace", "1"), ("BSpace", "6-digit MFA code")]
        typed += [(digit, CODE[: n + 1]) for n, digit in enumerate(CODE)]
        for key, field in typed:
            tmux.run("send-keys", "-t", "tui", key)
            tmux.wait_for(f"▊  {field} ")
        tmux.run("send-keys", "-t", "tui", "Enter")
        try:
            out, err = client.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no credentials; the pane shows:\n{tmux.screen()}") from None
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err.decode(errors="replace")
    creds = json.loads(out)
    assert creds["Version"] == 1
    assert creds["AccessKeyId"] and creds["AccessKeyId"] != ACCESS_KEY_ID
    assert creds["SessionToken"] and creds["Expiration"].endswith("Z")
    assert [r.token_code for r in sts.requests if r.action == "GetSessionToken"] == [CODE]

    screen = tmux.wait_for("active")
    assert "Release credentials" not in screen
    tmux.run("send-keys", "-t", "tui", "q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tmux.alive():
        time.sleep(0.1)
    assert not tmux.alive(), "q did not quit the TUI"


def _shape(value: object) -> object:
    """Keys and value types, recursively (lists by their first item)."""
    if isinstance(value, Mapping):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


async def test_fake_daemon_replies_like_the_real_one(
    vault: tuple[Installation, FakeSts], clock: FakeClock
) -> None:
    inst, _ = vault
    real = AsyncDaemonClient(inst.socket)
    fake = FakeDaemonClient(clock)
    await real.request("lock")  # no cached session: the next request needs an approval
    client = credential_process(inst, "dev")
    try:
        for _ in range(200):
            if (await real.request("approvals"))["approvals"]:
                break
            await asyncio.sleep(0.05)
        fake.open_approval("dev")
        real_status, fake_status = await real.request("status"), await fake.request("status")
        real_approval = real_status["approvals"][0]  # type: ignore[index]
        fake_approval = fake_status["approvals"][0]  # type: ignore[index]
        assert _shape(fake_approval) == _shape(real_approval)
        # The daemon may say more than the TUI reads; what the fake says must match it.
        assert set(fake_status) <= set(real_status)
        for key in ("sealed", "now", "token_label", "socket", "pid"):
            assert _shape(fake_status[key]) == _shape(real_status[key]), key
        profile = real_status["profiles"][0]  # type: ignore[index]
        assert set(fake_status["profiles"][0]) <= set(profile)  # type: ignore[index]
        await fake.request("lock")
        real_records = (await real.request("audit_tail", n=5))["records"]
        fake_records = (await fake.request("audit_tail", n=5))["records"]
        assert isinstance(real_records, list) and isinstance(fake_records, list)
        real_lock = next(r for r in real_records if r["event"] == "lock")
        assert _shape(fake_records) == _shape([real_lock])  # the same keys and value types
        refused = [
            ("approve", {"id": "nope", "code": "12"}),
            ("deny", {"id": "nope"}),
            ("grant", {"id": "nope"}),
            ("grant_end", {"id": "nope"}),
            ("breakglass", {"profile": "dev", "reason": "short", "code": CODE}),
            ("breakglass", {"profile": "dev", "reason": "MFA lost", "code": "12345"}),
            ("breakglass", {"profile": "dev", "reason": "MFA lost", "code": CODE}),
        ]
        for op, fields in refused:
            with pytest.raises(VaultError) as real_error:
                await real.request(op, **fields)
            with pytest.raises(VaultError) as fake_error:
                await fake.request(op, **fields)
            assert type(fake_error.value) is type(real_error.value)
        await real.request("deny", id=str(real_approval["id"]))
        assert client.wait(timeout=30) != 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
