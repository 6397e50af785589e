"""SIGHUP reloads the config on a real daemon: sessions of unchanged profiles stay cached, a
changed profile asks again, a new profile works; `vaultd status` warns while the file differs
from what the daemon runs with; a config that does not load leaves the running one."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending, wait_for

from .test_daemon_credentials import credproc, finish

MakeVault = Callable[..., Installation]
SESSION = {"credentials": "dev", "mfa_serial": MFA_SERIAL}
WARNING = b"warning: the config file changed since the daemon loaded it"


def served(inst: Installation, profile: str, code: str | None = None) -> None:
    proc = credproc(inst, profile)
    if code is not None:
        approve_pending(inst, code, profile=profile)
    rc, out, err = finish(proc)
    assert rc == 0 and json.loads(out)["Version"] == 1, err


def hangup(inst: Installation, needle: str) -> None:
    """SIGHUP the daemon and wait until its log shows ``needle`` in a new line."""
    assert inst.daemon is not None
    before = len(inst.log().splitlines())
    inst.daemon.send_signal(signal.SIGHUP)
    assert wait_for(lambda: needle in "\n".join(inst.log().splitlines()[before:])), inst.log()


def test_sighup_keeps_unchanged_sessions_and_applies_the_edit(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(profiles={"dev": SESSION, "ops": SESSION})
    served(inst, "dev", "111111")
    served(inst, "ops", "222222")
    assert WARNING not in inst.vaultd("status").stdout
    inst.config["profiles"]["ops"] = {**SESSION, "duration_seconds": 7200}
    inst.config["profiles"]["new"] = SESSION
    inst.write_config()
    assert WARNING in inst.vaultd("status").stdout

    hangup(inst, "INFO config reloaded (added: new; changed: ops)")
    assert WARNING not in inst.vaultd("status").stdout
    served(inst, "dev")  # unchanged: still served from the cache, nothing asked
    assert fake_sts.calls("GetSessionToken") == 2
    served(inst, "ops", "333333")  # changed: asked again, with the new duration
    (last,) = fake_sts.requests[-1:]
    assert last.duration_seconds == 7200
    served(inst, "new", "444444")
    assert fake_sts.calls("GetSessionToken") == 4
    assert '"reload"' in (inst.data_dir / "audit.log").read_text()


def test_a_config_that_does_not_load_leaves_the_running_one(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(profiles={"dev": SESSION})
    served(inst, "dev", "111111")
    good = inst.config_path.read_text()
    inst.config_path.write_text(good + '\n[profiles.bad]\nduration_seconds = "long"\n')
    hangup(inst, "ERROR config not reloaded, the running one stays: CONFIG_INVALID")
    inst.config_path.write_text(good)
    served(inst, "dev")  # the session was kept
    inst.config["approval"]["timeout_seconds"] = 40
    inst.write_config()
    hangup(inst, "WARNING restart vaultd to apply the edited approval.timeout_seconds")
    served(inst, "dev")
    assert fake_sts.calls("GetSessionToken") == 1
