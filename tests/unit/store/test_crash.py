"""SIGKILL at each atomic-write point leaves the old or the new store, never a mix
(docs/threat-model.md T20).

Each case runs a real child interpreter that kills itself inside ``atomic_write``; the anchor is
``FileAnchor`` (a file-backed fake of the token data object) so it survives the process.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from vaultd.core.model import RecordKind
from vaultd.store.atomic import TEMP_SUFFIX, ensure_private_dir

HELPER = Path(__file__).with_name("crash_child.py")


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vaultd_test_crash_child", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_helper()


@pytest.mark.parametrize(
    ("point", "survivor"),
    [
        ("before_write", child.OLD),
        ("mid_write", child.OLD),
        ("after_fsync", child.OLD),
        ("before_rename", child.OLD),
        ("after_rename", child.NEW),
    ],
)
def test_kill_at_crash_point(tmp_path: Path, point: str, survivor: bytes) -> None:
    ensure_private_dir(tmp_path / "data")
    store_path, anchor_path = tmp_path / "data" / "store.json", tmp_path / "anchor"
    anchor_path.write_text("5")
    store = child.open_store(store_path, anchor_path)
    store.initialize()
    store.put(RecordKind.KEY_PAIR, "a", child.OLD)
    store.put(RecordKind.TOTP_SEED, "b", b"other")  # generation 7 on disk and anchored
    before = store_path.read_bytes()

    proc = subprocess.run(
        [sys.executable, str(HELPER), str(store_path), str(anchor_path), point],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert anchor_path.read_text() == "7"  # the child died before anchoring generation 8
    temps = [p.name for p in store_path.parent.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert bool(temps) == (point != "after_rename")
    if survivor == child.OLD:
        assert store_path.read_bytes() == before
    if point in ("before_rename", "after_rename"):
        assert store_path.with_name("store.json.prev").read_bytes() == before

    reopened = child.open_store(store_path, anchor_path)
    assert reopened.get(RecordKind.KEY_PAIR, "a") == survivor
    assert reopened.get(RecordKind.TOTP_SEED, "b") == b"other"
    assert anchor_path.read_text() == ("8" if survivor == child.NEW else "7")
    assert not [p for p in store_path.parent.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    reopened.put(RecordKind.KEY_PAIR, "c", b"after recovery")
    assert child.open_store(store_path, anchor_path).names(RecordKind.KEY_PAIR) == ["a", "c"]
