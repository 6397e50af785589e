"""Wall time of the credential_process client on a cache hit, against interpreter floors.

Commands run interleaved in one run (a shuffled round of every command, repeated), so drift
hits them alike.  Every client run must print exactly the cached credential JSON.  (e) is the
command ``vaultd setup aws-profile`` writes into ~/.aws/config (the client imported, so its
cached bytecode is used); (f) is (e) without ``--socket`` or ``$VAULTD_SOCKET``, so the client
reads the socket from the config file.  Two rows break the client's cost down: (d) runs credproc's
precompiled bytecode directly, and "socket round trip" is one ``credentials`` request from
this process (no spawn).

    python bench/client_latency.py [--quick]

Target: the command ``setup`` writes within 1.5x of ``python3 -I -S -c pass``; (a), the
script path, is printed beside it (it pays the compile of the script on every run).
"""

from __future__ import annotations

import py_compile
import random
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    CREDPROC,
    HEADER,
    credentials_frame,
    credproc_argv,
    expected_reply,
    median,
    parse_quick,
    percentile,
    prime,
    running_vault,
    table,
)

from vaultd.commands.setup import client_command

TARGET_RATIO = 1.5
SETUP = "(e) the command `vaultd setup aws-profile` writes"
SCRIPT = "(a) python3 -I -S credproc.py"
CONFIG_READ = "(f) as (e), the socket read from the config file"


def _time_once(argv: list[str], env: dict[str, str], expected: bytes | None) -> float:
    began = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0 or (expected is not None and proc.stdout != expected):
        raise RuntimeError(
            f"{argv[-1]!r} run failed (exit {proc.returncode}): {proc.stderr.decode()[:300]}"
        )
    return elapsed


def _round_trip(path: str, request: bytes, want: bytes) -> float:
    began = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(request)
        reply = b""
        while len(reply) < HEADER or len(reply) < HEADER + int.from_bytes(reply[:HEADER], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    elapsed = time.perf_counter() - began
    if reply[HEADER:] != want:
        raise RuntimeError("the socket round trip did not return the cached credentials")
    return elapsed


def main() -> int:
    quick = parse_quick(__doc__ or "")
    rounds = 3 if quick else 60
    with running_vault() as (inst, _sts):
        expected = prime(inst, "dev", "123456")
        env = inst.env
        python = sys.executable
        commands: dict[str, tuple[list[str], bytes | None]] = {
            "python3 -I -S -c pass (floor)": ([python, "-I", "-S", "-c", "pass"], None),
            "python3 -c pass": ([python, "-c", "pass"], None),
            SCRIPT: (credproc_argv(inst, "dev"), expected),
            SETUP: (shlex.split(client_command("dev", str(inst.socket))), expected),
            "(c) python3 -m vaultd credential-process": (
                [python, "-m", "vaultd", "credential-process", "dev"],
                expected,
            ),
        }
        compiled = inst.root / "credproc.pyc"
        py_compile.compile(str(CREDPROC), cfile=str(compiled), doraise=True)
        commands["(d) python3 -I -S credproc.pyc (precompiled)"] = (
            [python, "-I", "-S", str(compiled), "--socket", str(inst.socket), "dev"],
            expected,
        )
        # The README's snippet names no socket: the client reads it from the config file.
        no_socket_env = {k: v for k, v in env.items() if k != "VAULTD_SOCKET"}
        envs = {CONFIG_READ: no_socket_env}
        setup_argv = commands[SETUP][0]
        cut = setup_argv.index("--socket")
        commands[CONFIG_READ] = ([*setup_argv[:cut], *setup_argv[cut + 2 :]], expected)
        script = Path(python).with_name("vaultd")
        if script.exists():
            commands["(b) vaultd credential-process (console script)"] = (
                [str(script), "credential-process", "dev"],
                expected,
            )
        trip = "socket round trip only (no process)"
        request, want_reply = credentials_frame("dev"), expected_reply(expected)
        names = [*commands, trip]
        samples: dict[str, list[float]] = {name: [] for name in names}
        for name in commands:  # warm the page cache once, untimed
            _time_once(commands[name][0], envs.get(name, env), commands[name][1])
        for _ in range(rounds):
            random.shuffle(names)
            for name in names:
                if name == trip:
                    samples[name].append(_round_trip(str(inst.socket), request, want_reply))
                else:
                    argv, want = commands[name]
                    samples[name].append(_time_once(argv, envs.get(name, env), want))
    floor = median(samples["python3 -I -S -c pass (floor)"])
    rows = [
        (
            name,
            f"{median(s) * 1000:.1f}",
            f"{percentile(s, 90) * 1000:.1f}",
            f"{median(s) / floor:.2f}x",
        )
        for name, s in sorted(samples.items(), key=lambda item: median(item[1]))
    ]
    print(f"credential_process client on a cache hit: {rounds} interleaved rounds\n")
    print(table(["command", "median ms", "p90 ms", "vs floor"], rows))
    ratio = median(samples[SETUP]) / floor
    script_ratio = median(samples[SCRIPT]) / floor
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"\nsummary: the setup command is {ratio:.2f}x the -I -S floor "
        f"(target <= {TARGET_RATIO}x: {verdict}), credproc.py as a script {script_ratio:.2f}x; "
        "every client output matched the cached JSON"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
