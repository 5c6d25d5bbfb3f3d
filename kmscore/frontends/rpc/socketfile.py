"""The daemon's socket file: one daemon per path, no window with wrong permissions.

Taking a socket path:

1. An exclusive, non-blocking ``flock`` on ``<socket>.lock`` (0600, never
   deleted, so every daemon locks the same inode). A second daemon finds it
   held and refuses, naming the pid written in it.
2. Whatever is at the path is looked at: nothing is fine; a socket that
   accepts a connection belongs to a live daemon (one that did not take the
   lock, say an older build) and is refused; a socket nobody listens on is
   left by a killed daemon and is removed; anything else is refused, never
   deleted.
3. The socket is bound with the umask set so that it is born with the
   requested mode (``0777 & ~umask``): no chmod afterwards, so no window with
   another mode and no chmod that a symlink swapped in could redirect. This
   runs before the key service opens and starts its threads, so the
   process-wide umask change races with nothing of ours.

At shutdown the socket is removed only if the path still holds the inode this
daemon bound.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Final

__all__ = ["SOCKET_MODES", "DaemonError", "SocketFile"]

log = logging.getLogger("kmscore.rpc")

#: Owner only (the default), owner and group, everyone. Identity comes from
#: SO_PEERCRED either way, and an unmapped uid may only call GenerateRandom.
SOCKET_MODES: Final = frozenset({0o600, 0o660, 0o666})
# sun_path is 108 bytes on Linux, with the terminating NUL.
_MAX_PATH_BYTES: Final = 107


class DaemonError(Exception):
    """The daemon cannot start; the message says why, for people."""


class SocketFile:
    """The listening socket at one path, held by this daemon."""

    def __init__(self, path: Path, mode: int) -> None:
        """Describe the socket to take; :meth:`acquire` takes it.

        Raises:
            DaemonError: a mode that is not 0600, 0660 or 0666, or a path
                longer than a Unix socket address can hold.
        """
        if mode not in SOCKET_MODES:
            raise DaemonError(f"socket mode {mode:#o} is not one of 0600, 0660, 0666")
        if len(os.fsencode(path)) > _MAX_PATH_BYTES:
            raise DaemonError(f"socket path {path} is longer than {_MAX_PATH_BYTES} bytes")
        self.path = path
        self.mode = mode
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def acquire(self) -> socket.socket:
        """Lock the path, clear a stale socket, bind a new one (not yet listening).

        Returns:
            The bound socket.

        Raises:
            DaemonError: another daemon serves the path, or the path cannot be used.
        """
        if not self.path.parent.is_dir():
            raise DaemonError(f"the socket's directory {self.path.parent} does not exist")
        self._lock()
        try:
            self._clear_stale()
            return self._bind()
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError as exc:
            raise DaemonError(
                f"cannot open the lock file {self.lock_path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DaemonError(
                f"another kmscore daemon{who} is serving {self.path}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise DaemonError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(self.path))
        except ConnectionRefusedError:
            pass  # nobody listens: left by a daemon that was killed
        except TimeoutError:
            raise DaemonError(
                f"a daemon that does not answer holds {self.path}; stop it first"
            ) from None
        except OSError as exc:
            raise DaemonError(f"cannot check the socket {self.path}: {exc.strerror}") from None
        else:
            raise DaemonError(f"another kmscore daemon is serving {self.path}; stop it first")
        finally:
            probe.close()
        log.info("replacing the stale socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # bind() creates the node with 0777 & ~umask: born with its final
            # mode, with no chmod after (which would follow a symlink swapped
            # in meanwhile).
            previous = os.umask(0o777 & ~self.mode)
            try:
                sock.bind(os.fspath(self.path))
            finally:
                os.umask(previous)
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode) or stat.S_IMODE(st.st_mode) != self.mode:
                raise DaemonError(f"{self.path} changed while starting")
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise DaemonError(f"{self.path} was taken while starting") from None
            raise DaemonError(f"cannot create the socket {self.path}: {exc.strerror}") from None
        self._identity = (st.st_dev, st.st_ino)
        return sock

    def release(self) -> None:
        """Remove the socket if it is still ours, and drop the lock."""
        if self._identity is not None:
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                pass
            else:
                if (st.st_dev, st.st_ino) == self._identity:
                    os.unlink(self.path)
            self._identity = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
