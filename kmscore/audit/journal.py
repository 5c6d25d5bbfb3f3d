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

The format of the files and their entries is :mod:`kmscore.audit.journal_format`;
the drainer's side is :mod:`kmscore.audit.journal_reader`.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from kmscore import fsutil
from kmscore.audit.journal_format import (
    _CHAINED_AT,
    _COUNT_AT,
    _FLAGS_AT,
    _HEADER,
    _SEQ,
    DEFAULT_JOURNAL_BYTES,
    FLAG_CLOSED,
    HEADER_BYTES,
    MAGIC,
    NEW_SUFFIX,
    SUFFIX,
    describe_caller,
    genesis,
    journal_dir,
)
from kmscore.audit.journal_reader import is_pending
from kmscore.audit.scrub import DROP, is_context_map, is_secret_name, scrub_value
from kmscore.engine.journal import JournalFull, JournalWriter, prefault_writable
from kmscore.errors import KMSInternalException

__all__ = ["BEHIND_WAIT", "Journal", "JournalFile"]


def _classify(name: str) -> int:
    if is_secret_name(name):
        return 0
    return 1 if is_context_map(name) else 2


def _scrub(name: str, value: object) -> object:
    return scrub_value(value, 1, False)


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
            self._full = [f for f in self._full if f.path.exists() and is_pending(f.path)]
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
