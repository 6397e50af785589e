"""`vaultd doctor` against a real SoftHSM2 installation: the key's attributes and its
encryption count (docs/threat-model.md T8), with a warning once 90% of the per-key limit is used."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from vaultd.keys.pkcs11 import ENCRYPTION_BLOCK, ENCRYPTION_LIMIT
from vaultd.testing.harness import Installation

MakeVault = Callable[..., Installation]

# Replaces the key's counter object in the token with one holding argv[1]; the PIN comes on
# stdin (never argv).
PLANT = """
import sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
from vaultd.keys.pkcs11 import ENCRYPTIONS_LABEL
value, pin = int(sys.argv[1]), sys.stdin.read()
lib = pkcs11.lib(sys.argv[2])
with lib.get_token(token_label=sys.argv[3]).open(rw=True, user_pin=pin) as session:
    counters = [
        o for o in session.get_objects({Attribute.CLASS: ObjectClass.DATA})
        if o[Attribute.LABEL].startswith(ENCRYPTIONS_LABEL + ":")
    ]
    assert len(counters) == 1, counters
    label = counters[0][Attribute.LABEL]
    counters[0].destroy()
    session.create_object({
        Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: True,
        Attribute.LABEL: label, Attribute.VALUE: value.to_bytes(8, "big"),
    })
"""


def test_doctor_shows_the_encryption_count_and_warns_near_the_limit(
    make_vault: MakeVault,
) -> None:
    inst = make_vault(start=False)  # `vaultd init` and `vaultd add` reserved a block each
    out = inst.vaultd("doctor").stdout.decode()
    assert "ok    token, key and store" in out, out
    assert f"{2 * ENCRYPTION_BLOCK:,} of {ENCRYPTION_LIMIT:,} encryptions" in out, out
    assert "WARN  the token key" not in out

    near = ENCRYPTION_LIMIT * 95 // 100
    subprocess.run(
        [sys.executable, "-c", PLANT, str(near), inst.token.module_path, inst.token.label],
        input=inst.token.user_pin.encode(),
        env=inst.env,
        check=True,
        timeout=60,
    )
    out = inst.vaultd("doctor").stdout.decode()
    assert f"{near:,} of {ENCRYPTION_LIMIT:,} encryptions" in out, out
    assert "WARN  the token key has made" in out and "replace the key soon" in out, out


def _doctor(inst: Installation, *args: str) -> tuple[int, str]:
    done = inst.vaultd("doctor", *args, check=False)
    return done.returncode, done.stdout.decode()


def test_doctor_never_guesses_a_pin_again_after_a_wrong_one(make_vault: MakeVault) -> None:
    """Issue 16: each doctor run with a wrong PIN file used to spend a PIN try."""
    inst = make_vault(start=False)
    pin_file = inst.root / "pin"
    pin_file.write_text("999999")
    status, out = _doctor(inst)
    assert status == 1
    assert f"PIN from the PIN file {pin_file}" in out, out
    assert "HSM_PIN_INCORRECT" in out, out

    pin_file.write_text(inst.token.user_pin)  # fixed, but doctor must not find that out by trying
    status, out = _doctor(inst)
    assert status == 1
    assert "a wrong PIN was entered since the last good login" in out, out
    assert "token login: not tried, so no PIN try is spent" in out, out
    assert "ok    token, key and store" not in out
    status, out = _doctor(inst)  # still flagged: the run above did not log in
    assert "token login: not tried" in out, out

    status, out = _doctor(inst, "--try-pin")
    assert status == 0, out
    assert "ok    token, key and store" in out
    status, out = _doctor(inst)
    assert status == 0, out
    assert "no wrong PIN since the last good login" in out, out


def test_doctor_checks_profiles_against_the_store(make_vault: MakeVault) -> None:
    serial = "arn:aws:iam::123456789012:mfa/alice"
    inst = make_vault(
        start=False,
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": serial},
            "ghost": {"credentials": "ghost", "mfa_serial": serial},
            "touchy": {"credentials": "dev", "mfa_serial": serial, "approval": "touch"},
        },
    )
    status, out = _doctor(inst)
    assert status == 1
    assert "FAIL  profile ghost: credentials 'ghost' is not stored: `vaultd add ghost`" in out
    assert f"FAIL  profile touchy: approval 'touch' needs the sealed seed of {serial}" in out
    assert "FAIL  profile touchy: approval 'touch' needs an enrolled security key" in out
    assert "profile dev:" not in out
    assert "ok    audit log" in out or "info  audit log" in out


def test_doctor_checks_the_aws_config_lines_that_run_vaultd(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    aws_config = inst.root / "aws-config"
    aws_config.write_text(
        "[profile dev]\n"
        f"credential_process = {sys.executable} -m vaultd credential-process dev\n"
        "[profile gone]\n"
        "credential_process = /nonexistent/python -I /nonexistent/credproc.py dev\n"
        "[profile other]\n"
        f"credential_process = {sys.executable} -m vaultd credential-process nosuch\n"
        "[profile plain]\n"
        "region = eu-west-1\n"
    )
    (inst.root / "aws-credentials").write_text(
        "[dev]\naws_access_key_id = AKIAOVERRIDE00000001\naws_secret_access_key = x\n"
    )
    status, out = _doctor(inst)
    assert status == 1
    assert "FAIL  ~/.aws/config [profile gone]: /nonexistent/python does not exist" in out, out
    assert "FAIL  ~/.aws/config [profile other]: asks for vaultd profile 'nosuch'" in out, out
    assert "[dev] holds static keys, and the AWS CLI uses them before credential_process" in out
    assert "[profile plain]" not in out

    (inst.root / "aws-credentials").write_text("")
    _, out = _doctor(inst)
    assert "ok    ~/.aws/config [profile dev]: runs vaultd for profile 'dev'" in out, out


def test_doctor_says_when_the_daemon_runs_with_another_config(make_vault: MakeVault) -> None:
    serial = "arn:aws:iam::123456789012:mfa/alice"
    inst = make_vault(profiles={"dev": {"credentials": "dev", "mfa_serial": serial}})
    assert inst.daemon is not None
    _, out = _doctor(inst)
    assert "ok    daemon: running on" in out, out
    assert "daemon config" not in out, out
    inst.config["profiles"]["ops"] = {"credentials": "dev", "mfa_serial": serial}
    inst.write_config()
    _, out = _doctor(inst)
    pid = inst.daemon.pid
    assert (
        "WARN  daemon config: the config file changed since the daemon loaded it; reload it "
        f"with `kill -HUP {pid}` (or `systemctl --user reload vaultd`)"
    ) in out, out
