"""The audit journal's format: files, header, entries, digests, event ids.

The writer (:mod:`kmscore.audit.journal` and the native :mod:`kmscore.engine.journal`)
and the drainer (:mod:`kmscore.audit.journal_reader`, :mod:`kmscore.audit.chainer`)
both hold to what this module defines; neither defines a byte of it.

Files
-----
``<data_dir>/audit/journal/<id>.journal``, 0600, one per writing process at a
time, preallocated (``posix_fallocate``) and mapped whole: a full disk is an
error when the file is made, never a ``SIGBUS`` on a later page. The id is 60
random bits in hex. The writer holds an exclusive ``flock`` on the file while
it lives; a drainer that can take that lock knows the writer is gone.

Header (the first 4096 bytes, little-endian):

=======  =====  ==========================================================
offset   size   field
=======  =====  ==========================================================
0        8      magic ``KMSJRNL1``
8        8      journal id
16       8      creation time, ns since the epoch
24       4      writer's pid
28       4      flags: 1 = the writer appends no more (closed or full)
32       8      capacity (the file's size)
48       8      entries committed (written by the writer after each entry)
64       8      chained offset: where the first entry not yet in the trail is
72       8      chained seq: that entry's seq
80       16     chained digest: the digest of the entry before it
=======  =====  ==========================================================

Entries follow from offset 4096, each 8-aligned: u32 body length (the commit
word, stored last; 0 marks the end), u32 low half of the seq, a 16-byte digest,
the body, zero padding. The digest of entry ``n`` is the first 16 bytes of
``SHA-256(digest of entry n-1 || seq n as u64 || body)``; entry 0 chains from
``SHA-256(b"kmscore journal" || id)``. A changed, removed or reordered entry
breaks the chain, and the drainer refuses the journal from there on (see
:class:`JournalDamaged`).

Bodies are MessagePack arrays whose first element is the kind:

* ``[0, value]`` defines the next reference number (0, 1, ...) of this file:
  an operation name, region, account, key ARN, or a caller as
  ``[type, principalId, arn, accountId, accessKeyId, userName, sourceIP,
  userAgent]``;
* ``[1, time_ns, operation, requestID, caller, region, account, [resources],
  readOnly, errorCode, errorMessage, request, response, additionalEventData]``
  records a call, naming defined values by their number; the three sections are
  scrubbed by :func:`kmscore.audit.scrub` rules before they reach the file. A
  request id of 36 ASCII characters (kmscore's UUID-shaped ids) is
  ``[prefix, rest]``: its first 24 characters defined, then the last 12, so
  that the per-process prefix is not in every entry;
* ``[2, event]`` records a whole event, already scrubbed.

The file is on disk, so nothing secret may reach it: the writer drops secret
member names and hands anything it does not know to the scrubber.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from kmscore.audit.identity import Identity
from kmscore.errors import KMSInternalException
from kmscore.model.caller import Caller

__all__ = [
    "DEFAULT_JOURNAL_BYTES",
    "HEADER_BYTES",
    "JournalDamaged",
    "JournalHeader",
    "caller_identity",
    "decode",
    "describe_caller",
    "entry_digest",
    "event_id",
    "genesis",
    "journal_dir",
    "parse_event_id",
    "read_header",
]

MAGIC: Final = b"KMSJRNL1"
HEADER_BYTES: Final = 4096
DEFAULT_JOURNAL_BYTES: Final = 8 * 1024 * 1024
SUFFIX: Final = ".journal"
NEW_SUFFIX: Final = ".new"
"""A journal being made (``.<id>.new``); a crash can leave one, empty."""
FLAG_CLOSED: Final = 1
ENTRY_HEAD: Final = 24
DEFINE, CALL, EVENT = 0, 1, 2

_HEADER: Final = struct.Struct("<8sQQIIQ8xQ8xQQ16s")
_COUNT_AT: Final = 48
_FLAGS_AT: Final = 28
_CHAINED_AT: Final = 64
_CHAINED: Final = struct.Struct("<QQ16s")
_ENTRY: Final = struct.Struct("<II16s")
_SEQ: Final = struct.Struct("<Q")


def journal_dir(data_dir: Path) -> Path:
    """Where a data dir's journals live."""
    return data_dir / "audit" / "journal"


def genesis(journal_id: int) -> bytes:
    """The digest entry 0 of a journal chains from."""
    return hashlib.sha256(b"kmscore journal" + journal_id.to_bytes(8, "little")).digest()[:16]


def entry_digest(previous: bytes, seq: int, body: bytes | memoryview) -> bytes:
    """The chained digest of one entry."""
    h = hashlib.sha256(previous)
    h.update(_SEQ.pack(seq))
    h.update(body)
    return h.digest()[:16]


def event_id(journal_id: int, seq: int) -> str:
    """The trail record's ``eventID`` for a journal entry: a UUIDv8 (RFC 9562).

    It holds the journal id (60 bits) and the entry's seq (62 bits), so the
    trail itself tells a drainer how far each journal was chained.
    """
    j = f"{journal_id & (2**60 - 1):015x}"
    s = seq & (2**62 - 1)
    variant = "89ab"[s >> 60]
    tail = f"{s & (2**60 - 1):015x}"
    return f"{j[:8]}-{j[8:12]}-8{j[12:15]}-{variant}{tail[:3]}-{tail[3:]}"


def parse_event_id(text: object) -> tuple[int, int] | None:
    """(journal id, seq) from an ``eventID`` made by :func:`event_id`, else None."""
    if type(text) is not str or len(text) != 36 or text[14] != "8":
        return None
    digits = text.replace("-", "")
    try:
        journal_id = int(digits[:12] + digits[13:16], 16)
        high = "89ab".index(digits[16])
        seq = (high << 60) | int(digits[17:], 16)
    except ValueError:
        return None
    return journal_id, seq


class JournalDamaged(KMSInternalException):
    """A journal entry does not continue the journal's chain."""

    def __init__(self, path: Path, seq: int, reason: str) -> None:
        super().__init__(f"The audit journal {path.name} is damaged at entry {seq}: {reason}.")
        self.path = path
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JournalHeader:
    """A journal's header fields."""

    journal_id: int
    created_ns: int
    pid: int
    flags: int
    capacity: int
    count: int
    chained_offset: int
    chained_seq: int
    chained_digest: bytes

    @property
    def closed(self) -> bool:
        """Whether the writer appends to this journal no more."""
        return bool(self.flags & FLAG_CLOSED)


def read_header(data: bytes | mmap.mmap, path: Path) -> JournalHeader:
    """Parse a journal's header.

    Raises:
        JournalDamaged: it is not a journal header.
    """
    if len(data) < _HEADER.size:
        raise JournalDamaged(path, 0, "the header is cut short")
    magic, jid, created, pid, flags, capacity, count, c_off, c_seq, c_dig = _HEADER.unpack_from(
        data, 0
    )
    if magic != MAGIC:
        raise JournalDamaged(path, 0, "the header's magic is wrong")
    # (The chained seq may pass the count by one: a live writer stores the count
    # just after the entry's commit word, and a drainer may chain in between.)
    if c_off < HEADER_BYTES or c_off % 8 or c_off > capacity or c_seq > count + 1:
        raise JournalDamaged(path, 0, "the header's chained position is impossible")
    return JournalHeader(jid, created, pid, flags, capacity, count, c_off, c_seq, c_dig)


def describe_caller(caller: Caller) -> list[str | None]:
    """A caller as a journal defines it (see the module's format)."""
    name = caller.arn.rsplit("/", 1)[-1] if caller.kind == "IAMUser" else None
    return [
        caller.kind,
        caller.principal_id,
        caller.arn,
        caller.account,
        caller.access_key_id,
        name,
        caller.source,
        caller.user_agent,
    ]


def caller_identity(described: list[Any]) -> tuple[Identity, str, str]:
    """The identity, source IP and user agent of a defined caller."""
    kind, principal_id, arn, account, access_key_id, user_name, source, agent = described
    identity = Identity(
        type=kind,
        principal_id=principal_id,
        arn=arn,
        account_id=account,
        access_key_id=access_key_id,
        user_name=user_name,
    )
    return identity, source, agent


def decode(body: bytes) -> list[Any]:
    """An entry's body.

    Raises:
        ValueError: it is not a MessagePack array of a known kind.
    """
    value = msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogatepass")
    if type(value) is not list or not value or value[0] not in (DEFINE, CALL, EVENT):
        raise ValueError("not a journal entry")
    return value
