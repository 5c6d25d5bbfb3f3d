"""The socket daemon's frames: msgpack-RPC over a Unix stream socket.

Request ``[0, msgid, method, params]``, response ``[1, msgid, error, result]``:
``method`` is the operation name, ``params`` the AWS request members (bytes as
msgpack bin), ``error`` ``{"Code", "Message"}`` or nil, timestamps the msgpack
Timestamp extension (see ``docs/daemon.md``). Both the daemon
(:mod:`kmscore.frontends.rpc`) and its client (:mod:`kmscore.client.remote`)
build and read frames here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from kmscore.errors import KMSError, KMSInternalException, ValidationException, from_code
from kmscore.fsutil import default_data_dir

__all__ = [
    "MAX_MSGID",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "REFUSAL_MSGID",
    "REQUEST",
    "RESPONSE",
    "SOCKET_FILE",
    "decode_response",
    "default_socket_path",
    "encode_request",
    "error_response",
    "msgid_of",
    "new_packer",
    "new_unpacker",
    "result_response",
]

#: The socket's name inside the data dir.
SOCKET_FILE: Final = "kms.sock"
#: The largest request frame the daemon reads (bigger ones close the connection).
MAX_REQUEST_BYTES: Final = 1 << 20
#: The largest response frame the client reads; a 10,000-key batch of
#: 1024-byte data keys is about 21 MB.
MAX_RESPONSE_BYTES: Final = 256 << 20

REQUEST: Final = 0
RESPONSE: Final = 1
#: The msgid of an error frame the daemon sends unasked before it closes a
#: connection it refuses (too many connections); requests never use it.
REFUSAL_MSGID: Final = 0
#: Msgids are unsigned 32-bit integers.
MAX_MSGID: Final = 0xFFFFFFFF


def default_socket_path(data_dir: Path | str | None = None) -> Path:
    """The daemon's default socket: ``<data-dir>/kms.sock``.

    Args:
        data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
    """
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base / SOCKET_FILE


def new_packer() -> Any:
    """A msgpack packer for frames: bytes as bin, datetimes as Timestamps."""
    return msgpack.Packer(use_bin_type=True, datetime=True)


def new_unpacker() -> Any:
    """A streaming msgpack unpacker for frames of up to :data:`MAX_RESPONSE_BYTES`."""
    # timestamp=3: Timestamp extensions become timezone-aware datetimes (UTC).
    return msgpack.Unpacker(
        raw=False,
        timestamp=3,
        max_buffer_size=MAX_RESPONSE_BYTES,
        read_size=64 * 1024,
    )


def encode_request(packer: Any, msgid: int, operation: str, request: Mapping[str, Any]) -> bytes:
    """One request frame: ``[0, msgid, operation, request]``.

    Raises:
        ValidationException: a member has a type msgpack cannot carry, or the
            request is larger than :data:`MAX_REQUEST_BYTES`.
    """
    try:
        data: bytes = packer.pack([REQUEST, msgid, operation, request])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationException(f"The {operation} request cannot be encoded: {exc}") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise ValidationException(
            f"The {operation} request is {len(data)} bytes; the daemon takes at most "
            f"{MAX_REQUEST_BYTES}."
        )
    return data


def decode_response(message: Any, operation: str) -> dict[str, Any]:
    """The result of a response, or its error raised.

    Raises:
        KMSError: the error the daemon answered with, rebuilt by code.
    """
    error, result = message[2], message[3]
    if error is not None:
        if isinstance(error, dict):
            code, text = error.get("Code"), error.get("Message")
            if isinstance(code, str):
                raise from_code(code, text if isinstance(text, str) else "")
        raise KMSInternalException(f"The daemon answered {operation} with a malformed error.")
    if not isinstance(result, dict):
        raise KMSInternalException(f"The daemon answered {operation} with a malformed result.")
    return result


def msgid_of(message: Any) -> int | None:
    """The msgid of a well-formed response, else None."""
    if type(message) is list and len(message) == 4 and message[0] == RESPONSE:
        msgid = message[1]
        if type(msgid) is int:
            return msgid
    return None


def result_response(msgid: int, result: dict[str, Any]) -> list[Any]:
    """The response carrying a result."""
    return [RESPONSE, msgid, None, result]


def error_response(msgid: int, error: KMSError) -> list[Any]:
    """The response carrying an error, as ``{"Code", "Message"}``."""
    return [RESPONSE, msgid, error.to_dict(), None]
