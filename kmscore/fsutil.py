"""Where kmscore keeps its files, and the one rule for keeping them private.

Every file and directory kmscore writes goes through this module, so the rule
is written once:

* **Directories** are made 0700 (missing parents too) and their parent is
  fsynced, so the new entry survives a crash. An existing directory must be a
  real directory (not a symlink) owned by this user; if its mode lets group or
  others in, it is *tightened* to 0700. A directory's mode guards names, not
  contents, so tightening loses nothing, and it lets a user point kmscore at
  a directory made with ``mkdir``.
* **New files** are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode
  0600, then ``fchmod``-ed to 0600 (the umask may have dropped owner bits):
  no window in which another user can open them, and a planted symlink is
  never followed.
* **Existing files** kmscore reads secrets or state from must be regular
  files of this user with no group or other bits. They are *refused*, never
  tightened: a file open to others may already have been read, and an
  operator must see that.

Other shapes of file stay where they live, because they are not this kind of
file: the audit export sink appends to a path the operator chose
(:mod:`kmscore.audit.export`), and a daemon's socket is born with the mode its
operator asked for (:mod:`kmscore.frontends.rpc.socketfile`).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "UnsafeFileError",
    "create_private_file",
    "default_data_dir",
    "ensure_private_dir",
    "fsync_dir",
    "open_private_file",
    "replace_private_file",
    "write_all",
    "write_private_file",
]

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


class UnsafeFileError(PermissionError):
    """A path exists but is not a private file or directory of this user.

    Attributes:
        reason: What is wrong, as a phrase that follows the path ("belongs to
            another user", ...).
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(errno.EPERM, reason, str(path))
        self.reason = reason


def default_data_dir() -> Path:
    """``$KMS_DATA_DIR``, else ``~/.local/share/kmscore``."""
    env = os.environ.get("KMS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "kmscore"


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) a directory only its owner can enter.

    Raises:
        UnsafeFileError: It exists but is a symlink, not a directory, or
            belongs to another user.
        OSError: It cannot be created, opened or synced.
    """
    path = Path(path)
    if not path.parent.exists() and path.parent != path:
        ensure_private_dir(path.parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        created = False
    else:
        created = True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(path, "is not a directory (or is a symlink)") from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise UnsafeFileError(path, f"belongs to uid {info.st_uid}, not to this user")
        if stat.S_IMODE(info.st_mode) != DIR_MODE:
            os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def create_private_file(path: Path, flags: int = os.O_WRONLY) -> int:
    """Create a new 0600 file and return its descriptor.

    Args:
        path: Where; the file must not exist.
        flags: How to open it (``O_WRONLY``, ``O_WRONLY | O_APPEND``,
            ``O_RDWR``); the creation flags are added.

    Raises:
        FileExistsError: The path (or a symlink at it) already exists.
        OSError: It cannot be created.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_file(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open an existing regular file of this user with no group or other bits.

    Raises:
        FileNotFoundError: It does not exist.
        UnsafeFileError: It is a symlink, not a regular file, belongs to
            another user, or is open to group or others.
        OSError: It cannot be opened.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(path, "is a symlink") from None
        raise
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(path, "is not a regular file")
        if info.st_uid != os.geteuid():
            raise UnsafeFileError(path, "belongs to another user")
        if mode & 0o077:
            raise UnsafeFileError(
                path, f"is open to others (mode {mode:04o}); it must be {FILE_MODE:04o}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new or renamed files) durable.

    Raises:
        OSError: It cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (one ``write`` in the common case).

    Raises:
        OSError: A write failed; part of ``data`` may be written.
    """
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 holding ``data``, the file fsynced (not its entry)."""
    fd = create_private_file(path)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Create a new 0600 file holding ``data``, durably (file and entry fsynced).

    Raises:
        FileExistsError: The file already exists (it is left as it was).
        OSError: It cannot be created or written whole.
    """
    _write_new(path, data)
    fsync_dir(path.parent)


def replace_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by a 0600 file holding ``data``, atomically and durably.

    Written to a temporary file beside it, fsynced, renamed over it, and the
    directory fsynced: a crash leaves the old file or the new one, whole.

    Raises:
        OSError: It cannot be written or renamed.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    _write_new(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)
