"""atomic_write, temp cleanup and private-path checks on the real filesystem (docs/threat-model.md
T20, T22)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.errors import ConfigError, StoreError, UnsafePermissions
from vaultd.store import atomic
from vaultd.store.atomic import (
    TEMP_SUFFIX,
    atomic_write,
    check_private,
    cleanup_temp_files,
    ensure_private_dir,
)


@pytest.fixture(autouse=True)
def _no_hook() -> Iterator[None]:
    yield
    atomic.crash_hook = None


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_creates_private_file_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "f", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert _mode(tmp_path / "f") == 0o600
    atomic_write(tmp_path / "g", b"x", mode=0o640)
    assert _mode(tmp_path / "g") == 0o640


def test_keep_previous(tmp_path: Path) -> None:
    target = tmp_path / "store"
    atomic_write(target, b"one", keep_previous=True)
    assert not (tmp_path / "store.prev").exists()
    atomic_write(target, b"two", keep_previous=True)
    atomic_write(target, b"three", keep_previous=True)
    assert target.read_bytes() == b"three"
    assert (tmp_path / "store.prev").read_bytes() == b"two"
    atomic_write(target, b"four")
    assert (tmp_path / "store.prev").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "store.prev"]


def test_crash_points_in_order(tmp_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []
    target = tmp_path / "t"
    atomic_write(target, b"old")

    def hook(point: str) -> None:
        seen.append((point, target.read_bytes()))

    atomic.crash_hook = hook
    atomic_write(target, b"new-content", keep_previous=True)
    assert seen == [
        ("before_write", b"old"),
        ("mid_write", b"old"),
        ("after_fsync", b"old"),
        ("before_rename", b"old"),
        ("after_rename", b"new-content"),
    ]


def test_mid_write_has_half_the_bytes(tmp_path: Path) -> None:
    sizes: list[int] = []

    def hook(point: str) -> None:
        if point == "mid_write":
            (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
            sizes.append(tmp.stat().st_size)

    atomic.crash_hook = hook
    atomic_write(tmp_path / "t", b"x" * 1001)
    assert sizes == [500]


@pytest.mark.parametrize("point", ["before_write", "mid_write", "after_fsync", "before_rename"])
def test_failure_leaves_target_and_no_temp(tmp_path: Path, point: str) -> None:
    target = tmp_path / "t"
    atomic_write(target, b"old")

    def hook(name: str) -> None:
        if name == point:
            raise OSError(28, "No space left on device")

    atomic.crash_hook = hook
    with pytest.raises(StoreError, match="No space left") as info:
        atomic_write(target, b"new", keep_previous=True)
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_cleanup_removes_only_temp_files(tmp_path: Path) -> None:
    (tmp_path / ".store.abc.vaultd-tmp").write_bytes(b"partial")
    (tmp_path / ".store.prev.def.vaultd-tmp").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dir.vaultd-tmp").mkdir()
    (tmp_path / ".state.json.123.vaultd-tmp").write_bytes(b"another file's write in flight")
    (tmp_path / "store").write_bytes(b"keep")
    removed = cleanup_temp_files(tmp_path / "store")
    assert sorted(removed) == [".store.abc.vaultd-tmp", ".store.prev.def.vaultd-tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".state.json.123.vaultd-tmp",
        "dir.vaultd-tmp",
        "store",
    ]
    assert cleanup_temp_files(tmp_path / "store") == []


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o606, 0o640, 0o604, 0o610])
def test_open_file_modes_refused_with_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "my store"
    path.write_bytes(b"")
    path.chmod(mode)
    with pytest.raises(UnsafePermissions) as info:
        check_private(path, is_dir=False)
    assert info.value.path == str(path)
    assert f"chmod 600 '{path}'" in str(info.value)


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o640, 0o770, 0o701])
def test_open_dir_modes_refused_with_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "d"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(UnsafePermissions) as info:
        check_private(path, is_dir=True)
    assert info.value.path == str(path)
    assert f"chmod 700 {path}" in str(info.value)


@pytest.mark.parametrize(("mode", "is_dir"), [(0o600, False), (0o400, False), (0o700, True)])
def test_private_paths_pass(tmp_path: Path, mode: int, is_dir: bool) -> None:
    path = tmp_path / "p"
    if is_dir:
        path.mkdir()
    else:
        path.write_bytes(b"")
    path.chmod(mode)
    check_private(path, is_dir=is_dir)


def test_symlink_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"")
    real.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafePermissions, match="symlink") as info:
        check_private(link, is_dir=False)
    assert info.value.path == str(link)


def test_wrong_type_and_missing(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "f").chmod(0o600)
    with pytest.raises(UnsafePermissions, match="not a regular directory"):
        check_private(tmp_path / "f", is_dir=True)
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(UnsafePermissions, match="not a regular file"):
        check_private(tmp_path / "fifo", is_dir=False)
    with pytest.raises(ConfigError, match="cannot inspect"):
        check_private(tmp_path / "missing", is_dir=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file a foreign owner")
def test_foreign_owner_refused_with_chown_fix(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    path.chmod(0o600)
    os.chown(path, 65534, -1)
    with pytest.raises(UnsafePermissions, match=f"chown {os.geteuid()} {path}"):
        check_private(path, is_dir=False)


def test_ensure_private_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "vault"
    old = os.umask(0o022)
    try:
        ensure_private_dir(target)
    finally:
        os.umask(old)
    assert _mode(target) == 0o700
    ensure_private_dir(target)  # idempotent
    target.chmod(0o755)
    with pytest.raises(UnsafePermissions):
        ensure_private_dir(target)
    assert _mode(target) == 0o755  # refused, never silently changed
