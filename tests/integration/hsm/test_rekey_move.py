"""`vaultd rekey --module --token-label` on real SoftHSM2 tokens (two in one SOFTHSM2_CONF): a
token AEAD store moves to an ECDH key on another token; SIGKILLed at each step (the atomic
writer's ``crash_hook``), the store opens with the old or the new config, every record intact."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaultd.app import open_token_key
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import SoftHsmToken, create_token, reinitialize

pytestmark = pytest.mark.hsm

NEW = "moved"
NEW_KEY = "vaultd-moved"
CHILD = r"""
import os, signal, sys
from vaultd import cli
from vaultd.store import atomic

def hook(name):
    if name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
atomic.crash_hook = hook
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Installation]:
    yield create_installation(tmp_path / "i")  # token AEAD, the default scheme


@pytest.fixture
def new(inst: Installation) -> SoftHsmToken:
    return create_token(inst.root / "hsm", label=NEW)


def _move_args(inst: Installation, label: str = NEW, scheme: str = "ecdh") -> list[str]:
    module = inst.token.module_path
    return ["--module", module, "--token-label", label, "--scheme", scheme, "--key-label", NEW_KEY]


def _one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _records(
    inst: Installation, monkeypatch: pytest.MonkeyPatch, label: str, key_label: str, pin: str
) -> list[tuple[str, bytes]]:
    """Every record opened in this process with token ``label``'s key ``key_label``."""
    monkeypatch.setenv("SOFTHSM2_CONF", inst.env["SOFTHSM2_CONF"])
    reinitialize(inst.token.module_path)
    key = open_token_key(inst.token.module_path, label, key_label, pin)
    try:
        store = SealedStore(inst.data_dir / "store.vault", key, key, FakeClock(), authenticator=key)
        return [(info.name, text) for info, text in store.snapshot().records]
    finally:
        key.close()


def _old(inst: Installation, mp: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    return _records(inst, mp, inst.token.label, "vaultd-kek", inst.token.user_pin)


def _switch(inst: Installation, new: SoftHsmToken, printed: str) -> None:
    """Set the config lines `rekey` printed, and the new token's PIN file."""
    for name, value in re.findall(
        r'^(module|token_label|scheme|key_label) = "(.*)"$', printed, re.M
    ):
        inst.config["pkcs11"][name] = value
    (inst.root / "pin").write_text(new.user_pin)
    inst.write_config()


def _with_records(inst: Installation) -> None:
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    inst.add_key_pair("prod", "AKIAPROD000000000001", "ProdSecret" + "0" * 30)
    inst.vaultd("keys", "add", "--recovery")


def test_an_aead_store_moves_to_an_ecdh_key_on_another_token(
    inst: Installation, new: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_records(inst)
    before = _old(inst, monkeypatch)
    old_id = inst.vaultd("keys", "list").stdout.decode().split()[1]
    pin = new.user_pin.encode() + b"\n"
    out = inst.vaultd("rekey", *_move_args(inst), input=pin).stdout.decode()
    assert "re-sealed 2 records" in out and f"vaultd keys remove {old_id}" in out
    assert f'token_label = "{NEW}"\nscheme = "ecdh"\nkey_label = "{NEW_KEY}"' in out
    assert _old(inst, monkeypatch) == before  # the old config still opens every record
    refused = inst.vaultd("keys", "remove", old_id, check=False)
    assert "is the vault's token" in _one_line_error(refused)  # not switched yet
    body = b'{"AccessKeyId": "AKIAMORE000000000001", "SecretAccessKey": "MoreSecret0000000000"}'
    write = inst.vaultd("add", "more", "--no-bind-fido2", input=body, check=False)
    assert "has moved to token key ecdh-p256:" in _one_line_error(write)

    _switch(inst, new, out)
    assert _records(inst, monkeypatch, NEW, NEW_KEY, new.user_pin) == before
    assert inst.vaultd("audit", "verify").returncode == 0  # the new token's chain
    assert (inst.data_dir / f"audit.log.archive-{old_id}" / "audit.log").exists()
    listed = inst.vaultd("keys", "list").stdout.decode().split()
    assert listed[1].startswith("ecdh-p256:") and listed[2:4] == ["old-token", old_id]
    inst.vaultd("keys", "remove", old_id)
    assert old_id not in inst.vaultd("keys", "list").stdout.decode()
    assert _records(inst, monkeypatch, NEW, NEW_KEY, new.user_pin) == before
    inst.vaultd("add", "more", "--no-bind-fido2", input=body)  # the new token writes


@pytest.mark.parametrize(
    "point", ["before_write", "mid_write", "after_fsync", "before_rename", "after_rename"]
)
def test_a_move_killed_at_each_step_opens_and_a_rerun_completes(
    inst: Installation, new: SoftHsmToken, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    _with_records(inst)
    before = _old(inst, monkeypatch)
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, point, "rekey", *_move_args(inst)],
        env=inst.env,
        input=new.user_pin.encode() + b"\n",
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert _old(inst, monkeypatch) == before  # the old config opens, whatever the step
    pin = new.user_pin.encode() + b"\n"
    out = inst.vaultd("rekey", *_move_args(inst), input=pin).stdout.decode()
    assert _old(inst, monkeypatch) == before  # done, not yet switched
    _switch(inst, new, out)
    assert _records(inst, monkeypatch, NEW, NEW_KEY, new.user_pin) == before
    assert b"work" in inst.vaultd("list").stdout


def test_a_wrong_new_pin_is_one_line_and_leaves_the_store(
    inst: Installation, new: SoftHsmToken
) -> None:
    _with_records(inst)
    before = (inst.data_dir / "store.vault").read_bytes()
    wrong = inst.vaultd("rekey", *_move_args(inst), input=b"not-the-pin\n", check=False)
    line = _one_line_error(wrong)
    assert "refused the PIN" in line and "not-the-pin" not in line
    assert (inst.data_dir / "store.vault").read_bytes() == before


def test_a_move_beside_a_running_daemon_is_refused_before_any_pin(
    inst: Installation, new: SoftHsmToken
) -> None:
    """The daemon would be left auditing to a token that no longer holds the chain."""
    _with_records(inst)
    before = (inst.data_dir / "store.vault").read_bytes()
    inst.start_daemon()
    try:
        moved = inst.vaultd("rekey", *_move_args(inst), input=b"", check=False)
    finally:
        inst.stop_daemon()
    line = _one_line_error(moved)
    assert "ALREADY_RUNNING" in line and "stop it first" in line, line
    assert "nothing was done" in line and "own data_dir" not in line
    assert (inst.data_dir / "store.vault").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token-label", NEW], "--module PATH and --token-label LABEL"),
        (["--module", "MODULE", "--token-label", NEW, "--scheme", "rot13"], "unknown scheme"),
        (["--module", "MODULE", "--token-label", "nope"], "no token labelled 'nope'"),
        (["--module", "MODULE", "--token-label", "SELF"], "is the vault's token already"),
    ],
)
def test_bad_options_are_refused_before_any_pin(
    inst: Installation, new: SoftHsmToken, args: list[str], message: str
) -> None:
    before = (inst.data_dir / "store.vault").read_bytes()
    names = {"MODULE": inst.token.module_path, "SELF": inst.token.label}
    proc = inst.vaultd("rekey", *(names.get(a, a) for a in args), check=False)
    assert message in _one_line_error(proc)
    assert (inst.data_dir / "store.vault").read_bytes() == before


def _forge_tag(old: dict[str, str], entries: list[dict[str, str]]) -> None:
    old["tag"] = "AAAA" + old["tag"][4:]


def _empty_tag(old: dict[str, str], entries: list[dict[str, str]]) -> None:
    old["tag"] = ""


def _second_old_token(old: dict[str, str], entries: list[dict[str, str]]) -> None:
    entries.append({"id": "another-old-token", "tag": old["tag"]})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_forge_tag, "does not match its records"),
        (_empty_tag, "has an empty tag"),
        (_second_old_token, "more than one old token"),
    ],
)
def test_an_edited_old_token_entry_is_refused(
    inst: Installation,
    new: SoftHsmToken,
    edit: Callable[[dict[str, str], list[dict[str, str]]], None],
    message: str,
) -> None:
    _with_records(inst)
    inst.vaultd("rekey", *_move_args(inst), input=new.user_pin.encode() + b"\n")
    path = inst.data_dir / "store.vault"
    header, body = path.read_text().split("\n", 1)
    store = json.loads(body)
    edit(next(e for e in store["recipients"] if set(e) == {"id", "tag"}), store["recipients"])
    path.write_text(header + "\n" + json.dumps(store))
    assert message in _one_line_error(inst.vaultd("list", check=False))


KILLED_IN_AUDIT = r"""
import os, signal, sys
from vaultd import cli
from vaultd.store import audit

def archive(path, into):  # moves the log, then dies before its head anchor
    into.mkdir(mode=0o700)
    os.rename(path, into / path.name)
    os.kill(os.getpid(), signal.SIGKILL)
audit.archive_chain = archive
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_move_killed_while_archiving_the_audit_chain_completes_on_a_rerun(
    inst: Installation, new: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_records(inst)
    before = _old(inst, monkeypatch)
    pin = new.user_pin.encode() + b"\n"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_AUDIT, "rekey", *_move_args(inst)],
        env=inst.env,
        input=pin,
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert _old(inst, monkeypatch) == before
    out = inst.vaultd("rekey", *_move_args(inst), input=pin).stdout.decode()
    _switch(inst, new, out)
    assert _records(inst, monkeypatch, NEW, NEW_KEY, new.user_pin) == before
    assert inst.vaultd("audit", "verify").returncode == 0
    archived = {p.name for p in inst.data_dir.glob("audit.log.archive-*/*")}
    assert {"audit.log", "audit.log.head"} <= archived


def test_a_tampered_audit_chain_is_refused_before_the_store_is_written(
    inst: Installation, new: SoftHsmToken
) -> None:
    _with_records(inst)
    store = (inst.data_dir / "store.vault").read_bytes()
    log = inst.data_dir / "audit.log"
    log.write_text(log.read_text().replace("record_added", "record_edited", 1))
    proc = inst.vaultd("rekey", *_move_args(inst), input=new.user_pin.encode() + b"\n", check=False)
    assert "AUDIT_TAMPERED" in _one_line_error(proc)
    assert (inst.data_dir / "store.vault").read_bytes() == store
