"""The one private-file rule: 0700 directories, 0600 files, no symlinks, no races."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmscore import fsutil


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """A umask that would leave group and other bits (and one that drops owner bits)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_missing_parents_are_made_private(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    fsutil.ensure_private_dir(target)
    for path in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert mode(path) == 0o700, path


def test_existing_open_dir_is_tightened(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    os.chmod(target, 0o755)
    fsutil.ensure_private_dir(target)
    assert mode(target) == 0o700


def test_symlinked_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    os.chmod(real, 0o755)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(fsutil.UnsafeFileError, match="symlink"):
        fsutil.ensure_private_dir(tmp_path / "link")
    assert mode(real) == 0o755  # the target was not touched


def test_file_in_place_of_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(fsutil.UnsafeFileError, match="not a directory"):
        fsutil.ensure_private_dir(tmp_path / "f")


def test_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    target = tmp_path / "d"
    target.mkdir(mode=0o700)
    os.chown(target, 65534, -1)
    with pytest.raises(fsutil.UnsafeFileError, match="uid 65534"):
        fsutil.ensure_private_dir(target)


def test_new_file_is_0600_even_when_the_umask_drops_owner_bits(tmp_path: Path) -> None:
    os.umask(0o277)
    fd = fsutil.create_private_file(tmp_path / "f")
    os.close(fd)
    assert mode(tmp_path / "f") == 0o600


def test_create_never_opens_an_existing_file_or_follows_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "there").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        fsutil.create_private_file(tmp_path / "there")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        fsutil.write_private_file(tmp_path / "link", b"secret")
    assert not (tmp_path / "nowhere").exists()
    assert (tmp_path / "there").read_bytes() == b"old"


def test_write_then_open(tmp_path: Path) -> None:
    fsutil.write_private_file(tmp_path / "f", b"data" * 10_000)
    fd = fsutil.open_private_file(tmp_path / "f")
    try:
        assert os.read(fd, 1 << 20) == b"data" * 10_000
    finally:
        os.close(fd)


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_open_file_open_to_others_is_refused_not_tightened(tmp_path: Path, file_mode: int) -> None:
    fsutil.write_private_file(tmp_path / "f", b"x")
    os.chmod(tmp_path / "f", file_mode)
    with pytest.raises(fsutil.UnsafeFileError, match=f"{file_mode:04o}"):
        fsutil.open_private_file(tmp_path / "f")
    assert mode(tmp_path / "f") == file_mode


def test_open_refuses_symlinks_and_non_files(tmp_path: Path) -> None:
    fsutil.write_private_file(tmp_path / "f", b"x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    with pytest.raises(fsutil.UnsafeFileError, match="symlink"):
        fsutil.open_private_file(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(fsutil.UnsafeFileError, match="not a regular file"):
        fsutil.open_private_file(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    with pytest.raises(FileNotFoundError):
        fsutil.open_private_file(tmp_path / "missing")


def test_replace_is_atomic_and_private(tmp_path: Path) -> None:
    target = tmp_path / "state"
    fsutil.write_private_file(target, b"one")
    os.chmod(target, 0o644)  # the replacement does not inherit the old mode
    fsutil.replace_private_file(target, b"two")
    assert target.read_bytes() == b"two"
    assert mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temporary left


def test_replace_removes_a_stale_temporary_from_a_crash(tmp_path: Path) -> None:
    target = tmp_path / "state"
    stale = tmp_path / f".state.{os.getpid()}.tmp"
    stale.write_bytes(b"half")
    fsutil.replace_private_file(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists()
