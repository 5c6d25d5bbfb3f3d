"""Limits shared by the frontends: concurrent connections, idle time, descriptors.

Each listener (the Unix socket, the HTTP endpoint) takes at most
``max_connections`` clients at once; one more is refused clearly (an error
frame, or HTTP 503) and closed, and the clients already connected keep being
served. A connection with no request in flight and nothing read for
``idle_timeout`` seconds is closed. See docs/daemon.md and docs/http.md.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import Final

from kmscore.errors import LimitExceededException

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "REFUSAL_LINGER_SECONDS",
    "ConnectionLimits",
    "ensure_fd_limit",
    "over_limit_error",
]

log = logging.getLogger("kmscore.limits")

#: Clients per listener at once.
DEFAULT_MAX_CONNECTIONS: Final = 4096
#: Seconds a connection may sit with nothing in flight and nothing sent.
DEFAULT_IDLE_TIMEOUT: Final = 300.0
#: A refused connection is closed once the client sent something (its request
#: was read, so closing does not reset the answer away) or after this long.
REFUSAL_LINGER_SECONDS: Final = 2.0
# Descriptors besides the connections: the store, the audit trail, the
# listening sockets, the worker threads' files.
_FD_RESERVE: Final = 256


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """One listener's limits.

    Attributes:
        max_connections: Clients served at once (at least 1).
        idle_timeout: Seconds before an idle connection is closed; 0 never.
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        """Raises: ValueError: a limit out of range."""
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must not be negative")


def over_limit_error(limits: ConnectionLimits) -> LimitExceededException:
    """The error a client past the connection limit is refused with."""
    return LimitExceededException(
        f"Too many connections: this endpoint serves at most {limits.max_connections} "
        "clients at once. Retry later."
    )


def ensure_fd_limit(connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE so ``connections`` sockets fit, if needed.

    The soft limit moves toward the hard one only as far as needed; when even
    the hard limit is too low, a warning says so and the daemon runs anyway
    (clients past the descriptors get refused by the kernel's accept errors).

    Args:
        connections: The sum of every listener's ``max_connections``.

    Returns:
        The soft limit in force afterwards.
    """
    needed = connections + _FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit to %d: %s", target, exc)
    if soft < needed:
        log.warning(
            "the descriptor limit (%d) is below the %d that %d connections need; "
            "raise it (ulimit -n) or lower --max-connections",
            soft,
            needed,
            connections,
        )
    return soft
