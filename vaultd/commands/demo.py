"""`vaultd demo`: the whole product end to end, offline, in a throw-away directory.

A SoftHSM2 token, moto_server on 127.0.0.1 as STS and IAM, an IAM user with a virtual MFA
device, the software FIDO2 authenticator (touched automatically), a real `vaultd serve`, and
the real AWS CLI asking for credentials through `credential_process` — first a session
profile, then a role chained from it — with one touch and no typed code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers
from vaultd.errors import ConfigError

if TYPE_CHECKING:
    from vaultd.testing.harness import Installation
    from vaultd.testing.moto_server import MotoProcess


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="run the offline end-to-end demo (SoftHSM2, moto, soft key)")
    p.add_argument("--keep", action="store_true", help="keep the demo directory afterwards")
    p.set_defaults(func=run)


def _say(step: str) -> None:
    print(f"\n==> {step}", flush=True)


def run(args: argparse.Namespace) -> int:
    # The test doubles load moto, SoftHSM2 and fido2: only `vaultd demo` pays for them.
    from vaultd.testing.moto_server import moto_process
    from vaultd.testing.softhsm import find_softhsm_module

    _quiet_doubles()
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        raise ConfigError("the demo needs SoftHSM2: sudo apt-get install softhsm2")
    root = Path(tempfile.mkdtemp(prefix="vaultd-demo-"))
    try:
        _say("Starting moto_server (STS and IAM) on 127.0.0.1")
        with moto_process() as moto:
            print(f"    {moto.url}")
            inst = _install(moto, root)
            _say("Starting `vaultd serve`")
            inst.start_daemon()
            print(f"    socket {inst.socket}")
            moto.start_recording()
            if not all(_caller_identity(inst, profile) for profile in ("dev", "admin")):
                return 1
            _show_sts_requests(moto)
            _say("`vaultd status` and `vaultd audit verify`")
            print(inst.vaultd("status").stdout.decode().rstrip())
            print(inst.vaultd("audit", "verify").stdout.decode().rstrip())
            inst.stop_daemon()
        _say("Done: one touch, no typed code, no long-lived key outside the token's seal")
        return 0
    finally:
        if args.keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _quiet_doubles() -> None:
    """The test doubles announce themselves at CRITICAL (never to be mistaken for the real
    thing); in the demo that is expected, so it reads as a note, not an alarm."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import logging  # not loaded by `vaultd --help`, which imports this module's parser

    logging.basicConfig(level=logging.ERROR)
    notes = logging.StreamHandler(sys.stdout)
    notes.setFormatter(logging.Formatter("    note: %(message)s"))
    doubles = logging.getLogger("vaultd.testing")
    doubles.addHandler(notes)
    doubles.propagate = False


def _install(moto: MotoProcess, root: Path) -> Installation:
    """An IAM user with a key, an MFA device and a role in moto; a vault holding them."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.testing.harness import create_installation
    from vaultd.testing.soft_ctap2 import SoftCtap2Device

    _say("Creating IAM user 'alice' with an access key, a virtual MFA device, a role")
    key_id, secret = moto.create_user_with_key("alice")
    serial, seed = moto.create_virtual_mfa("alice")
    role_arn = moto.create_role("Admin")
    print(f"    key {key_id[:4]}...{key_id[-4:]}, MFA {serial}, role {role_arn}")

    _say("Creating a SoftHSM2 token and `vaultd init` (AES-256 key made in the token)")
    device = root / "security-key.json"
    inst = create_installation(
        root / "vault",
        profiles={
            "dev": {"credentials": "alice", "mfa_serial": serial, "approval": "touch"},
            "admin": {"source_profile": "dev", "role_arn": role_arn, "approval": "touch"},
        },
        sts_url=moto.url,
        extra={"fido2": {"devices": [f"soft:{device}"]}},
    )
    print(inst.config_path.read_text().rstrip())

    _say("`vaultd add alice` (keys on stdin) and `vaultd mfa add-totp` (seed on stdin)")
    inst.add_key_pair("alice", key_id, secret)
    inst.vaultd("mfa", "add-totp", serial, input=seed.encode())
    print(inst.vaultd("list").stdout.decode().rstrip())

    _say("Enrolling the software FIDO2 authenticator (it touches itself after 0.3 s)")
    SoftCtap2Device(device).set_touch("auto", 0.3)
    print(inst.vaultd("fido2", "enroll", "--name", "demo-key").stdout.decode().rstrip())
    return inst


def _caller_identity(inst: Installation, profile: str) -> bool:
    """Run the real AWS CLI through credential_process; False (and the logs) if it failed."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import subprocess  # not loaded by `vaultd --help`, which imports this module's parser

    _say(f"aws sts get-caller-identity --profile {profile}  (credential_process)")
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", profile],
        env=inst.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        print(done.stderr.decode(), file=sys.stderr)
        print(inst.log(), file=sys.stderr)
        return False
    print(json.dumps(json.loads(done.stdout), indent=4))
    return True


def _show_sts_requests(moto: MotoProcess) -> None:
    """What STS received (moto's request recorder)."""
    _say("What STS received (moto's request recorder)")
    for req in moto.recorded_requests():
        params = req.get("params", {})
        if params.get("Action") in ("GetSessionToken", "AssumeRole"):
            shown = {
                k: params[k]
                for k in ("Action", "SerialNumber", "TokenCode", "RoleArn")
                if k in params
            }
            print(f"    {shown}")
    print(
        "    (moto does not check MFA codes and answers GetSessionToken with fixed "
        "example credentials, hence user/moto above)"
    )
