"""The drainer's side of a journal: finding journals behind, and reading one.

A drainer maps a journal read-only and walks its entries from the chained cursor,
checking each against the chain (:mod:`kmscore.audit.journal_format`); it writes
only the cursor, with ``pwrite``. The writer's side is :mod:`kmscore.audit.journal`.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from kmscore import fsutil
from kmscore.audit.journal_format import (
    _CHAINED,
    _CHAINED_AT,
    _ENTRY,
    _HEADER,
    ENTRY_HEAD,
    HEADER_BYTES,
    SUFFIX,
    JournalDamaged,
    JournalHeader,
    entry_digest,
    read_header,
)

__all__ = ["JournalReader", "is_pending", "pending_journals"]


def pending_journals(directory: Path) -> list[Path]:
    """The journals in ``directory`` that hold entries not yet in the trail.

    A header that cannot be read counts as waiting (the drainer then says why).
    """
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [path for path in paths if is_pending(path, damaged=True)]


def is_pending(path: Path, *, damaged: bool = False) -> bool:
    """Whether the entry at the journal's chained cursor is committed.

    The commit word, not the count, is the truth: a writer killed between the
    two leaves the count one short.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        head = read_header(os.pread(fd, _HEADER.size, 0), path)
        if head.chained_seq < head.count:
            return True
        if head.chained_offset + 4 > head.capacity:
            return False
        return os.pread(fd, 4, head.chained_offset) not in (b"", b"\0\0\0\0")
    except JournalDamaged:
        return damaged
    except OSError:
        return False
    finally:
        os.close(fd)


class JournalReader:
    """A journal opened by a drainer: its header, its entries, its chained cursor."""

    def __init__(self, path: Path) -> None:
        """Open and map a journal read-only (the cursor is written with ``pwrite``).

        Raises:
            FileNotFoundError: it is gone (drained and removed meanwhile).
            JournalDamaged: it is not a journal.
            OSError: it cannot be opened.
        """
        self.path = path
        self.fd = fsutil.open_private_file(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(self.fd).st_size
            if size < HEADER_BYTES:
                raise JournalDamaged(path, 0, "the file is shorter than its header")
            self.map = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            self.header = read_header(self.map, path)
            if self.header.capacity != size:
                raise JournalDamaged(path, 0, "the file's size is not its capacity")
        except BaseException:
            os.close(self.fd)
            raise
        self.journal_id = self.header.journal_id

    def refresh(self) -> JournalHeader:
        """Read the header again (the writer moves its count as it appends)."""
        self.header = read_header(self.map, self.path)
        return self.header

    def writer_alive(self) -> bool:
        """Whether the writing process still holds the journal."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return False

    def entries(
        self, offset: int, seq: int, digest: bytes
    ) -> Iterator[tuple[int, bytes, int, bytes]]:
        """Committed entries from ``offset``: (seq, body, offset after it, digest).

        The digest of each is checked against the chain from ``digest``.

        Raises:
            JournalDamaged: an entry breaks the chain, or a length runs past
                the file.
        """
        data = self.map
        capacity = len(data)
        while offset + ENTRY_HEAD <= capacity:
            length, low, stored = _ENTRY.unpack_from(data, offset)
            if length == 0:
                return
            end = offset + ENTRY_HEAD + length
            if end > capacity:
                raise JournalDamaged(self.path, seq, "an entry's length runs past the file")
            body = data[offset + ENTRY_HEAD : end]
            if low != seq & 0xFFFFFFFF:
                raise JournalDamaged(self.path, seq, "an entry is out of place")
            expected = entry_digest(digest, seq, body)
            if expected != stored:
                raise JournalDamaged(self.path, seq, "an entry does not match its digest")
            digest = stored
            offset = (end + 7) & ~7
            yield seq, body, offset, stored
            seq += 1

    def set_chained(self, offset: int, seq: int, digest: bytes) -> None:
        """Record how far the trail holds this journal.

        Raises:
            OSError: the write failed.
        """
        os.pwrite(self.fd, _CHAINED.pack(offset, seq, digest), _CHAINED_AT)

    def close(self) -> None:
        """Unmap and close the journal."""
        self.map.close()
        os.close(self.fd)
