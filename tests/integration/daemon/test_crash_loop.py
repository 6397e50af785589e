"""docs/threat-model.md T20/G13: SIGKILL a writer at random points during its write; the store
always loads as the old or the new generation, and the audit log always verifies.

The writer is `vaultd add`'s own code path (`opened_vault` + `SealedStore.put`) in a child
process that says "ready" once logged in, so the kills land inside the write (the sealed
store's temp file, fsync and rename, and the generation object in the token), not inside
SoftHSM2's own login bookkeeping, whose token files are not crash-safe (a software token for
tests only; hardware tokens commit atomically).  ``VAULTD_CRASH_ITERATIONS`` sets the number
of kills (default 200 here; the nightly run uses 1000).

The second loop SIGKILLs `vaultd serve` itself while clients keep it writing audit records
(each request is refused by the access policy, and each refusal is audited through the group
commit), ``VAULTD_DAEMON_CRASH_ITERATIONS`` times (default 40): after each kill
`vaultd audit verify` passes and the next daemon appends to the same chain.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vaultd.ipc.protocol import encode_request
from vaultd.testing.harness import Installation

MakeVault = Callable[..., Installation]
ITERATIONS = int(os.environ.get("VAULTD_CRASH_ITERATIONS", "200"))
DAEMON_ITERATIONS = int(os.environ.get("VAULTD_DAEMON_CRASH_ITERATIONS", "40"))
HAMMERS = 8
DENY_DEV = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AllowAll", "Effect": "Allow", "Action": "vaultd:*", "Resource": "*"},
        {
            "Sid": "NoDev",
            "Effect": "Deny",
            "Action": "vaultd:GetCredentials",
            "Resource": "profile/dev",
        },
    ],
}

WRITER = """
import sys, time
from vaultd.app import opened_vault
from vaultd.core.model import RecordKind
from vaultd.settings import load_settings
with opened_vault(load_settings()) as vault:
    vault.store.list()
    print("ready", flush=True)
    started = time.monotonic()
    vault.store.put(RecordKind.KEY_PAIR, sys.argv[1], b'{"AccessKeyId":"x"}', masked_id="m")
    print(time.monotonic() - started, flush=True)
"""


def _names(inst: Installation) -> set[str]:
    done = inst.vaultd("list", "--json")
    return {row["name"] for row in json.loads(done.stdout)}


def _writer(inst: Installation, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, name],
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_random_sigkill_during_writes_leaves_old_or_new(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    probe = _writer(inst, "probe")
    assert probe.stdout is not None
    span = float(probe.stdout.readline())
    probe.wait()
    inst.vaultd("remove", "--yes", "probe")
    rng = random.Random(int(os.environ.get("VAULTD_CRASH_SEED", "20261128")))
    expected = _names(inst)
    outcomes = {"old": 0, "new": 0}
    for i in range(ITERATIONS):
        name = f"crash{i}"
        proc = _writer(inst, name)
        time.sleep(rng.uniform(0.0, 1.5) * span)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        names = _names(inst)  # must load: old or new generation, never torn
        if names == expected:
            outcomes["old"] += 1
        else:
            assert names == expected | {name}
            outcomes["new"] += 1
            expected = names
        leftovers = [p for p in os.listdir(inst.data_dir) if p.endswith(".vaultd-tmp")]
        assert len(leftovers) <= 1  # a killed write may leave one temp file until next open
    assert sum(outcomes.values()) == ITERATIONS
    # The kills land both before and after the commit point over the run.
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes


def _hammer(path: str, stop: threading.Event, replies: list[bytes]) -> None:
    """Ask for `dev` credentials over and over until ``stop`` (each ask is refused and audited)."""
    request = encode_request("credentials", profile="dev")
    while not stop.is_set():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(path)
                sock.sendall(request)
                replies.append(sock.recv(65536))
        except OSError:
            time.sleep(0.005)  # the daemon is being killed or restarted


def _audit_records(inst: Installation) -> int:
    """`vaultd audit verify` must pass; returns the records it counted (rotated files too)."""
    done = inst.vaultd("audit", "verify", check=False)
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(rb"OK: (\d+) records, chain intact\n", done.stdout)
    assert match, done.stdout
    return int(match[1])


def test_sigkill_of_the_daemon_while_it_audits_leaves_a_verifiable_chain(
    make_vault: MakeVault, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(DENY_DEV))
    inst = make_vault(start=False, extra={"policy_file": str(policy)})
    rng = random.Random(int(os.environ.get("VAULTD_CRASH_SEED", "20261129")))
    replies: list[bytes] = []
    records = 0
    for _ in range(DAEMON_ITERATIONS):
        inst.start_daemon()
        assert inst.daemon is not None
        stop = threading.Event()
        hammers = [
            threading.Thread(target=_hammer, args=(str(inst.socket), stop, replies))
            for _ in range(HAMMERS)
        ]
        for t in hammers:
            t.start()
        time.sleep(rng.uniform(0.02, 0.3))
        inst.daemon.send_signal(signal.SIGKILL)
        inst.daemon.wait()
        inst.daemon = None
        stop.set()
        for t in hammers:
            t.join(10)
        now = _audit_records(inst)  # verifies, or the assertion names the failure
        assert now >= records
        records = now
    odd = {r[4:120] for r in replies if r and b"ACCESS_DENIED_BY_POLICY" not in r}
    assert replies and not odd, odd
    assert records > DAEMON_ITERATIONS  # the kills landed among audited requests
