"""The audit journal: each process's calls, recorded without a system call.

Why a journal
-------------
Writing the CloudTrail-shaped record and chaining it cost more than the call it
records. So a call's record is first a compact entry in a file this process
alone writes, through a shared memory mapping: no system call, no lock, a few
hundred nanoseconds in :mod:`kmscore.engine.journal`. Once the store of the
entry's length is done, the entry is in the page cache, so it survives
``kill -9`` of the process (the durability promise of
:class:`~kmscore.audit.sink.AuditSink`). A drainer (:mod:`kmscore.audit.chainer`)
turns entries into the trail's records, hash-chained and sealed by signed
checkpoints as before, and fsyncs them; until then the journal itself is
fsynced on :meth:`Journal.flush`.

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

import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from kmscore import fsutil
from kmscore.audit.identity import Identity
from kmscore.audit.scrub import DROP, is_context_map, is_secret_name, scrub_value
from kmscore.engine.journal import JournalFull, JournalWriter, prefault_writable
from kmscore.errors import KMSInternalException
from kmscore.model.caller import Caller

__all__ = [
    "DEFAULT_JOURNAL_BYTES",
    "HEADER_BYTES",
    "Journal",
    "JournalDamaged",
    "JournalFile",
    "JournalHeader",
    "event_id",
    "journal_dir",
    "parse_event_id",
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


# --- the writer's side ------------------------------------------------------------


def _classify(name: str) -> int:
    if is_secret_name(name):
        return 0
    return 1 if is_context_map(name) else 2


def _scrub(name: str, value: object) -> object:
    return scrub_value(value, 1, False)


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


class JournalFile:
    """One journal file, created and mapped for writing by its process."""

    def __init__(self, directory: Path, capacity: int) -> None:
        """Create, preallocate, lock and map a new journal in ``directory``.

        Raises:
            KMSInternalException: it cannot be made (a full disk, say); no
                file is left behind.
        """
        self.journal_id = secrets.randbits(60)
        self.path = directory / f"{self.journal_id:015x}{SUFFIX}"
        # Made under a name drainers ignore, and renamed once whole: a drainer
        # never sees a journal without its header.
        making = directory / f".{self.journal_id:015x}{NEW_SUFFIX}"
        try:
            fsutil.ensure_private_dir(directory)
            fd = fsutil.create_private_file(making, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise KMSInternalException(f"cannot create an audit journal: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, capacity)
            header = _HEADER.pack(
                MAGIC,
                self.journal_id,
                time.time_ns(),
                os.getpid(),
                0,
                capacity,
                0,
                HEADER_BYTES,
                0,
                genesis(self.journal_id),
            )
            os.pwrite(fd, header, 0)
            self.map = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED)
            self.capacity = capacity
            #: Where the pages faulted in writable end (see :meth:`prefault_ahead`).
            self.prefaulted = HEADER_BYTES
            self._seen = HEADER_BYTES
            self.prefault_ahead(HEADER_BYTES)
            # The journal's existence survives a power loss from the start.
            os.fsync(fd)
            os.rename(making, self.path)
            fsutil.fsync_dir(directory)
        except OSError as exc:
            os.close(fd)
            for path in (making, self.path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise KMSInternalException(f"cannot create an audit journal: {exc}") from exc
        self.fd = fd
        self.capacity = capacity

    def prefault_ahead(self, offset: int) -> None:
        """Fault the pages after ``offset`` in, writable, before the writer gets there.

        A shared file mapping's page is write-protected until its first store,
        which traps into the kernel (``page_mkwrite``; 4-7 us a page on this
        ext4): one fault per ~28 records, a tenth of a record's cost when the
        caller takes it (docs/performance.md, "The audit record, stop 29").
        Here the kernel does it without the GIL, from the file's maker and then
        the sink's pump thread, for twice what the writer wrote since the last
        time (at least :data:`PREFAULT_MIN`, at most :data:`PREFAULT_MAX`):
        a busy writer finds its pages ready, and a short-lived process dirties
        little more than it writes. A writer that outruns it faults as before.

        Raises:
            OSError: the kernel refused (not for lack of the advice, which
                stops further tries).
        """
        ahead = min(max(PREFAULT_MIN, 2 * (offset - self._seen)), PREFAULT_MAX)
        self._seen = offset
        target = min(self.capacity, offset + ahead)
        if target <= self.prefaulted:
            return
        try:
            supported = prefault_writable(self.map, self.prefaulted, target - self.prefaulted)
        except (ValueError, BufferError):
            return  # unmapped meanwhile (sealed, rolled)
        self.prefaulted = target if supported else self.capacity

    def writer(self, describe: Callable[[Any], Any]) -> Any:
        """A native writer appending from the first entry."""
        return JournalWriter(
            self.map,
            HEADER_BYTES,
            0,
            genesis(self.journal_id),
            _COUNT_AT,
            _classify,
            _scrub,
            DROP,
            describe,
        )

    def count(self) -> int:
        """Entries committed so far."""
        return int(_SEQ.unpack_from(self.map, _COUNT_AT)[0])

    def chained_seq(self) -> int:
        """Entries already in the trail."""
        return int(_SEQ.unpack_from(self.map, _CHAINED_AT + 8)[0])

    def seal(self) -> None:
        """Mark the journal as appended to no more, and let go of it."""
        try:
            struct.pack_into("<I", self.map, _FLAGS_AT, FLAG_CLOSED)
        except (ValueError, TypeError):
            pass
        self.release()

    def release(self) -> None:
        """Unmap and close (the lock goes with the last descriptor)."""
        try:
            self.map.close()
        except BufferError:  # a writer still pins it; it goes when the writer does
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fsync(self) -> None:
        """Make every committed entry durable against power loss.

        Raises:
            OSError: the fsync failed.
        """
        if self.fd >= 0:
            os.fsync(self.fd)


PREFAULT_MIN: Final = 128 * 1024
PREFAULT_MAX: Final = 4 * 1024 * 1024

_open_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


def _forget_in_child() -> None:
    for journal in list(_open_journals):
        journal._forked()


os.register_at_fork(after_in_child=_forget_in_child)


class Journal:
    """This process's journal of one data dir: the files it writes, rolled when full."""

    def __init__(
        self,
        data_dir: Path,
        *,
        capacity: int = DEFAULT_JOURNAL_BYTES,
        max_behind: int = 16,
        on_behind: Callable[[], None] | None = None,
    ) -> None:
        """Prepare a journal; its first file is made by the first append.

        Args:
            data_dir: The data dir.
            capacity: Bytes per journal file.
            max_behind: Full files of this process not yet chained into the
                trail before an append waits for the drainer (and fails after
                :data:`BEHIND_WAIT` seconds).
            on_behind: Called when an append has to wait (to start a drainer).

        Raises:
            ValueError: ``capacity`` cannot hold a header and an entry.
        """
        if capacity < 2 * HEADER_BYTES or capacity % mmap.PAGESIZE:
            raise ValueError("a journal holds at least two pages, in whole pages")
        self.directory = journal_dir(data_dir)
        self.capacity = capacity
        self.max_behind = max_behind
        self.on_behind = on_behind
        self._file: JournalFile | None = None
        #: The native writer of the current file, or None before the first
        #: append. A caller may append through it directly and go through
        #: :meth:`append_call` when it raises JournalFull (the file is full, or
        #: was let go on a roll, a close or a fork).
        self.writer: Any = None
        self._full: list[JournalFile] = []
        self._spare: JournalFile | None = None
        self._preparing = False
        self._generation = 0
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        _open_journals.add(self)

    def append_call(self, *args: Any) -> int:
        """Record one call (the arguments of the native ``append_call``).

        Raises:
            KMSInternalException: the journal is closed, or a new file is
                needed and cannot be made; nothing of the call is kept.
        """
        return self._append("append_call", args)

    def append_service_call(self, *args: Any) -> int:
        """Record a service call (the arguments of the native ``append_service_call``).

        Raises:
            KMSInternalException: as :meth:`append_call`.
        """
        return self._append("append_service_call", args)

    def append_event(self, event: Any) -> int:
        """Record one whole event, already scrubbed.

        Raises:
            KMSInternalException: as :meth:`append_call`.
        """
        return self._append("append_event", (event,))

    def _append(self, method: str, args: tuple[Any, ...]) -> int:
        """Append through the current writer, rolling to a new file when it is full."""
        for _ in range(4):
            writer = self.writer
            if writer is None:
                writer = self._next(None)
            try:
                return int(getattr(writer, method)(*args))
            except JournalFull:
                self._next(writer)
        raise KMSInternalException("An audit record does not fit in an audit journal.")

    def _next(self, full: Any) -> Any:
        with self._lock:
            if self._closed or self._pid != os.getpid():
                raise KMSInternalException("The audit journal is closed.")
            if self.writer is not full and self.writer is not None:
                return self.writer  # another thread rolled it already
            if self._file is not None:
                self.writer.release()
                self._file.seal()
                self._full.append(self._file)
                self._file = None
                self.writer = None
            self._wait_for_drainer()
            new, self._spare = self._spare, None
            if new is None:
                new = JournalFile(self.directory, self.capacity)
            self._file = new
            self.writer = new.writer(describe_caller)
            return self.writer

    def prepare_spare_if_due(self) -> None:
        """Start making the next file once the current one is half full.

        Called from the sink's pump thread: a short-lived process (a ``kms``
        command) never fills half a file and makes no spare.
        """
        writer = self.writer
        if (
            self._spare is None
            and not self._preparing
            and writer is not None
            and writer.offset > self.capacity // 2
        ):
            self._prepare_spare()

    def _prepare_spare(self) -> None:
        """Make the next file in the background, so a roll does not wait for it.

        Making a file (fallocate, populate, two fsyncs) takes milliseconds to
        tens of milliseconds here; the caller that fills a file would wait for
        all of it. A spare that cannot be made is left to the next roll, which
        makes one itself and reports why it cannot.
        """
        if self._preparing or self._closed:
            return
        self._preparing = True
        threading.Thread(
            target=self._make_spare,
            args=(self._generation,),
            name="kmscore-journal-spare",
            daemon=True,
        ).start()

    def prefault_ahead(self) -> None:
        """Fault the current file's next pages in (see :meth:`JournalFile.prefault_ahead`).

        Called from the sink's pump thread.
        """
        f, writer = self._file, self.writer
        if f is None or writer is None or self._pid != os.getpid():
            return
        try:
            f.prefault_ahead(writer.offset)
        except OSError:
            pass  # the writer takes its own faults, as without this

    def _make_spare(self, generation: int) -> None:
        try:
            spare: JournalFile | None = JournalFile(self.directory, self.capacity)
        except KMSInternalException:
            spare = None
        with self._lock:
            self._preparing = False
            stale = generation != self._generation  # rolled meanwhile: made too early
            if spare is not None and (stale or self._closed or self._pid != os.getpid()):
                spare.seal()
            elif spare is not None:
                if self._spare is not None:
                    self._spare.seal()
                self._spare = spare

    def _drop_spare(self) -> None:
        self._generation += 1
        if self._spare is not None:
            self._spare.seal()
            self._spare = None

    def _wait_for_drainer(self) -> None:
        deadline = None
        while True:
            self._full = [f for f in self._full if f.path.exists() and _pending_in(f.path)]
            if len(self._full) < self.max_behind:
                return
            if deadline is None:
                deadline = time.monotonic() + BEHIND_WAIT
                if self.on_behind is not None:
                    self.on_behind()
            if time.monotonic() > deadline:
                raise KMSInternalException(
                    f"The audit trail is not keeping up: {len(self._full)} full audit "
                    "journals of this process wait to be chained."
                )
            time.sleep(0.01)

    def roll(self) -> None:
        """Seal the current file now; the next append makes a new one.

        Used after a failed fsync (the kernel may have dropped what the file
        held, so it takes no more) and by tests of a full disk.
        """
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self.writer.release()
                self._file.seal()
                self._full.append(self._file)
                self._drop_spare()  # a fresh file is made now, not one made before
            self._file = None
            self.writer = None

    def pending(self) -> int:
        """Entries of the current file not yet chained (0 without a file)."""
        f = self._file
        if f is None:
            return 0
        try:
            return max(0, f.count() - f.chained_seq())
        except ValueError:
            return 0

    def has_files(self) -> bool:
        """Whether this journal made any file yet."""
        return self._file is not None or bool(self._full)

    def flush(self) -> None:
        """Fsync the current file: every entry so far survives a power loss.

        Raises:
            KMSInternalException: the fsync failed.
        """
        f = self._file
        if f is not None:
            try:
                f.fsync()
            except OSError as exc:
                self.roll()
                raise KMSInternalException(f"cannot sync the audit journal: {exc}") from exc

    def close(self) -> None:
        """Seal the current file; later appends raise. Idempotent."""
        with self._lock:
            self._closed = True
            if self._file is not None and self._pid == os.getpid():
                self.writer.release()
                self._file.seal()
            if self._pid == os.getpid():
                self._drop_spare()
            self._file = None
            self.writer = None

    def _forked(self) -> None:
        # The child must never write into its parent's file.
        self._closed = True
        self._lock = threading.Lock()
        if self.writer is not None:
            self.writer.release()  # a stale reference to it now refuses
        if self._spare is not None:
            try:
                self._spare.map.close()
                os.close(self._spare.fd)
            except (OSError, BufferError):
                pass
            self._spare = None
        if self._file is not None:
            try:
                self._file.map.close()
            except BufferError:
                pass
            try:
                os.close(self._file.fd)
            except OSError:
                pass
        self._file = None
        self.writer = None


BEHIND_WAIT: Final = 10.0
"""Seconds an append waits for the drainer when too many files are behind."""


def pending_journals(directory: Path) -> list[Path]:
    """The journals in ``directory`` that hold entries not yet in the trail.

    A header that cannot be read counts as waiting (the drainer then says why).
    """
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [path for path in paths if _pending_in(path, damaged=True)]


def _pending_in(path: Path, *, damaged: bool = False) -> bool:
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


# --- the drainer's side -----------------------------------------------------------


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
        self.map.close()
        os.close(self.fd)


def decode(body: bytes) -> list[Any]:
    """An entry's body.

    Raises:
        ValueError: it is not a MessagePack array of a known kind.
    """
    value = msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogatepass")
    if type(value) is not list or not value or value[0] not in (DEFINE, CALL, EVENT):
        raise ValueError("not a journal entry")
    return value
