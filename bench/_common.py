"""Shared helpers for the benchmarks: a real daemon against FakeSts, clients, statistics.

Benchmarks print figures and ratios measured side by side in one run; they never fail on wall
time.  Every installation lives in a temporary directory with a throw-away SoftHSM2 token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vaultd.credproc
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending, create_installation

CREDPROC = Path(vaultd.credproc.__file__)
ACCESS_KEY_ID = "AKIABENCH00000000001"
SECRET = "BenchSecretKey000000000000000000000000001"  # noqa: S105 - a fake key for FakeSts
PROFILES: Mapping[str, Mapping[str, Any]] = {
    "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
    "cold": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
}
HEADER = 4


def parse_quick(description: str) -> bool:
    """Parse the common ``--quick`` flag (a tiny run that proves the script works)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny run, figures not meaningful")
    return bool(parser.parse_args().quick)


def frame(body: bytes) -> bytes:
    """A wire frame: 4-byte big-endian length, then ``body``."""
    return len(body).to_bytes(HEADER, "big") + body


def credentials_frame(profile: str) -> bytes:
    """The ``credentials`` request frame for ``profile`` (non-interactive)."""
    return frame(b'{"v":1,"op":"credentials","profile":"' + profile.encode() + b'"}')


def expected_reply(output: bytes) -> bytes:
    """The daemon's fast-path reply body around a credential_process ``output``."""
    return b'{"v":1,"ok":true,"output":' + output + b"}"


def credproc_argv(inst: Installation, profile: str) -> list[str]:
    """The fastest client entry: ``python -I -S credproc.py --socket S PROFILE``."""
    return [sys.executable, "-I", "-S", str(CREDPROC), "--socket", str(inst.socket), profile]


def start_credproc(inst: Installation, profile: str) -> subprocess.Popen[bytes]:
    """Start the stdlib client without a controlling terminal (so it never prompts)."""
    return subprocess.Popen(
        credproc_argv(inst, profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def check_credentials(output: bytes) -> None:
    """Raise unless ``output`` is credential_process Version 1 JSON for a session."""
    creds = json.loads(output)
    keys = {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    if creds.get("Version") != 1 or set(creds) != keys:
        raise RuntimeError(f"unexpected credential_process output keys: {sorted(creds)}")
    if creds["AccessKeyId"] == ACCESS_KEY_ID:
        raise RuntimeError("the long-lived key was released instead of a session")


def prime(inst: Installation, profile: str, code: str) -> bytes:
    """One approved request for ``profile``; returns the credential JSON now cached."""
    proc = start_credproc(inst, profile)
    approve_pending(inst, code, profile=profile)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"priming {profile} failed: {err.decode(errors='replace')}")
    check_credentials(out)
    return out


@contextmanager
def running_vault(*, start: bool = True) -> Iterator[tuple[Installation, FakeSts]]:
    """A FakeSts, an installation with one sealed key pair and (with ``start``) its daemon."""
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-") as tmp, FakeSts() as sts:
        inst = create_installation(Path(tmp) / "v", profiles=PROFILES, sts_url=sts.url)
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        try:
            if start:
                inst.start_daemon()
            yield inst, sts
        finally:
            inst.stop_daemon()


@contextmanager
def reference_server(directory: Path, output: bytes) -> Iterator[Path]:
    """Run ``_reference_server.py`` answering with the fast-path reply around ``output``."""
    path, reply = directory / "reference.sock", directory / "reference-reply"
    reply.write_bytes(expected_reply(output))
    script = Path(__file__).with_name("_reference_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(reply)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        if proc.stdout is None or proc.stdout.readline() != b"ready\n":
            raise RuntimeError("the reference server did not start")
        yield path
    finally:
        proc.kill()
        proc.wait()
        path.unlink(missing_ok=True)


def audit_records(inst: Installation, event: str, profile: str) -> int:
    """How many audit records of ``event`` name ``profile`` (the current log file only)."""
    path = inst.data_dir / "audit.log"
    count = 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == event and record.get("profile") == profile:
            count += 1
    return count


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far, from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rate(op: Callable[[], None], count: int) -> float:
    """Calls of ``op`` per second over ``count`` calls in a row."""
    began = time.perf_counter()
    for _ in range(count):
        op()
    return count / (time.perf_counter() - began)


def interleaved_rates(
    variants: Mapping[str, Callable[[], None]], rounds: int, batch: int
) -> dict[str, list[float]]:
    """Each variant warmed up (a tenth of a batch), then ``rounds`` rounds of one batch per
    variant in turn, so drift hits all alike; the batch rates per variant."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for op in variants.values():
        rate(op, batch // 10 or 1)
    for _ in range(rounds):
        for name, op in variants.items():
            rates[name].append(rate(op, batch))
    return rates


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left-aligned text table."""
    cells = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


@dataclass
class BurstResult:
    """What a socket burst achieved."""

    ok: int = 0
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    retries: int = 0

    @property
    def rate(self) -> float:
        """Complete, correct replies per second."""
        return self.ok / self.seconds if self.seconds else 0.0


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise asyncio.IncompleteReadError(data, size)
        data += chunk
    return data


async def _one_client(
    path: str, request: bytes, want: bytes, stop_at: float, result: BurstResult
) -> None:
    """Connect, ask, read one reply, close; again until ``stop_at``.

    A full listen backlog makes a non-blocking Unix connect fail with EAGAIN: the client waits
    1 ms and connects again, as the credential_process client does (counted in ``retries``).
    """
    loop = asyncio.get_running_loop()
    while (began := loop.time()) < stop_at:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            try:
                sock.connect(path)
            except BlockingIOError:
                result.retries += 1
                await asyncio.sleep(0.001)
                continue
            except OSError as exc:
                result.failures[f"connect: {exc.strerror or type(exc).__name__}"] += 1
                await asyncio.sleep(0.001)
                continue
            try:
                await loop.sock_sendall(sock, request)
                size = int.from_bytes(await _recv_exactly(loop, sock, HEADER), "big")
                body = await _recv_exactly(loop, sock, size)
            except (OSError, asyncio.IncompleteReadError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                result.failures[f"io: {reason}"] += 1
                continue
        finally:
            sock.close()
        if body == want:
            result.ok += 1
            result.latencies.append(loop.time() - began)
        else:
            result.failures[_error_code(body)] += 1


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "unexpected reply"


async def socket_burst(
    socket_path: Path, profile: str, output: bytes, *, clients: int, seconds: float
) -> BurstResult:
    """``clients`` concurrent connections asking for ``profile`` for ``seconds``.

    Each client speaks the wire protocol directly (one request per connection, as the
    credential_process client does) and counts a reply only if it is exactly the expected
    fast-path frame.
    """
    result = BurstResult()
    loop = asyncio.get_running_loop()
    request, want = credentials_frame(profile), expected_reply(output)
    cpu0, began = time.process_time(), loop.time()
    stop_at = began + seconds
    await asyncio.gather(
        *(_one_client(str(socket_path), request, want, stop_at, result) for _ in range(clients))
    )
    result.seconds = loop.time() - began
    result.client_cpu = time.process_time() - cpu0
    return result
