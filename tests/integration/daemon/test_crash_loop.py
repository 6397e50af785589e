"""THREATS T20/G13: SIGKILL a writer at random points during its write; the store always
loads as the old or the new generation.

The writer is `vaultd add`'s own code path (`opened_vault` + `SealedStore.put`) in a child
process that says "ready" once logged in, so the kills land inside the write (the sealed
store's temp file, fsync and rename, and the generation object in the token), not inside
SoftHSM2's own login bookkeeping, whose token files are not crash-safe (a software token for
tests only; hardware tokens commit atomically).  ``VAULTD_CRASH_ITERATIONS`` sets the number
of kills (default 40 here; the nightly run uses 1000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from vaultd.testing.harness import Installation

MakeVault = Callable[..., Installation]
ITERATIONS = int(os.environ.get("VAULTD_CRASH_ITERATIONS", "40"))

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
    inst.vaultd("remove", "probe")
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
