"""A checkpoint witness: signs only checkpoints that extend what it signed before.

The trail's own signing key sits in the data directory, so whoever runs as the
daemon's uid can rewrite the records, recompute every hash and re-sign every
checkpoint. A witness holds a key the daemon never sees, in a directory of its
own, and runs as its own process (under its own uid, on its own socket: see
``kms witness serve``). The daemon sends it each new checkpoint together with
the record lines the checkpoint seals; the witness

1. checks the lines itself: each line's ``seq`` and ``prevHash`` continue the
   chain from the last head it signed, the last line hashes to the new head,
   and the count is the lines' own (the time range it signs as given: the
   records, bound by the head, let any verifier check it);
2. checks that the checkpoint's ``prevSignature`` is the last signature it
   made (no fork, no replay, no lower sequence number);
3. persists the new head (fsync, atomic rename) and only then returns its
   signature.

So a rewritten past gets a refusal: its lines do not continue the head the
witness holds. An auditor who verifies with the witness's public key
(``kms audit verify --public-key``) rejects any checkpoint the witness did not
sign, which names the first forged one.

The first checkpoint a new witness sees is trusted for where it starts (its
first line's ``prevHash``), unless it starts at seq 0, where that must be the
genesis value. Start the witness with the trail to have all of it witnessed.

Wire format (both directions): a 4-byte big-endian length, then a msgpack map.
Requests: ``{"op": "public_key"}`` and ``{"op": "sign", "checkpoint": {...},
"lines": [bytes, ...]}``; answers ``{"ok": true, ...}`` or ``{"ok": false,
"error": "<why>"}``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import msgpack  # type: ignore[import-untyped]
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from kmscore import fsutil
from kmscore.audit import _format as fmt

__all__ = [
    "MAX_FRAME",
    "MAX_LINES",
    "CheckpointSigner",
    "LocalSigner",
    "Witness",
    "WitnessClient",
    "WitnessError",
    "WitnessRefused",
    "checkpoint_times",
    "read_frame",
    "write_frame",
]

#: The largest frame either side accepts (a checkpoint of MAX_LINES records).
MAX_FRAME: Final = 64 * 1024 * 1024
#: The most record lines one sign request may carry; the trail splits more.
MAX_LINES: Final = 10_000
WITNESS_KEY_FILE: Final = "witness.key"
WITNESS_PUB_FILE: Final = "witness.pub"
WITNESS_STATE_FILE: Final = "witness-state.json"
_LENGTH = struct.Struct(">I")
_RECORD_PREFIX = re.compile(rb'\{"seq":(\d+),"prevHash":"([0-9a-f]{64})"')
_UNSIGNED_FIELDS: Final = fmt.CHECKPOINT_FIELDS - {"signature"}
_TIMEOUT: Final = 10.0
_STATE_FIELDS: Final = frozenset({"seq", "head", "signature", "recent"})
#: Earlier signed heads a checkpoint may still build on: writers sealing in the
#: background can get signatures that are never written (another writer's
#: checkpoint was written first), and the next checkpoint builds on the one
#: that was. It must still pass through the newest head signed.
_RECENT: Final = 64


class WitnessError(OSError):
    """The witness could not be reached or answered nonsense (the trail retries)."""


class WitnessRefused(WitnessError):
    """The witness refused to sign; its reason is the message."""


class CheckpointSigner(Protocol):
    """What the trail needs from whoever signs its checkpoints."""

    def sign_checkpoint(self, checkpoint: dict[str, Any], lines: Sequence[bytes]) -> str:
        """The hex signature of ``checkpoint`` (without ``signature``).

        Raises:
            OSError: The signature could not be obtained.
        """
        ...

    def accepts(self, message: bytes, signature: bytes) -> bool:
        """Whether a checkpoint another writer wrote carries a signature of ours."""
        ...

    @property
    def needs_lines(self) -> bool:
        """Whether :meth:`sign_checkpoint` looks at the sealed lines."""
        ...


class LocalSigner:
    """Signs with the data directory's own key (no defence against the host)."""

    needs_lines = False

    def __init__(self, key: SigningKey) -> None:
        """Sign with ``key``."""
        self._key = key

    def sign_checkpoint(self, checkpoint: dict[str, Any], lines: Sequence[bytes]) -> str:
        """See :class:`CheckpointSigner`."""
        return self._key.sign(fmt.checkpoint_message(checkpoint)).signature.hex()

    def accepts(self, message: bytes, signature: bytes) -> bool:
        """See :class:`CheckpointSigner`."""
        return _verifies(self._key.verify_key, message, signature)


def _verifies(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


# --- framing ------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise WitnessError("the connection closed mid-frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> Any | None:
    """Read one frame; None at a clean end of stream.

    Raises:
        WitnessError: A frame over :data:`MAX_FRAME`, cut short, or not msgpack.
    """
    first = sock.recv(_LENGTH.size)
    if not first:
        return None
    header = first + (_recv_exact(sock, _LENGTH.size - len(first)) if len(first) < 4 else b"")
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise WitnessError(f"a frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    try:
        return msgpack.unpackb(_recv_exact(sock, length), raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WitnessError(f"not a msgpack frame: {exc}") from None


def write_frame(sock: socket.socket, message: Mapping[str, Any]) -> None:
    """Write one frame."""
    body = msgpack.packb(dict(message), use_bin_type=True)
    sock.sendall(_LENGTH.pack(len(body)) + body)


# --- the trail's side ------------------------------------------------------------


class WitnessClient:
    """Gets checkpoints signed by a witness on a Unix socket."""

    needs_lines = True

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        public_key: VerifyKey | None = None,
        also_accept: VerifyKey | None = None,
    ) -> None:
        """Use the witness at ``socket_path``.

        Args:
            socket_path: The witness's socket.
            public_key: The witness key the caller pinned; asked of the
                witness when None (so it must be up now).
            also_accept: A key whose checkpoints other writers may have
                written before the witness (the data dir's own key).

        Raises:
            WitnessError: The witness is unreachable (only when asked for its key),
                or its key is not the pinned one.
        """
        self._path = os.fspath(socket_path)
        self._lock = threading.Lock()
        asked = VerifyKey(bytes(self._call({"op": "public_key"})["public_key"]))
        if public_key is not None and asked.encode() != public_key.encode():
            raise WitnessError(f"the witness at {self._path} does not hold the pinned key")
        self.public_key = asked
        self._also = also_accept

    def _call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(_TIMEOUT)
                    sock.connect(self._path)
                    write_frame(sock, request)
                    answer = read_frame(sock)
            except WitnessError:
                raise
            except OSError as exc:
                raise WitnessError(f"audit witness at {self._path}: {exc}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise WitnessError(f"audit witness at {self._path} answered nonsense")
        if not answer["ok"]:
            raise WitnessRefused(f"audit witness refused: {answer.get('error')}")
        return answer

    def sign_checkpoint(self, checkpoint: dict[str, Any], lines: Sequence[bytes]) -> str:
        """See :class:`CheckpointSigner`.

        Raises:
            WitnessRefused: The witness refused (its reason is the message).
            WitnessError: The witness is unreachable or its signature is bad.
        """
        answer = self._call({"op": "sign", "checkpoint": checkpoint, "lines": list(lines)})
        signature = answer.get("signature")
        if not isinstance(signature, str) or not self.accepts(
            fmt.checkpoint_message(checkpoint), bytes.fromhex(signature)
        ):
            raise WitnessError("the witness's signature does not verify with its key")
        return signature

    def accepts(self, message: bytes, signature: bytes) -> bool:
        """See :class:`CheckpointSigner`."""
        if _verifies(self.public_key, message, signature):
            return True
        return self._also is not None and _verifies(self._also, message, signature)


# --- the witness's side ------------------------------------------------------------


def checkpoint_times(lines: Sequence[bytes]) -> tuple[str | None, str | None]:
    """The ``fromTime`` and ``toTime`` a checkpoint of these record lines carries."""
    low: str | None = None
    high: str | None = None
    for line in lines:
        try:
            when = json.loads(line).get("eventTime")
        except (ValueError, AttributeError):
            when = None
        if isinstance(when, str):
            low = when if low is None else min(low, when)
            high = when if high is None else max(high, when)
    return low, high


def _refuse(reason: str) -> dict[str, Any]:
    return {"ok": False, "error": reason}


class Witness:
    """The witness's key and the last head it signed, in a directory of its own."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Open a witness directory made by :meth:`init`.

        Raises:
            OSError: It is missing, not ours, its files are open to others
                (see :mod:`kmscore.fsutil`) or damaged.
        """
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no witness directory", str(self.dir))
        fsutil.ensure_private_dir(self.dir)
        fd = fsutil.open_private_file(self.dir / WITNESS_KEY_FILE, os.O_RDONLY)
        try:
            seed = bytes.fromhex(os.read(fd, 256).decode("ascii").strip())
        finally:
            os.close(fd)
        self._key = SigningKey(seed)
        self._lock = threading.Lock()
        self.state: dict[str, Any] | None = None
        try:
            fd = fsutil.open_private_file(self.dir / WITNESS_STATE_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            text = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        state = json.loads(text)
        if not isinstance(state, dict) or set(state) != _STATE_FIELDS:
            raise OSError(f"{self.dir / WITNESS_STATE_FILE} is damaged")
        self.state = state

    @classmethod
    def init(cls, directory: str | os.PathLike[str]) -> Witness:
        """Make a new witness directory (0700) with a fresh key (0600).

        Raises:
            FileExistsError: The directory already holds a witness key.
            OSError: The directory cannot be made safely.
        """
        path = Path(directory)
        fsutil.ensure_private_dir(path)
        key = SigningKey.generate()
        fsutil.write_private_file(path / WITNESS_KEY_FILE, key.encode().hex().encode() + b"\n")
        public = key.verify_key.encode().hex().encode() + b"\n"
        fsutil.write_private_file(path / WITNESS_PUB_FILE, public)
        return cls(path)

    @property
    def public_key(self) -> VerifyKey:
        """The key auditors verify checkpoints with."""
        return self._key.verify_key

    def handle(self, request: object) -> dict[str, Any]:
        """Answer one request (see the module docstring); never raises on bad input."""
        if not isinstance(request, dict):
            return _refuse("a request is a map")
        op = request.get("op")
        if op == "public_key":
            return {"ok": True, "public_key": self.public_key.encode()}
        if op != "sign":
            return _refuse(f"unknown op {op!r}")
        with self._lock:
            return self._sign(request.get("checkpoint"), request.get("lines"))

    def _sign(self, checkpoint: object, lines: object) -> dict[str, Any]:
        if not isinstance(checkpoint, dict) or set(checkpoint) != _UNSIGNED_FIELDS:
            return _refuse("the checkpoint does not have a checkpoint's members")
        seq, count = checkpoint["seq"], checkpoint["count"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, count)):
            return _refuse("seq and count must be integers")
        if checkpoint["v"] != fmt.CHECKPOINT_VERSION:
            return _refuse(f"unknown checkpoint version {checkpoint['v']!r}")
        if not isinstance(lines, list) or not all(isinstance(x, bytes) for x in lines):
            return _refuse("lines must be a list of byte strings")
        if not 0 < count == len(lines) <= MAX_LINES:
            return _refuse(f"count {count} does not match the {len(lines)} lines sent")
        first = seq - count + 1
        base = self._base_for(checkpoint["prevSignature"], first, lines)
        if isinstance(base, str):
            return _refuse(base)
        head, must_pass = base
        if head is None:  # first contact: trust where the first line starts
            match = _RECORD_PREFIX.match(lines[0])
            if match is None:
                return _refuse(f"line 0 is not record seq {first}")
            head = match[2].decode("ascii")
        sha256 = hashlib.sha256
        pass_seq = must_pass[0] if must_pass is not None else -1
        for offset, line in enumerate(lines):
            seq = first + offset
            # The exact prefix a record of this seq continuing ``head`` has.
            if not line.startswith(b'{"seq":%d,"prevHash":"%s"' % (seq, head.encode("ascii"))):
                if _RECORD_PREFIX.match(line) is None or not line.startswith(b'{"seq":%d,' % seq):
                    return _refuse(f"line {offset} is not record seq {seq}")
                return _refuse(
                    f"record seq {seq} does not continue the chain this witness "
                    "holds (a rewritten record?)"
                )
            head = sha256(line).hexdigest()
            if seq == pass_seq and must_pass is not None and head != must_pass[1]:
                return _refuse(
                    f"record seq {seq} is not the one this witness signed (a rewritten past?)"
                )
        if checkpoint["head"] != head:
            return _refuse("the checkpoint's head is not the hash of its last line")
        signature = self._key.sign(fmt.checkpoint_message(checkpoint)).signature.hex()
        recent = list(self.state["recent"]) if self.state is not None else []
        if self.state is not None:
            recent.append([self.state["seq"], self.state["head"], self.state["signature"]])
        else:
            # First contact: where the lines start is the first base.
            first_prev = lines[0][len(b'{"seq":%d,"prevHash":"' % first) :][:64].decode("ascii")
            recent.append([first - 1, first_prev, checkpoint["prevSignature"]])
        self._persist(
            {"seq": seq, "head": head, "signature": signature, "recent": recent[-_RECENT:]}
        )
        return {"ok": True, "signature": signature}

    def _base_for(
        self, prev_signature: object, first: int, lines: Sequence[bytes]
    ) -> str | tuple[str | None, tuple[int, str] | None]:
        """Where a checkpoint's lines must start: (head to continue, head to pass).

        Normally the lines continue the last head signed. A checkpoint may also
        build on one of the last heads signed before it (a retry after a lost
        answer, or a writer whose background signature lost the race to another
        writer's), and must then pass through the newest head. Anything else
        is a refusal (returned as its reason).
        """
        state = self.state
        if state is None:
            if first < 0:
                return "the lines start before seq 0"
            # First contact: trust where the lines start, but seq 0 starts at genesis.
            return (fmt.GENESIS_HASH if first == 0 else None), None
        if prev_signature == state["signature"]:
            if first != state["seq"] + 1:
                return (
                    f"the checkpoint seals records from seq {first}, but the last one this "
                    f"witness signed ends at seq {state['seq']} (a rewritten or replayed past?)"
                )
            return state["head"], None
        for seq, head, signature in state["recent"]:
            if signature != prev_signature or first != seq + 1:
                continue
            # Builds on an earlier signed head (a retry, or a background
            # signature that was never written): it must pass through the
            # newest head, so the history signed stays one chain.
            if first + len(lines) - 1 < state["seq"]:
                return (
                    f"the checkpoint ends before seq {state['seq']}, which this witness "
                    "already signed (a rewritten past?)"
                )
            return (head if seq >= 0 else fmt.GENESIS_HASH), (state["seq"], state["head"])
        return "prevSignature is not the last signature this witness made (a fork or a replay)"

    def _persist(self, state: dict[str, Any]) -> None:
        """Make the new head durable before its signature leaves (tmp, fsync, rename)."""
        fsutil.replace_private_file(self.dir / WITNESS_STATE_FILE, fmt.canonical(state) + b"\n")
        self.state = state
