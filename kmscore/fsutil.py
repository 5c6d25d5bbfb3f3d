"""Where kmscore keeps its files, and creating them private without races.

Directories are made 0700 and files 0600 with ``O_CREAT | O_EXCL |
O_NOFOLLOW``, so no other user can read them in the window between creation
and a later chmod, and a planted symlink is never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "create_private_file",
    "default_data_dir",
    "ensure_private_dir",
    "fsync_dir",
    "write_private_file",
]


def default_data_dir() -> Path:
    """``$KMS_DATA_DIR``, else ``~/.local/share/kmscore``."""
    env = os.environ.get("KMS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "kmscore"


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) a directory only its owner can enter.

    An existing directory owned by this user is tightened to 0700.

    Raises:
        PermissionError: it exists and belongs to another user, or is not a
            directory.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)


def create_private_file(path: Path) -> int:
    """Create a new 0600 file and return its descriptor, opened for writing.

    Raises:
        FileExistsError: the file (or a symlink at that path) already exists.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new or renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Create a new 0600 file holding ``data``, durably.

    Raises:
        FileExistsError: the file already exists.
    """
    fd = create_private_file(path)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
