"""``sd_notify``: tell systemd a ``Type=notify`` service is ready, or stopping.

The protocol is one datagram to the Unix socket named by ``$NOTIFY_SOCKET``
(an abstract one when it starts with ``@``); without the variable (not run
by systemd) it does nothing.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to systemd.

    Returns:
        Whether a message was sent (False when not run under systemd, or
        when the socket cannot be reached; a service never fails for it).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
