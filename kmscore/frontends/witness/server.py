"""The witness's socket server: one thread per connection, one request at a time.

The witness's logic (what it signs and refuses) is
:class:`kmscore.audit.witness.Witness`; this module only listens. The socket is
created 0600 (or 0660 for a group the daemon's uid is in) in a directory the
caller chose; with ``allow_uids`` a peer whose ``SO_PEERCRED`` uid is not
listed is refused before it is read.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from kmscore.audit.witness import Witness, WitnessError, read_frame, write_frame

__all__ = ["WitnessServer", "serve_witness"]

_IDLE_SECONDS = 60.0


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class _Handler(socketserver.BaseRequestHandler):
    server: WitnessServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(_IDLE_SECONDS)
        allowed = self.server.allow_uids
        if allowed and _peer_uid(sock) not in allowed:
            with contextlib.suppress(OSError):
                write_frame(sock, {"ok": False, "error": "this uid may not use the witness"})
            return
        while True:
            try:
                request = read_frame(sock)
            except WitnessError as exc:
                with contextlib.suppress(OSError):
                    write_frame(sock, {"ok": False, "error": str(exc)})
                return
            except OSError:
                return
            if request is None:
                return
            try:
                write_frame(sock, self.server.witness.handle(request))
            except OSError:
                return


class WitnessServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A :class:`Witness` answering on a Unix socket."""

    daemon_threads = True

    def __init__(
        self,
        witness: Witness,
        socket_path: str | os.PathLike[str],
        *,
        mode: int = 0o600,
        allow_uids: Collection[int] = (),
    ) -> None:
        """Listen on ``socket_path`` (a stale socket file there is replaced).

        Raises:
            OSError: The socket cannot be made.
        """
        self.witness = witness
        self.allow_uids = frozenset(allow_uids)
        path = Path(socket_path)
        with contextlib.suppress(FileNotFoundError):
            if path.is_socket():
                path.unlink()
        old = os.umask(0o177)
        try:
            super().__init__(os.fspath(path), _Handler)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self.path = path

    def server_close(self) -> None:
        """Stop listening and remove the socket file."""
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def serve_witness(
    directory: str | os.PathLike[str],
    socket_path: str | os.PathLike[str],
    *,
    mode: int = 0o600,
    allow_uids: Collection[int] = (),
    ready: Any = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve a witness directory until ``stop`` is set (or forever).

    Raises:
        OSError: The directory or the socket is unusable.
    """
    server = WitnessServer(Witness(directory), socket_path, mode=mode, allow_uids=allow_uids)
    try:
        if ready is not None:
            ready(server)
        if stop is None:
            server.serve_forever()
        else:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            stop.wait()
            server.shutdown()
    finally:
        server.server_close()
