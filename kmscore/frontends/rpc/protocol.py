"""The daemon's wire protocol: msgpack-RPC requests, the peer's identity, limits.

A request is ``[0, msgid, method, params]`` and its response ``[1, msgid,
error, result]`` (the msgpack-RPC specification). ``method`` is an AWS KMS
operation name or a batch extension; ``params`` the AWS request members;
``error`` ``{"Code", "Message"}`` or nil. Timestamps travel as the msgpack
Timestamp extension (type -1), so the client gets timezone-aware datetimes back.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final

from kmscore.errors import (
    KMSError,
    SerializationException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.wire.operations import AWS_OPERATIONS, OPERATION_FACTS
from kmscore.wire.rpc import MAX_REQUEST_BYTES, REQUEST

__all__ = [
    "INLINE_BATCH_MAX",
    "MAX_IN_FLIGHT",
    "MAX_REQUEST_BYTES",
    "PeerCredentials",
    "ProtocolViolation",
    "Request",
    "parse_request",
    "peer_credentials",
]

#: Requests of one connection decoded but not yet answered; at this many the
#: daemon stops reading from that connection until answers drain.
MAX_IN_FLIGHT: Final = 256

#: Batches of at most this many items run inline. Larger ones run in a worker
#: thread (the engine releases the GIL, so the loop keeps serving other
#: clients), one at a time per connection: its answer can be tens of MB.
INLINE_BATCH_MAX: Final = 1000
# RSA Encrypt, Decrypt and ReEncrypt (AWS requires a non-symmetric algorithm
# named in EncryptionAlgorithm, SourceEncryptionAlgorithm or
# DestinationEncryptionAlgorithm for them) take milliseconds of private-key
# work, so they go to a worker thread instead of holding up the loop.

# What may reach the dispatcher (and so the audit trail) as an operation name.
_OPERATION_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")
_UCRED: Final = struct.Struct("=iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid


class ProtocolViolation(Exception):
    """A message that cannot be answered (no usable msgid): close the connection."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The connecting process, as the kernel reports it (``struct ucred``).

    Attributes:
        pid: The peer's process id when it connected.
        uid: Its effective user id.
        gid: Its effective group id.
    """

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials:
    """The peer of a connected Unix socket, from ``SO_PEERCRED``.

    Args:
        sock: The connection's socket (a transport's ``"socket"`` extra info).

    Raises:
        OSError: the socket has no peer credentials.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


@dataclass(slots=True)
class Request:
    """One decoded request.

    Attributes:
        msgid: The id its answer carries.
        method: The operation name.
        params: The request members.
        error: The error to answer instead of running anything, if any.
        weight: 0 to run on the event loop; else it runs in a worker thread
            and counts this much against the connection's in-flight limit.
    """

    msgid: int
    method: str
    params: dict[str, Any]
    error: KMSError | None = None
    weight: int = 0


# Operation name -> weight (0: inline on the loop, 1: a worker thread) for
# every served operation; other names are answered without running.
_WEIGHT: Final = {
    name: 0 if facts.inline and facts.read_only else 1
    for name, facts in OPERATION_FACTS.items()
    if facts.served
}
# Batch operation -> the member counting its items.
_BATCH_MEMBER: Final = {
    name: facts.batch_member
    for name, facts in OPERATION_FACTS.items()
    if facts.batch_member is not None
}
_SYMMETRIC: Final = "SYMMETRIC_DEFAULT"


def parse_request(message: Any, size: int) -> Request:
    """Check a decoded message's shape and decide where it runs.

    Inline: the data-plane operations the table of :mod:`kmscore.wire.operations`
    marks inline (batches up
    to :data:`INLINE_BATCH_MAX` items; RSA encryption, named by a non-symmetric
    encryption algorithm, excepted) and requests answered with an error
    without running (unknown names among them). Everything else, every
    operation that changes the store in particular, goes to the worker threads.

    Args:
        message: What msgpack decoded.
        size: Its size on the wire, in bytes.

    Returns:
        The request; its ``error`` is set when it must be answered with an
        error without running (too large, no operation by that name, params
        not a map).

    Raises:
        ProtocolViolation: not a request with a usable msgid.
    """
    if type(message) is not list or len(message) != 4 or message[0] != REQUEST:
        raise ProtocolViolation("expected a request [0, msgid, method, params]")
    msgid, method, params = message[1], message[2], message[3]
    if type(msgid) is not int or not 0 <= msgid <= 0xFFFFFFFF:
        raise ProtocolViolation("the msgid must be an unsigned 32-bit integer")
    # A registered name needs no pattern check; hashing a non-string is fine.
    weight = _WEIGHT.get(method) if type(method) is str else None
    if weight is not None and type(params) is dict and size <= MAX_REQUEST_BYTES:
        # The common case, decided in as few steps as possible: this runs for
        # every request on the daemon's loop.
        if (
            weight == 0
            and params
            and (
                params.get("EncryptionAlgorithm", _SYMMETRIC) != _SYMMETRIC
                or params.get("SourceEncryptionAlgorithm", _SYMMETRIC) != _SYMMETRIC
                or params.get("DestinationEncryptionAlgorithm", _SYMMETRIC) != _SYMMETRIC
            )
        ):
            weight = 1
        member = _BATCH_MEMBER.get(method)
        if member is not None:
            items = params.get(member)
            n = items if type(items) is int else len(items) if type(items) is list else 0
            if n > INLINE_BATCH_MAX:
                weight = MAX_IN_FLIGHT
        return Request(msgid, method, params, None, weight)
    if size > MAX_REQUEST_BYTES:
        error: KMSError = ValidationException(
            f"The request is {size} bytes; the limit is {MAX_REQUEST_BYTES}."
        )
    elif weight is None and (type(method) is not str or not _OPERATION_NAME.fullmatch(method)):
        error = UnknownOperationException("The method is not an operation name.")
    elif type(params) is not dict:
        error = SerializationException("The params of a request must be a map.")
    elif method in AWS_OPERATIONS:
        error = UnsupportedOperationException(
            f"{method} is an AWS KMS operation that kmscore does not serve."
        )
    else:
        # Answered here, not by the dispatcher, so a flood of them is
        # recorded at the refusal recorder's bounded rate.
        error = UnknownOperationException(f"Unknown operation {method!r}.")
    # The name asked for goes into the refusal's record when it is one.
    name = (
        method
        if weight is not None or (type(method) is str and _OPERATION_NAME.fullmatch(method))
        else ""
    )
    return Request(msgid, name, {}, error)
