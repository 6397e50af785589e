"""Daemon start-up time and resident memory.

Start-up: from spawning ``vaultd serve`` to the first ``status`` reply on its socket (polled
every 2 ms in this process), over several starts of the same installation.  Memory: VmRSS from
/proc/PID/status when idle after start, after the first approved request (STS client loaded),
and after a 200-client cached burst; VmHWM is the peak.

    python bench/daemon_startup.py [--quick]

Targets: ready < 1 s; resident memory < 80 MB.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from _common import median, parse_quick, prime, rss_kib, running_vault, socket_burst, table

from vaultd.errors import VaultError
from vaultd.ipc.client import DaemonClient
from vaultd.testing.harness import Installation

TARGET_READY_SECONDS = 1.0
TARGET_RSS_MB = 80.0
POLL_SECONDS = 0.002


def serve_argv() -> list[str]:
    """``vaultd serve`` through the console script when the venv has one."""
    script = Path(sys.executable).with_name("vaultd")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "vaultd", "serve"]


def start(inst: Installation) -> float:
    """Spawn the daemon (kept in ``inst.daemon``); seconds until it answers ``status``."""
    client = DaemonClient(inst.socket, timeout=1.0)
    with open(inst.root / "daemon.log", "ab") as log:
        began = time.perf_counter()
        proc = subprocess.Popen(
            serve_argv(),
            env=inst.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    inst.daemon = proc
    deadline = began + 30
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vaultd serve exited {proc.returncode}:\n{inst.log()}")
        try:
            reply = client.request("status")
        except (VaultError, OSError):
            time.sleep(POLL_SECONDS)
            continue
        if reply.get("pid") != proc.pid:
            raise RuntimeError(f"status came from pid {reply.get('pid')}, not {proc.pid}")
        return time.perf_counter() - began
    raise RuntimeError(f"vaultd serve did not answer within 30 s:\n{inst.log()}")


def hwm_kib(pid: int) -> int:
    """VmHWM (peak resident set) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def main() -> int:
    quick = parse_quick(__doc__ or "")
    starts, clients, seconds = (2, 20, 0.5) if quick else (10, 200, 2.0)
    with running_vault(start=False) as (inst, _sts):
        ready: list[float] = []
        for _ in range(starts - 1):
            ready.append(start(inst))
            inst.stop_daemon()
        ready.append(start(inst))
        assert inst.daemon is not None  # noqa: S101 - start() set it
        pid = inst.daemon.pid
        time.sleep(0.5)
        idle = rss_kib(pid)
        output = prime(inst, "dev", "123456")
        primed = rss_kib(pid)
        burst = asyncio.run(
            socket_burst(inst.socket, "dev", output, clients=clients, seconds=seconds)
        )
        after, peak = rss_kib(pid), hwm_kib(pid)
    print(f"start-up: {starts} starts of `{' '.join(Path(a).name for a in serve_argv())}`\n")
    print(
        table(
            ["ready median", "min", "max"],
            [
                (
                    f"{median(ready) * 1000:.0f} ms",
                    f"{min(ready) * 1000:.0f} ms",
                    f"{max(ready) * 1000:.0f} ms",
                )
            ],
        )
    )
    print(f"\nresident memory (burst: {clients} clients, {burst.ok} replies ok)\n")
    print(
        table(
            ["idle", "after first request", f"after {clients}-client burst", "peak (VmHWM)"],
            [tuple(f"{kib / 1024:.1f} MB" for kib in (idle, primed, after, peak))],
        )
    )
    worst = max(idle, primed, after, peak) / 1024
    ok = median(ready) < TARGET_READY_SECONDS and worst < TARGET_RSS_MB
    print(
        f"\nsummary: ready in {median(ready) * 1000:.0f} ms (target < "
        f"{TARGET_READY_SECONDS * 1000:.0f} ms), peak RSS {worst:.1f} MB (target < "
        f"{TARGET_RSS_MB:.0f} MB): {'met' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
