"""The daemon log (INFO) records approvals (opened, answered and denied, by whom) and the
sessions issued (profile, masked key id, expiry), never a secret; cache hits stay out of it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from vaultd.core.model import mask_key
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending, wait_for

from .conftest import SECRET
from .test_daemon_credentials import credproc, finish

MakeVault = Callable[..., Installation]


def test_approvals_and_issued_sessions_are_logged_without_secrets(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    proc = credproc(inst, "dev")
    approve_pending(inst, "123456", profile="dev")
    code, out, _ = finish(proc)
    assert code == 0
    issued = json.loads(out)
    assert finish(credproc(inst, "dev"))[0] == 0  # a cache hit: not an INFO line
    inst.vaultd("lock")
    proc = credproc(inst, "dev")
    assert wait_for(lambda: json.loads(inst.vaultd("approvals", "--json").stdout) != [])
    denied = json.loads(inst.vaultd("approvals", "--json").stdout)[0]["id"]
    inst.vaultd("deny", denied)
    assert finish(proc)[0] != 0

    log = inst.log()
    opened = re.findall(
        r"INFO approval (\S+) opened for profile dev \(code\), asked by pid \d+", log
    )
    assert len(opened) == 2 and opened[1] == denied
    assert re.search(rf"INFO approval {opened[0]} for profile dev answered by pid \d+", log)
    assert f"INFO approval {opened[0]} for profile dev granted" in log
    assert re.search(rf"INFO approval {denied} for profile dev denied by pid \d+ \(", log)
    key = issued["AccessKeyId"]
    sessions = re.findall(r"INFO new session for profile dev \(key (\S+), expires (\S+)\)", log)
    assert sessions == [(mask_key(key), issued["Expiration"])]
    assert "cached session" not in log
    for secret in (SECRET, issued["SecretAccessKey"], issued["SessionToken"], key, "123456"):
        assert secret not in log
