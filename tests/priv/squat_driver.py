"""Driver of test_socket_squat.py, run as root inside ``unshare --mount``: a private tmpfs on
/tmp (the real /tmp of the machine is never touched), a squatter as uid 65534 listening on
``/tmp/vaultd-0/vaultd.sock`` in a 0777 directory it made, then every client with no
``XDG_RUNTIME_DIR`` and no ``VAULTD_SOCKET``.  Prints one JSON object: each client's exit
status, stdout and stderr, and every byte the squatter received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

NOBODY = 65534
SQUATTER = r"""
import os, socket, sys
os.umask(0)
os.mkdir("/tmp/vaultd-0", 0o777)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind("/tmp/vaultd-0/vaultd.sock")
os.chmod("/tmp/vaultd-0/vaultd.sock", 0o777)
srv.listen(16)
srv.settimeout(0.5)
with open("/tmp/squat.log", "ab", buffering=0) as log:
    print("ready", flush=True)
    while True:
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        conn.settimeout(1.0)
        try:
            while chunk := conn.recv(65536):
                log.write(chunk)
        except OSError:
            pass
        conn.close()
"""
TUI_CLIENT = """
import asyncio, sys
from vaultd.errors import VaultError
from vaultd.ipc.client import AsyncDaemonClient
try:
    asyncio.run(AsyncDaemonClient().request("status"))
except VaultError as exc:
    sys.exit(f"vaultd: {exc.code}: {exc}")
"""
CLIENTS: dict[str, tuple[list[str], bytes]] = {
    "credential-process": (["-m", "vaultd", "credential-process", "dev"], b""),
    "unlock": (["-m", "vaultd", "unlock"], b""),
    "approve": (["-m", "vaultd", "approve", "abc"], b"123456\n"),
    "break-glass": (
        ["-m", "vaultd", "break-glass", "root", "--reason", "squatter test"],
        b'{"code": "123456", "pin": "4321"}',
    ),
    "tui": (["-c", TUI_CLIENT], b""),
}


def _setup() -> dict[str, str]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"], check=True)
    home = Path("/tmp/home")
    home.mkdir(mode=0o700)
    (home / "pin").write_text("1234\n")
    (home / "pin").chmod(0o600)
    (home / "config.toml").write_text(
        f'[pkcs11]\npin_source = "file:{home}/pin"\n'
        '[profiles.root]\ncredentials = "root"\n'
        'mfa_serial = "arn:aws:iam::123456789012:mfa/root-account-mfa-device"\n'
    )
    (home / "config.toml").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "VAULTD_SOCKET")}
    env.update(HOME=str(home), VAULTD_CONFIG=str(home / "config.toml"))
    return env


def main() -> int:
    env = _setup()
    squatter = subprocess.Popen(
        [
            "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
            "/usr/bin/python3", "-I", "-S", "-c", SQUATTER,
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert squatter.stdout is not None
    assert squatter.stdout.readline() == b"ready\n"
    results: dict[str, object] = {}
    try:
        for name, (args, stdin) in CLIENTS.items():
            proc = subprocess.run(
                [sys.executable, *args], input=stdin, capture_output=True, env=env, timeout=60
            )
            results[name] = [proc.returncode, proc.stdout.decode(), proc.stderr.decode()]
        time.sleep(1.5)  # let the squatter drain anything a client might have sent
    finally:
        squatter.kill()
        squatter.wait()
    received = Path("/tmp/squat.log").read_bytes()
    print(json.dumps({"clients": results, "received": received.decode("latin-1")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
