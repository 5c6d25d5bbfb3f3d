"""The trail's on-disk format, shared by the writer, the verifier and queries.

Layout of a data directory::

    <data_dir>/audit-signing.key     Ed25519 seed, hex (0600); outside audit/
    <data_dir>/audit-signing.pub     Ed25519 public key, hex (0600)
    <data_dir>/audit/                (0700)
        LOCK                         flock'ed by a writer per change; names the last one
        checkpoints.jsonl            signed checkpoints, one per line
        segment-<first seq:020>.jsonl   records, one per line

A record line is the event's JSON object with two members spliced in front:
``{"seq":<n>,"prevHash":"<hex>",<event members>}``. ``prevHash`` is the SHA-256
of the previous record's line as stored, without its terminating newline; the
record with seq 0 has :data:`GENESIS_HASH`. Records are never re-serialized to
be hashed: the bytes on disk are the bytes hashed.

A checkpoint line is the canonical JSON (sorted keys, no spaces, ASCII) of::

    {"v": 1, "seq": <last sealed seq>, "count": <records sealed by it>,
     "fromTime": <min eventTime of them>, "toTime": <max eventTime>,
     "head": <hash of record seq>, "segment": <its file>, "offset": <end of its line>,
     "prevSignature": <previous checkpoint's signature or null>,
     "createdAt": <UTC time>, "signature": <Ed25519, hex>}

signed over :data:`CHECKPOINT_DOMAIN` followed by the canonical JSON of every
member except ``signature``.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

AUDIT_DIR: Final = "audit"
SIGNING_KEY_FILE: Final = "audit-signing.key"
PUBLIC_KEY_FILE: Final = "audit-signing.pub"
LOCK_FILE: Final = "LOCK"
CHECKPOINTS_FILE: Final = "checkpoints.jsonl"
SEGMENT_RE: Final = re.compile(r"^segment-(\d{20})\.jsonl$")

GENESIS_HASH: Final = "0" * 64
CHECKPOINT_VERSION: Final = 1
CHECKPOINT_DOMAIN: Final = b"kmscore audit checkpoint v1\n"
CHECKPOINT_FIELDS: Final = frozenset(
    {
        "v",
        "seq",
        "count",
        "fromTime",
        "toTime",
        "head",
        "segment",
        "offset",
        "prevSignature",
        "createdAt",
        "signature",
    }
)

_READ_CHUNK: Final = 1 << 20
_FIRST_READ: Final = 4096


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record has ``first_seq``."""
    return f"segment-{first_seq:020d}.jsonl"


def list_segments(audit_dir: Path) -> list[tuple[int, str]]:
    """The segment files of a trail as (first seq, name), in order."""
    found = []
    for name in os.listdir(audit_dir):
        match = SEGMENT_RE.match(name)
        if match:
            found.append((int(match.group(1)), name))
    found.sort()
    return found


def line_hash(line: bytes) -> str:
    """The chain hash of a stored line (given without its newline)."""
    return hashlib.sha256(line).hexdigest()


def record_line(seq: int, prev_hash: str, body: bytes) -> bytes:
    """Splice the chain members in front of an event's compact JSON object."""
    head = b'{"seq":%d,"prevHash":"%s"' % (seq, prev_hash.encode("ascii"))
    if body == b"{}":
        return head + b"}"
    return head + b"," + body[1:]


def _not_json(value: object) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_encoder() -> Callable[[object], str]:
    """``json.dumps`` with the stored settings, minus its per-call set-up.

    The C encoder json.dumps itself uses for ``separators=(",", ":")``,
    ``ensure_ascii=True``, ``allow_nan=False``, built once. No cycle check:
    it only ever sees scrubbed values, which the scrubber keeps acyclic.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the _json accelerator
        return json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
        ).encode
    encoder = make(
        None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def encode(value: object) -> str:
        return "".join(encoder(value, 0))

    return encode


compact_json: Final = _compact_encoder()
"""The stored JSON text of a scrubbed value: compact, ASCII only, no NaN."""


def encode_event(event: dict[str, Any]) -> bytes:
    """The compact JSON of a scrubbed event, as stored."""
    return compact_json(event).encode("ascii")


def record_rest(body: bytes) -> bytes:
    """What follows the chain members in a record line, for an event's JSON object."""
    return b"}" if body == b"{}" else b"," + body[1:]


def canonical(obj: dict[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers."""
    unsigned = {k: v for k, v in checkpoint.items() if k != "signature"}
    return CHECKPOINT_DOMAIN + canonical(unsigned)


def utc_now() -> str:
    """The current UTC time as CloudTrail writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iter_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes, bool]]:
    """Stream a file's lines from byte ``start``.

    Yields:
        (offset of the line's first byte, the line without its newline,
        whether the newline was there). Only the last line can lack it.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        offset = start
        for raw in handle:
            complete = raw.endswith(b"\n")
            line = raw[:-1] if complete else raw
            yield offset, line, complete
            offset += len(raw)


def read_line_ending_at(fd: int, end: int) -> bytes:
    """The line whose newline is the byte before ``end`` (without the newline).

    Raises:
        ValueError: If the byte before ``end`` is not a newline.
    """
    if end <= 0 or os.pread(fd, 1, end - 1) != b"\n":
        raise ValueError(f"no line ends at offset {end}")
    stop = end - 1
    pos = stop
    chunks: list[bytes] = []
    step = _FIRST_READ  # records are about a kilobyte: most lines take one small read
    while pos > 0:
        size = min(step, pos)
        chunk = os.pread(fd, size, pos - size)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            chunks.append(chunk[cut + 1 :])
            break
        chunks.append(chunk)
        pos -= size
        step = min(step * 4, _READ_CHUNK)
    return b"".join(reversed(chunks))
