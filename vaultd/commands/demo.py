"""`vaultd demo`: the whole product end to end, offline, in a throw-away directory.

A SoftHSM2 token (with ``--yubikey``: an emulated YubiKey through Yubico's ykcs11, touch
policy always, so each record open is a touch), moto_server on 127.0.0.1 as STS and IAM, an
IAM user with a virtual MFA device, the software FIDO2 authenticator (touched automatically), a
real `vaultd serve`, and the real AWS CLI asking for credentials through `credential_process` —
first a session profile, then a role chained from it — with one approval touch and no typed
code.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers

if TYPE_CHECKING:
    from vaultd.testing.softhsm import SoftHsmToken


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="run the offline end-to-end demo (SoftHSM2, moto, soft key)")
    p.add_argument("--keep", action="store_true", help="keep the demo directory afterwards")
    p.add_argument(
        "--yubikey",
        action="store_true",
        help="seal with an emulated YubiKey through Yubico's ykcs11 (touch always; needs pcscd, "
        "vsmartcard-vpcd, ykcs11 and the yubikey extra)",
    )
    p.set_defaults(func=run)


@contextmanager
def _emulated_yubikey(root: Path) -> Iterator[SoftHsmToken]:
    """A private pcscd with an emulated YubiKey whose slot 82 key wants a touch per use.

    The key is made with yubikit (ykcs11 2.2 cannot set a touch policy); `vaultd init` then
    finds it and generates the audit key in 9a.  The card touches itself when asked.
    """
    from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

    from vaultd.errors import ConfigError
    from vaultd.keys.piv import yubikit_session
    from vaultd.testing.pcsc import find_ykcs11, missing_parts, piv_stack
    from vaultd.testing.piv_card import DEFAULT_PIN
    from vaultd.testing.softhsm import SoftHsmToken

    missing = missing_parts() + ([] if find_ykcs11() else ["ykcs11"])
    if missing:
        raise ConfigError(f"the YubiKey demo needs {', '.join(missing)}: apt-get install them")
    with piv_stack(root / "pcsc", root / "card.json") as stack:
        with yubikit_session(stack.reader_name) as piv:
            if piv is None:
                raise ConfigError("the YubiKey demo needs the yubikey extra (yubikey-manager)")
            piv.authenticate(DEFAULT_MANAGEMENT_KEY)
            piv.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256, PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
        label = f"YubiKey PIV #{stack.card.state().serial}"
        yield SoftHsmToken(root / "unused.conf", str(stack.ykcs11), label, DEFAULT_PIN, "")
        print(
            f"    the emulated YubiKey was touched {stack.card.touches} time(s) on its vault key "
            "(touch always): one at init, then one per record a request opened"
        )


def _say(step: str) -> None:
    print(f"\n==> {step}", flush=True)


# Long: the demo is one narrated script; its steps print in the order they run.
def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import shutil
    import subprocess
    import sys
    import tempfile

    from vaultd.errors import ConfigError
    from vaultd.testing.harness import create_installation
    from vaultd.testing.moto_server import moto_process
    from vaultd.testing.soft_ctap2 import SoftCtap2Device
    from vaultd.testing.softhsm import find_softhsm_module

    logging.basicConfig(level=logging.ERROR)
    # The test doubles announce themselves at CRITICAL (never to be mistaken for the real
    # thing); in the demo that is expected, so it reads as a note, not an alarm.
    notes = logging.StreamHandler(sys.stdout)
    notes.setFormatter(logging.Formatter("    note: %(message)s"))
    doubles = logging.getLogger("vaultd.testing")
    doubles.addHandler(notes)
    doubles.propagate = False
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        raise ConfigError("the demo needs SoftHSM2: sudo apt-get install softhsm2")
    root = Path(tempfile.mkdtemp(prefix="vaultd-demo-"))
    try:
        _say("Starting moto_server (STS and IAM) on 127.0.0.1")
        with moto_process() as moto, ExitStack() as cards:
            print(f"    {moto.url}")
            _say("Creating IAM user 'alice' with an access key, a virtual MFA device, a role")
            key_id, secret = moto.create_user_with_key("alice")
            serial, seed = moto.create_virtual_mfa("alice")
            role_arn = moto.create_role("Admin")
            print(f"    key {key_id[:4]}...{key_id[-4:]}, MFA {serial}, role {role_arn}")

            token = None
            if args.yubikey:
                _say("An emulated YubiKey (slot 82: P-256, touch always) behind a private pcscd")
                token = cards.enter_context(_emulated_yubikey(root))
                _say("`vaultd init` through Yubico's ykcs11 (token ECDH; audit key made in 9a)")
            else:
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
                token=token,
            )
            print(inst.config_path.read_text().rstrip())

            _say("`vaultd add alice` (keys on stdin) and `vaultd mfa add-totp` (seed on stdin)")
            inst.add_key_pair("alice", key_id, secret)
            inst.vaultd("mfa", "add-totp", serial, input=seed.encode())
            print(inst.vaultd("list").stdout.decode().rstrip())

            _say("Enrolling the software FIDO2 authenticator (it touches itself after 0.3 s)")
            SoftCtap2Device(device).set_touch("auto", 0.3)
            print(inst.vaultd("fido2", "enroll", "--name", "demo-key").stdout.decode().rstrip())

            _say("Starting `vaultd serve`")
            inst.start_daemon()
            print(f"    socket {inst.socket}")
            moto.start_recording()

            for profile in ("dev", "admin"):
                _say(f"aws sts get-caller-identity --profile {profile}  (credential_process)")
                done = subprocess.run(  # noqa: S603 - fixed argv
                    [sys.executable, "-m", "awscli", "sts", "get-caller-identity",
                     "--profile", profile],
                    env=inst.env,
                    capture_output=True,
                    timeout=120,
                    check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    print(done.stderr.decode(), file=sys.stderr)
                    print(inst.log(), file=sys.stderr)
                    return 1
                print(json.dumps(json.loads(done.stdout), indent=4))

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

            _say("`vaultd status` and `vaultd audit verify`")
            print(inst.vaultd("status").stdout.decode().rstrip())
            print(inst.vaultd("audit", "verify").stdout.decode().rstrip())
            inst.stop_daemon()
        _say("Done: one approval touch, no typed code, no long-lived key outside the token's seal")
        return 0
    finally:
        if args.keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
