"""THREATS T20/G13: SIGKILL `vaultd add` at random points; the store always loads old or new.

``VAULTD_CRASH_ITERATIONS`` sets the number of kills (default 60 in the normal run; the
nightly run uses 1000).
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
ITERATIONS = int(os.environ.get("VAULTD_CRASH_ITERATIONS", "60"))


def _names(inst: Installation) -> set[str]:
    done = inst.vaultd("list", "--json")
    return {row["name"] for row in json.loads(done.stdout)}


def test_random_sigkill_during_add_leaves_old_or_new(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    body = json.dumps(
        {"AccessKeyId": "AKIACRASHTEST0000001", "SecretAccessKey": "CrashSecret" + "0" * 29}
    ).encode()
    # How long one add takes here, to spread the kills over its whole run.
    started = time.monotonic()
    inst.vaultd("add", "probe", input=body)
    span = time.monotonic() - started
    inst.vaultd("remove", "probe")
    rng = random.Random(int(os.environ.get("VAULTD_CRASH_SEED", "20261128")))
    expected = _names(inst)
    outcomes = {"old": 0, "new": 0}
    for i in range(ITERATIONS):
        name = f"crash{i}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaultd", "add", name],
            env=inst.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(body)
        proc.stdin.close()
        time.sleep(rng.uniform(0.3, 1.1) * span)
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
        assert len(leftovers) <= 1  # a killed write may leave one temp file; never plaintext
        for leftover in leftovers:
            assert b"CrashSecret" not in (inst.data_dir / leftover).read_bytes()
    assert sum(outcomes.values()) == ITERATIONS
    # The kills land both before and after the commit point over the run.
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes
