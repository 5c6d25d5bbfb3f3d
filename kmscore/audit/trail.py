"""The audit trail writer: hash-chained JSON Lines segments, signed checkpoints.

Durability contract
-------------------
:meth:`AuditTrail.append` returns once its record is written to the kernel
(``os.write`` done): a record the service acknowledged survives ``kill -9`` of
the process. If the write fails, ``append`` raises :class:`KMSInternalException`
and the trail holds no trace of the record, not even half a line (fail closed).

Surviving a power loss is group-committed. With ``sync="batch"`` (the default)
a background flusher fsyncs the segment being written at most every
``fsync_interval`` seconds (5 ms by default), and the trail also fsyncs before
every checkpoint, when a segment is closed, and in :meth:`~AuditTrail.flush`
and :meth:`~AuditTrail.close`. Records acknowledged in the last interval before
a power loss may be lost; a record acknowledged before a ``kill -9`` never is.
If a background fsync fails, the trail fails closed: every later append raises
until the trail is reopened (after a failed fsync the kernel may have dropped
the data, and a later fsync would wrongly succeed). With ``sync="always"``
``append`` returns only after its batch is fsynced too, and a failed fsync rolls
the batch back.

Checkpoints only seal records that are fsynced: a checkpoint is written after
the segment holding the records it seals is fsynced, and a segment is closed (a
new one created) only after a checkpoint sealed it and it was fsynced.

Why checkpoints live in their own file (``checkpoints.jsonl``) and not inline
between records: a checkpoint exists to prove how far the trail reached. Inline,
the checkpoint sealing records 0..n sits after record n, so cutting the tail
removes the checkpoint together with the records it sealed, and the shortened
trail looks whole. In a separate file, the last checkpoint still names seq n and
the hash of its line after the records are cut, and verification fails. The
records stay pure CloudTrail-shaped events for ``jq``, and the small checkpoint
file is all a verifier needs to pin (see ``anchor`` in :func:`verify`). Cutting
both files at once is only detectable against a checkpoint kept elsewhere.

Group commit: callers scrub and encode their events on their own thread (an
event from :func:`build_event` is already both), then queue them. The first
caller to find no writer active becomes the leader, takes the whole queue,
writes it with one ``write``, and wakes the others; callers that queued
meanwhile are written by the next leader, to whom the leader hands over. No
thread is dedicated to writing, so an idle trail costs nothing.

Several writers, one chain
--------------------------
Several processes (a daemon and a CLI, several in-process clients, ...) may
open the trail of one data directory at once, and so may several
``AuditTrail`` objects in one process; they share one chain. Every change to
the files (a batch of records, a checkpoint, a new segment, cutting a torn
tail) happens while holding an exclusive ``flock`` on ``audit/LOCK``, taken
per batch, blocking.

Each open trail has a token (its pid and a random id). The ``LOCK`` file holds
the token of the last writer that touched the files; a writer writes its token
there, under the lock, before it changes any file. So a writer that takes the
lock and finds its own token there knows that nobody else wrote since its last
batch: its head hash, next seq, segment and size are current (one ``pread``).
Otherwise it claims the file with its token and catches up: it reads the last
checkpoint (adopting it when another writer wrote it: signature checked, the
sealed record's hash checked), then follows the chain from the newer of its
own head and that checkpoint through the rest of the current segment and any
newer segments, checking every link, cutting a torn tail that a writer killed
mid-write left, and switching to the newest segment. Segment rotation and
checkpoints are decided after catching up, so they are correct whoever wrote
the records; the time range and count a checkpoint seals cover every writer's
records. The signing key is the data directory's, shared by all writers.

The lock is blocking and has no timeout: a writer stopped (``SIGSTOP``, a
debugger) in the middle of a batch stalls the others until it resumes; a killed
one releases it. A process that forks with a trail open must open it again in
the child: the child's copy refuses appends and closes its copies of the files.

Crash recovery: bytes after the last complete record can be torn (an
unterminated line, or a run of lines that are not JSON objects up to the end of
the file). They were never acknowledged and are cut off, at open or by the next
writer that catches up. A complete JSON line that does not continue the chain
is never cut: it is not a crash artifact, so opening (or appending) fails and
``verify`` names the place. Readers (``verify``, ``query``) take no lock.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Self

from nacl.signing import SigningKey

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.audit.event import AuditEvent, scrub_event
from kmscore.audit.export import CheckpointExport
from kmscore.audit.witness import (
    MAX_LINES,
    CheckpointSigner,
    LocalSigner,
    WitnessError,
    checkpoint_times,
)
from kmscore.errors import KMSInternalException

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_FSYNC_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "AuditTrail",
    "SyncMode",
]

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
# A checkpoint costs two fsyncs and a signature (about a millisecond here), so
# sealing every 10,000 records keeps its share of an append's cost near 1% at
# ~100,000 appends/s (a tenth of a second of records), while the interval seals
# a quiet trail within a minute.
DEFAULT_CHECKPOINT_EVERY: Final = 10_000
DEFAULT_CHECKPOINT_INTERVAL: Final = 60.0
DEFAULT_FSYNC_INTERVAL: Final = 0.005

SyncMode = Literal["batch", "always"]
"""``"batch"``: fsync in the background, ``"always"``: before ``append`` returns."""

_CLOSED: Final = "the audit trail is closed"
_FORKED: Final = "the audit trail was opened before fork(); open it again in the child process"

_log = logging.getLogger(__name__)
_APPEND: Final = os.O_WRONLY | os.O_APPEND
_sha256 = hashlib.sha256
_hexlify = binascii.hexlify
_allocate_lock = threading.Lock
_monotonic = time.monotonic

Record = tuple[bytes, "str | None"]
"""A record before it is chained: what follows the chain members, and its eventTime."""


class _Slot:
    """One caller's records (or action) waiting for the leader."""

    __slots__ = ("action", "done", "error", "lead", "records", "wake")

    def __init__(
        self,
        records: list[Record],
        action: Callable[[KMSInternalException | None], None] | None = None,
    ) -> None:
        self.records = records
        self.action = action
        self.done = False
        self.lead = False
        self.error: BaseException | None = None
        self.wake: threading.Lock | None = None


class _Damaged(Exception):
    """The trail on disk is not what a crash can leave; opening must stop."""


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _encode(event: Mapping[str, Any]) -> Record:
    if type(event) is AuditEvent:
        sealed = event.sealed_record()
        if sealed is not None:
            return sealed
    elif not isinstance(event, Mapping):
        raise TypeError(f"an audit event is a mapping, not {type(event).__name__}")
    clean = scrub_event(event)
    event_time = clean.get("eventTime")
    body = fmt.encode_event(clean)
    return fmt.record_rest(body), event_time if isinstance(event_time, str) else None


def _parses_as_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


_open_trails: weakref.WeakSet[AuditTrail] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for trail in list(_open_trails):
        trail._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditTrail:
    """Writer of one tamper-evident audit trail (see the module docstring).

    Thread-safe, and safe to open in several processes at once. Use
    :meth:`open` for a data directory; the constructor is for callers that
    manage the key themselves.
    """

    def __init__(
        self,
        audit_dir: str | os.PathLike[str],
        signing_key: SigningKey | CheckpointSigner,
        *,
        export: CheckpointExport | None = None,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
        sync: SyncMode = "batch",
        fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
    ) -> None:
        """Open (creating if needed) the trail in ``audit_dir`` and recover its head.

        Args:
            audit_dir: The records directory (created 0700 if missing).
            signing_key: The Ed25519 key that signs checkpoints, or a signer
                out of this process's reach (:class:`~kmscore.audit.witness.WitnessClient`).
            export: Where each checkpoint is copied as it is made (a file on
                another path, syslog), so a deleted tail shows; None for nowhere.
            max_segment_bytes: A segment is closed at the first batch that finds
                it at least this large.
            checkpoint_every: Write a checkpoint once this many records are unsealed.
            checkpoint_interval: Seconds after which unsealed records are sealed
                by a background timer; None for no timer.
            sync: ``"batch"``: ``append`` returns once its record is written,
                fsyncs are batched in the background; ``"always"``: ``append``
                returns once its record is fsynced.
            fsync_interval: With ``sync="batch"``, the most time between a
                record's write and its fsync, about: the flusher fsyncs at most
                this often.

        Raises:
            ValueError: If a limit is not positive or ``sync`` is unknown.
            KMSInternalException: If the directory is unsafe or unusable, the
                signing key does not match the checkpoints, or the trail is
                damaged beyond a torn tail.
        """
        if max_segment_bytes < 1 or checkpoint_every < 1:
            raise ValueError("max_segment_bytes and checkpoint_every must be positive")
        if checkpoint_interval is not None and checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be positive or None")
        if sync not in ("batch", "always"):
            raise ValueError(f"sync must be 'batch' or 'always', not {sync!r}")
        if not fsync_interval > 0:
            raise ValueError("fsync_interval must be positive")
        self._dir = Path(audit_dir)
        self._signer: CheckpointSigner = (
            LocalSigner(signing_key) if isinstance(signing_key, SigningKey) else signing_key
        )
        self._export = export
        self._signer_retry_at = 0.0
        self._sealer: threading.Thread | None = None
        self._max_segment_bytes = max_segment_bytes
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._sync_always = sync == "always"
        self._fsync_interval = fsync_interval

        # Group commit (guarded by _qlock).
        self._qlock = threading.Lock()
        self._pending: list[_Slot] = []
        self._busy = False
        self._closed = False
        self._broken: str | None = None

        # Files. Only the leader changes them; the flusher reads _seg_fd under _fd_lock.
        self._fd_lock = threading.Lock()
        self._lock_fd = -1
        self._ckpt_fd = -1
        self._ckpt_size = 0
        self._seg_fd = -1
        self._seg_name = ""
        self._seg_size = 0
        self._dirty = False  # written to _seg_fd since its last fsync

        # The chain as this writer last saw it.
        self._next_seq = 0
        self._head = fmt.GENESIS_HASH.encode("ascii")
        self._head_segment = ""
        self._head_offset = 0
        self._unsealed = 0
        self._from_time: str | None = None
        self._to_time: str | None = None
        self._last_signature: str | None = None
        self._last_checkpoint_at = time.monotonic()
        # The end of the last sealed record ("" and 0: the trail's start).
        self._sealed_segment = ""
        self._sealed_offset = 0

        # Sharing with other writers (see the module docstring).
        self._token = (
            f"kmscore audit writer pid {os.getpid():>10} id {os.urandom(8).hex()}\n".encode("ascii")
        )
        self._token_peek = len(self._token) + 1  # a longer file is not ours either
        self._in_sync = False

        self._stop = threading.Event()
        self._wake = threading.Event()
        try:
            fsutil.ensure_private_dir(self._dir)
            self._open_files()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._sync_shared()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except (OSError, _Damaged) as exc:
            self._close_files()
            raise KMSInternalException(
                f"cannot open the audit trail in {self._dir}: {exc}"
            ) from exc

        _open_trails.add(self)
        if checkpoint_interval is not None:
            threading.Thread(
                target=_timer,
                args=(weakref.ref(self), self._stop, checkpoint_interval),
                name="kmscore-audit-checkpoint",
                daemon=True,
            ).start()
        if not self._sync_always:
            threading.Thread(
                target=_flusher,
                args=(weakref.ref(self), self._wake, self._stop, fsync_interval),
                name="kmscore-audit-flusher",
                daemon=True,
            ).start()

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        signer: CheckpointSigner | None = None,
        export: CheckpointExport | None = None,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
        sync: SyncMode = "batch",
        fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
    ) -> Self:
        """Open the trail of a data directory, creating the trail and its key on first use.

        Creates ``<data_dir>/audit/`` (0700), ``<data_dir>/audit-signing.key``
        (0600, ``O_CREAT|O_EXCL|O_NOFOLLOW``) and ``<data_dir>/audit-signing.pub``.
        Other processes may have the same trail open.

        Args:
            data_dir: The service's data directory (created 0700 if missing).
            signer: Who signs checkpoints; the data dir's own key if None.
            export: See :class:`AuditTrail`.
            max_segment_bytes: See :class:`AuditTrail`.
            checkpoint_every: See :class:`AuditTrail`.
            checkpoint_interval: See :class:`AuditTrail`.
            sync: See :class:`AuditTrail`.
            fsync_interval: See :class:`AuditTrail`.

        Returns:
            The open trail.

        Raises:
            KMSInternalException: If the directory, key or trail is unusable.
        """
        from kmscore.audit.keys import load_or_create_signing_key

        data = Path(data_dir)
        try:
            fsutil.ensure_private_dir(data)
            fsutil.ensure_private_dir(data / fmt.AUDIT_DIR)
        except OSError as exc:
            raise KMSInternalException(f"cannot create the audit directory: {exc}") from exc
        key: SigningKey | CheckpointSigner = signer or load_or_create_signing_key(data)
        return cls(
            data / fmt.AUDIT_DIR,
            key,
            export=export,
            max_segment_bytes=max_segment_bytes,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            sync=sync,
            fsync_interval=fsync_interval,
        )

    # --- public API ---------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence number after the last record this writer has seen."""
        return self._next_seq

    @property
    def head_hash(self) -> str:
        """The chain hash of the last record this writer has seen (genesis if none)."""
        return self._head.decode("ascii")

    def append(self, event: Mapping[str, Any]) -> None:
        """Scrub one event (unless sealed) and write it as the next record.

        Returns once the record is written to the kernel (and fsynced too with
        ``sync="always"``); see the module docstring.

        Args:
            event: The event, normally from :func:`kmscore.audit.build_event`.

        Raises:
            TypeError: If ``event`` is not a mapping.
            KMSInternalException: If the record could not be written, or the
                trail is closed or failed; then the trail holds no trace of it.
        """
        if type(event) is AuditEvent and event._stored is not None:
            record: Record = (event._stored, event._time)
        else:
            record = _encode(event)
        qlock = self._qlock
        with qlock:
            alone = not self._busy and self._broken is None and not self._closed
            if alone:
                self._busy = True
        if not alone:
            self._submit(_Slot([record]))
            return
        try:
            error = self._append_alone(record)
        except BaseException:
            self._distrust_view()
            raise
        finally:
            with qlock:
                if self._pending:
                    self._hand_over()
                else:
                    self._busy = False
        if error is not None:
            raise error

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Write several events as consecutive records, all or none.

        Args:
            events: The events, in order.

        Raises:
            TypeError: If an event is not a mapping.
            KMSInternalException: If the records could not be written, or the
                trail is closed or failed; then the trail holds none of them.
        """
        records = [_encode(event) for event in events]
        if records:
            self._submit(_Slot(records))

    def checkpoint(self) -> None:
        """Seal every record written so far (by any writer) with a signed checkpoint now.

        Does nothing when every record is already sealed.

        Raises:
            KMSInternalException: If the checkpoint could not be made durable,
                or the trail is closed or failed.
        """
        self._submit(_Slot([], self._act_checkpoint))

    def flush(self) -> None:
        """Wait until every append queued before this call is fsynced.

        Raises:
            KMSInternalException: If the fsync failed, or the trail is closed
                or failed.
        """
        self._submit(_Slot([], self._act_flush))

    def close(self) -> None:
        """Seal the unsealed records with a checkpoint, fsync, then release the trail.

        Idempotent. The files are released even when the final checkpoint fails.

        Raises:
            KMSInternalException: If the final checkpoint could not be written.
        """
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        sealer = self._sealer
        if sealer is not None and sealer is not threading.current_thread():
            sealer.join(30)  # its checkpoint first; the final one seals the rest
        try:
            self._submit(_Slot([], self._act_close), check=False)
        finally:
            self._close_files()
            if self._export is not None:
                self._export.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- group commit ---------------------------------------------------------

    def _submit(self, slot: _Slot, check: bool = True) -> None:
        """Queue a slot, lead or wait for the leader, raise the slot's error."""
        with self._qlock:
            if check and (self._closed or self._broken is not None):
                raise KMSInternalException(_CLOSED if self._closed else str(self._broken))
            if self._busy:
                slot.wake = wake = _allocate_lock()
                wake.acquire()
                self._pending.append(slot)
            else:
                self._busy = True
        if slot.wake is None:
            self._lead(slot)
        else:
            self._await(slot)
        error = slot.error
        if error is not None:
            if isinstance(error, KMSInternalException | OSError):
                raise self._as_internal(error) from error
            raise error

    def _as_internal(self, error: BaseException) -> KMSInternalException:
        """The exception for a caller, naming the failed state if the error caused it."""
        if isinstance(error, OSError) and self._broken is not None:
            return KMSInternalException(self._broken)
        return _as_internal(error)

    def _await(self, slot: _Slot) -> None:
        """Wait until a leader wrote the slot or handed leadership to it."""
        assert slot.wake is not None
        interrupted: BaseException | None = None
        while True:
            try:
                slot.wake.acquire()
                break
            except BaseException as exc:  # e.g. KeyboardInterrupt while queued
                with self._qlock:
                    if any(queued is slot for queued in self._pending):
                        self._pending.remove(slot)  # never taken: never written
                        raise
                # A leader took it; leadership must not be lost with this thread.
                interrupted = exc
        if slot.lead:
            self._lead(slot)
        if interrupted is not None:
            raise interrupted

    def _lead(self, first: _Slot) -> None:
        with self._qlock:
            if self._pending:
                batch = [first, *self._pending]
                self._pending = []
            else:
                batch = [first]
        try:
            self._process(batch)
        except BaseException:
            self._distrust_view()
            raise
        finally:
            with self._qlock:
                for slot in batch:
                    if not slot.done and slot.error is None:
                        slot.error = KMSInternalException("the audit writer failed")
                    slot.done = True
                    if slot is not first and slot.wake is not None:
                        slot.wake.release()
            self._step_down()

    def _process(self, batch: list[_Slot]) -> None:
        """Write a batch and run its actions, under the shared lock (leader only)."""
        failure: KMSInternalException | None = None
        locked = False
        if self._broken is not None or self._closed:
            failure = KMSInternalException(_CLOSED if self._closed else str(self._broken))
        try:
            if failure is None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                    locked = True
                    self._sync_shared()
                except (OSError, _Damaged) as exc:
                    failure = self._cannot_continue(exc)
            if len(batch) == 1 and batch[0].action is None:
                if failure is None:
                    self._commit(batch)
                else:
                    batch[0].error = failure
            else:
                records = [slot for slot in batch if slot.records]
                if records:
                    if failure is None:
                        self._commit(records)
                    else:
                        for slot in records:
                            slot.error = failure
                for slot in batch:
                    if slot.action is not None:
                        try:
                            slot.action(failure)
                            slot.done = True
                        except (KMSInternalException, OSError) as exc:
                            slot.error = exc
            if failure is None and self._broken is None and not self._closed:
                self._checkpoint_if_due()
        finally:
            if locked:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _commit(self, batch: list[_Slot]) -> None:
        """Write the slots' records as consecutive records (leader, lock held, in sync)."""
        if len(batch) == 1:
            records = batch[0].records
        else:
            records = [record for slot in batch for record in slot.records]
        error = self._write_records(records)
        for slot in batch:
            if error is None:
                slot.done = True
            else:
                slot.error = error

    def _write_records(self, records: list[Record]) -> OSError | None:
        """Chain and write records with one ``write`` (leader, lock held, in sync).

        Returns:
            None once written (and fsynced with ``sync="always"``), or the error
            after which nothing of them is left in the segment.
        """
        if self._seg_size >= self._max_segment_bytes:
            try:
                self._rotate_if_full()
            except OSError as exc:  # the trail failed (a segment could not be fsynced)
                return exc
        first_seq = seq = self._next_seq
        head = self._head
        if len(records) == 1:
            rest, low = records[0]
            line = b'{"seq":%d,"prevHash":"%b"%b' % (seq, head, rest)
            head = _hexlify(_sha256(line).digest())
            data = line + b"\n"
            seq += 1
            high = low
        else:
            lines: list[bytes] = []
            times: list[str] = []
            for rest, event_time in records:
                line = b'{"seq":%d,"prevHash":"%b"%b' % (seq, head, rest)
                head = _hexlify(_sha256(line).digest())
                lines.append(line)
                seq += 1
                if event_time is not None:
                    times.append(event_time)
            lines.append(b"")
            data = b"\n".join(lines)
            low = high = None
            if times:
                low, high = min(times), max(times)
        fd = self._seg_fd
        start = self._seg_size
        try:
            _write_all(fd, data)
            if self._sync_always:
                os.fsync(fd)
        except BaseException as exc:
            # Also on KeyboardInterrupt: lines on disk that the head does not know
            # would fork the chain at the next write.
            self._roll_back(fd, start, "segment")
            if not isinstance(exc, OSError):
                raise
            return exc
        self._unsealed += seq - first_seq
        self._next_seq = seq
        self._head = head
        self._seg_size = end = start + len(data)
        self._head_segment = self._seg_name
        self._head_offset = end
        if low is not None and high is not None:
            if self._from_time is None or low < self._from_time:
                self._from_time = low
            if self._to_time is None or high > self._to_time:
                self._to_time = high
        if not self._dirty and not self._sync_always:
            self._dirty = True
            self._wake.set()
        return None

    def _append_alone(self, record: Record) -> KMSInternalException | None:
        """The uncontended path of :meth:`append`: leader of a batch of one (busy held)."""
        lock_fd = self._lock_fd
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            return _as_internal(exc)
        try:
            if not self._in_sync or os.pread(lock_fd, self._token_peek, 0) != self._token:
                try:
                    self._sync_shared()
                except (OSError, _Damaged) as exc:
                    return self._cannot_continue(exc)
            error = self._write_records([record])
            if error is not None:
                return self._as_internal(error)
            if self._unsealed >= self._checkpoint_every or (
                self._checkpoint_interval is not None
                and _monotonic() - self._last_checkpoint_at >= self._checkpoint_interval
            ):
                self._checkpoint_if_due()
            return None
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _step_down(self) -> None:
        """End a leader's turn: hand over to the next queued caller, if any."""
        with self._qlock:
            if self._pending:
                self._hand_over()
            else:
                self._busy = False

    def _hand_over(self) -> None:
        """Make the first queued caller the leader (``_qlock`` held, busy stays set)."""
        successor = self._pending.pop(0)
        successor.lead = True
        assert successor.wake is not None
        successor.wake.release()

    def _cannot_continue(self, exc: OSError | _Damaged) -> KMSInternalException:
        failure = KMSInternalException(
            f"the audit trail cannot continue the chain other writers left: {exc}"
        )
        _log.error("%s", failure.message)
        return failure

    def _roll_back(self, fd: int, size: int, what: str) -> None:
        """Cut a failed write off so no partial line stays; else stop the trail."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            self._fail(
                f"the audit {what} file could not be rolled back after a failed write ({exc}); "
                "the trail refuses appends until it is reopened"
            )

    def _fail(self, reason: str) -> None:
        """Put the trail in the failed state: every later append raises."""
        if self._broken is None:
            self._broken = reason
            _log.error("%s", reason)

    def _rotate_if_full(self) -> None:
        if self._seg_size < self._max_segment_bytes:
            return
        name = fmt.segment_name(self._next_seq)
        try:
            self._write_checkpoint()
            self._fsync_segment()  # closing it: all of it durable
            fd = fsutil.create_private_file(self._dir / name, _APPEND)
        except OSError as exc:
            if self._broken is not None:
                raise
            _log.warning("audit segment %s stays open past its size limit: %s", self._seg_name, exc)
            return
        try:
            fsutil.fsync_dir(self._dir)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._dir / name)
            _log.warning("audit segment %s stays open past its size limit: %s", self._seg_name, exc)
            return
        self._swap_segment(fd, name)
        self._seg_size = 0

    def _swap_segment(self, fd: int, name: str) -> None:
        """Make ``fd`` the segment written to; fsync and close the previous one."""
        with self._fd_lock:
            old, self._seg_fd, self._seg_name = self._seg_fd, fd, name
            dirty, self._dirty = self._dirty, False
        if old < 0:
            return
        try:
            if dirty:
                os.fsync(old)
        except OSError as exc:
            self._fail(f"fsync of a closed audit segment failed ({exc}); reopen the trail")
            raise
        finally:
            os.close(old)

    # --- durability -------------------------------------------------------------

    def _fsync_segment(self) -> None:
        """Fsync the segment being written (leader); a failure fails the trail."""
        self._dirty = False
        try:
            os.fsync(self._seg_fd)
        except OSError as exc:
            self._fail(
                f"fsync of audit segment {self._seg_name} failed ({exc}); records written "
                "since the last fsync may not survive a power loss; the trail refuses "
                "appends until it is reopened"
            )
            raise

    def _background_fsync(self) -> None:
        """The flusher's fsync: what was written since the last one."""
        with self._fd_lock:
            fd = self._seg_fd
            if fd < 0 or not self._dirty or self._broken is not None:
                return
            self._dirty = False
            try:
                os.fsync(fd)
            except OSError as exc:
                self._fail(
                    f"background fsync of audit segment {self._seg_name} failed ({exc}); records "
                    f"written in the last {self._fsync_interval}s may not survive a power loss; "
                    "the trail refuses appends until it is reopened"
                )

    # --- actions run by the leader ---------------------------------------------

    def _usable_or_raise(self, failure: KMSInternalException | None) -> None:
        if self._closed:
            raise KMSInternalException(_CLOSED)
        if self._broken is not None:
            raise KMSInternalException(self._broken)
        if failure is not None:
            raise failure

    def _act_checkpoint(self, failure: KMSInternalException | None) -> None:
        self._usable_or_raise(failure)
        try:
            self._write_checkpoint()
        except OSError as exc:
            raise _as_internal(exc) from exc

    def _act_write_signed(
        self,
        failure: KMSInternalException | None,
        view: _SealView,
        signed: list[tuple[dict[str, Any], str]],
    ) -> None:
        self._usable_or_raise(failure)
        try:
            self._write_signed(view, signed)
        except OSError as exc:
            raise _as_internal(exc) from exc

    def _act_flush(self, failure: KMSInternalException | None) -> None:
        if self._closed or self._broken is not None:
            self._usable_or_raise(None)
        if not self._sync_always:
            self._fsync_segment()
        if failure is not None:
            raise failure

    def _act_timed(self, failure: KMSInternalException | None) -> None:
        """Nothing itself: the leader checks after every batch whether a checkpoint is due."""

    def _act_close(self, failure: KMSInternalException | None) -> None:
        if self._closed:
            return
        problem: BaseException | None = failure if self._broken is None else None
        try:
            if failure is None and self._broken is None:
                try:
                    self._write_checkpoint()
                except WitnessError as exc:
                    # Durable and chained; the next writer's checkpoint seals them.
                    _log.warning("audit: records left unsealed at close: %s", exc)
                if self._dirty:
                    self._fsync_segment()
        except OSError as exc:
            problem = exc
        finally:
            self._closed = True
        if problem is not None:
            raise _as_internal(problem) from problem

    # --- checkpoints ------------------------------------------------------------

    def _checkpoint_if_due(self) -> None:
        if self._unsealed == 0:
            return
        interval = self._checkpoint_interval
        due = self._unsealed >= self._checkpoint_every or (
            interval is not None and time.monotonic() - self._last_checkpoint_at >= interval
        )
        if due and time.monotonic() >= self._signer_retry_at:
            if self._signer.needs_lines:
                self._seal_in_background()
                return
            try:
                self._write_checkpoint()
            except OSError as exc:
                # The records are written and chained; they are sealed later.
                _log.warning("audit checkpoint failed, will retry: %s", exc)

    def _timed_checkpoint(self) -> None:
        if self._closed or self._broken is not None:
            return
        self._submit(_Slot([], self._act_timed), check=False)

    def _write_checkpoint(self) -> None:
        """Sign and append a checkpoint sealing every record so far (leader, lock held).

        Raises:
            OSError: If it could not be made durable (the file is rolled back),
                or the records to seal could not be fsynced (the trail fails).
        """
        if self._unsealed == 0:
            return
        if self._signer.needs_lines:
            self._write_witnessed_checkpoints()
            return
        self._fsync_unsealed()
        checkpoint: dict[str, Any] = {
            "v": fmt.CHECKPOINT_VERSION,
            "seq": self._next_seq - 1,
            "count": self._unsealed,
            "fromTime": self._from_time,
            "toTime": self._to_time,
            "head": self._head.decode("ascii"),
            "segment": self._head_segment,
            "offset": self._head_offset,
            "prevSignature": self._last_signature,
            "createdAt": fmt.utc_now(),
        }
        self._append_checkpoint(checkpoint, self._signer.sign_checkpoint(checkpoint, ()))
        self._unsealed = 0
        self._from_time = self._to_time = None

    def _fsync_unsealed(self) -> None:
        """Make the records a checkpoint will seal durable (leader, lock held).

        Unsealed records are all in the segment being written (a segment is
        sealed before it is closed), except in a trail left so by a crash:
        then fsync the head's segment too.

        Raises:
            OSError: The fsync failed (the trail fails).
        """
        self._fsync_segment()
        if self._head_segment != self._seg_name:
            try:
                fd = fsutil.open_private_file(self._dir / self._head_segment, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._fail(f"fsync of audit segment {self._head_segment} failed ({exc})")
                raise

    def _append_checkpoint(self, checkpoint: dict[str, Any], signature: str) -> None:
        """Write a signed checkpoint durably, then export it (leader, lock held).

        Raises:
            OSError: If it could not be made durable (the file is rolled back).
        """
        checkpoint["signature"] = signature
        data = fmt.canonical(checkpoint) + b"\n"
        start = self._ckpt_size
        try:
            _write_all(self._ckpt_fd, data)
            os.fsync(self._ckpt_fd)
        except BaseException:
            self._roll_back(self._ckpt_fd, start, "checkpoint")
            raise
        self._ckpt_size = start + len(data)
        self._last_signature = signature
        self._sealed_segment, self._sealed_offset = checkpoint["segment"], checkpoint["offset"]
        self._last_checkpoint_at = time.monotonic()
        if self._export is not None:
            self._export.write(data)

    def _seal_view(self) -> _SealView:
        """What to seal now: from the last checkpoint to the head (lock held)."""
        return _SealView(
            self._sealed_segment,
            self._sealed_offset,
            self._head_segment,
            self._head_offset,
            self._next_seq - self._unsealed,
            self._unsealed,
            self._last_signature,
            self._from_time,
            self._to_time,
        )

    def _entries(self, view: _SealView) -> list[tuple[str, int, bytes]]:
        """(segment, end offset, line) of every record the view seals.

        Safe without the lock: lines up to a head once seen are never changed.
        """
        names = [name for _, name in fmt.list_segments(self._dir)]
        start = names.index(view.sealed_segment) if view.sealed_segment in names else 0
        entries: list[tuple[str, int, bytes]] = []
        for name in names[start:]:
            begin = view.sealed_offset if name == view.sealed_segment else 0
            for offset, line, complete in fmt.iter_lines(self._dir / name, begin):
                end = offset + len(line) + 1
                if not complete or (name == view.head_segment and end > view.head_offset):
                    break
                entries.append((name, end, line))
            if name == view.head_segment:
                break
        if len(entries) != view.records:
            raise OSError(f"{view.records} records are unsealed but {len(entries)} were found")
        return entries

    def _witness_signatures(
        self, view: _SealView
    ) -> tuple[list[tuple[dict[str, Any], str]], WitnessError | None]:
        """Checkpoints for the view, signed by the witness, at most MAX_LINES each.

        Returns what was signed, in order, and the error that stopped it, if any.

        Raises:
            OSError: The records to seal cannot be read.
        """
        entries = self._entries(view)
        signed: list[tuple[dict[str, Any], str]] = []
        first, previous = view.first_seq, view.last_signature
        while entries:
            chunk, entries = entries[:MAX_LINES], entries[MAX_LINES:]
            lines = [line for _, _, line in chunk]
            if len(chunk) < view.records:
                low, high = checkpoint_times(lines)  # one of several: its own range
            else:
                low, high = view.from_time, view.to_time
            checkpoint: dict[str, Any] = {
                "v": fmt.CHECKPOINT_VERSION,
                "seq": first + len(chunk) - 1,
                "count": len(chunk),
                "fromTime": low,
                "toTime": high,
                "head": fmt.line_hash(lines[-1]),
                "segment": chunk[-1][0],
                "offset": chunk[-1][1],
                "prevSignature": previous,
                "createdAt": fmt.utc_now(),
            }
            try:
                signature = self._signer.sign_checkpoint(checkpoint, lines)
            except WitnessError as exc:
                self._signer_retry_at = time.monotonic() + 1.0
                return signed, exc
            signed.append((checkpoint, signature))
            first += len(chunk)
            previous = signature
        return signed, None

    def _write_signed(self, view: _SealView, signed: list[tuple[dict[str, Any], str]]) -> None:
        """Append checkpoints signed for ``view`` (leader, lock held, in sync).

        Nothing is written when another checkpoint was written since the view
        was taken: the witness's next checkpoint covers these records too.

        Raises:
            OSError: A checkpoint could not be made durable, or the records
                could not be fsynced.
        """
        if not signed or self._last_signature != view.last_signature:
            return
        self._fsync_unsealed()
        for checkpoint, signature in signed:
            self._append_checkpoint(checkpoint, signature)
            self._unsealed -= checkpoint["count"]
        if self._unsealed:
            lines = [line for _, _, line in self._entries(self._seal_view())]
            self._from_time, self._to_time = checkpoint_times(lines)
        else:
            self._from_time = self._to_time = None

    def _write_witnessed_checkpoints(self) -> None:
        """Seal every unsealed record through the witness now (leader, lock held).

        Raises:
            OSError: The witness refused or is unreachable (retried after a
                second), or a checkpoint could not be made durable.
        """
        view = self._seal_view()
        signed, error = self._witness_signatures(view)
        self._write_signed(view, signed)
        if error is not None:
            raise error

    def _seal_in_background(self) -> None:
        """Start getting the due checkpoint signed outside the lock (leader).

        The witness's round trip (reading the lines back, sending them, its
        re-hashing) takes tens of milliseconds per 10,000 records; the writers
        go on meanwhile, and the signed checkpoint is written at a later turn.
        """
        sealer = self._sealer
        if sealer is not None and sealer.is_alive():
            return
        self._sealer = threading.Thread(
            target=_background_seal,
            args=(weakref.ref(self), self._seal_view()),
            name="kmscore-audit-sealer",
            daemon=True,
        )
        self._sealer.start()

    # --- sharing the chain with other writers --------------------------------------

    def _sync_shared(self) -> None:
        """Make this writer's view current (lock held); see the module docstring.

        Raises:
            OSError: If the files cannot be read or the torn tail cut.
            _Damaged: If the trail is not what writers and crashes leave.
        """
        token = self._token
        if self._in_sync and os.pread(self._lock_fd, self._token_peek, 0) == token:
            return
        self._in_sync = False
        # Claim the files before changing any, so that every other writer catches up.
        os.pwrite(self._lock_fd, token, 0)
        os.ftruncate(self._lock_fd, len(token))
        self._catch_up()
        self._in_sync = True

    def _catch_up(self) -> None:
        """Follow the chain from what this writer knows to its current end."""
        size = os.fstat(self._ckpt_fd).st_size
        if size == self._ckpt_size and (size == 0 or self._last_signature is not None):
            last = None  # no checkpoint since this writer's last look
            unchanged = True
        else:
            last = self._load_last_checkpoint()
            unchanged = False
        segments = fmt.list_segments(self._dir)
        names = [name for _, name in segments]
        if unchanged:
            if self._head_offset > 0:
                self._check_head(names)
        elif last is not None and last["signature"] != self._last_signature:
            # A checkpoint may seal less than this writer has seen (one signed
            # in the background seals what was there when it started): adopt
            # it and follow the chain on from it. Never one before what this
            # writer already saw sealed.
            sealed_through = self._next_seq - 1 - self._unsealed
            if self._next_seq > 0 and last["seq"] < sealed_through:
                raise _Damaged(
                    f"the last checkpoint seals records through seq {last['seq']}, but this "
                    f"writer saw records sealed through seq {sealed_through}"
                )
            self._adopt_checkpoint(last, names)
        elif last is None and self._last_signature is not None:
            raise _Damaged(f"{fmt.CHECKPOINTS_FILE} lost the checkpoints it had")
        elif self._head_offset > 0:
            self._check_head(names)
        if self._head_segment:
            if self._head_segment not in names:
                raise _Damaged(f"segment {self._head_segment} is missing")
            index, offset = names.index(self._head_segment), self._head_offset
        else:
            index, offset = 0, 0
        for position in range(index, len(segments)):
            first, name = segments[position]
            start = offset if position == index else 0
            if start == 0 and first != self._next_seq:
                raise _Damaged(f"{name} should start at seq {self._next_seq}")
            self._scan_segment(name, start, is_last=position == len(segments) - 1)
        if segments:
            self._use_segment(segments[-1][1])
        else:
            name = fmt.segment_name(self._next_seq)
            fd = fsutil.create_private_file(self._dir / name, _APPEND)
            try:
                fsutil.fsync_dir(self._dir)
            except BaseException:
                os.close(fd)
                raise
            self._swap_segment(fd, name)
            self._seg_size = 0

    def _use_segment(self, name: str) -> None:
        """Write to segment ``name`` from now on (it may be the current one)."""
        path = self._dir / name
        if name == self._seg_name and self._seg_fd >= 0:
            info = os.fstat(self._seg_fd)
            if info.st_ino == os.stat(path, follow_symlinks=False).st_ino:
                self._seg_size = info.st_size
                return
        fd = fsutil.open_private_file(path, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._swap_segment(fd, name)
        self._seg_size = size

    def _check_head(self, names: list[str]) -> None:
        """The record this writer last saw must still be where it was."""
        if self._head_segment not in names:
            raise _Damaged(f"segment {self._head_segment} holding seq {self._next_seq - 1} is gone")
        fd = os.open(self._dir / self._head_segment, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            line = fmt.read_line_ending_at(fd, self._head_offset)
        except ValueError as exc:
            raise _Damaged(f"record seq {self._next_seq - 1} is gone: {exc}") from exc
        finally:
            os.close(fd)
        if fmt.line_hash(line).encode("ascii") != self._head:
            raise _Damaged(f"record seq {self._next_seq - 1} was changed")

    # --- opening and recovery ---------------------------------------------------

    def _open_files(self) -> None:
        for path, attr in (
            (self._dir / fmt.LOCK_FILE, "_lock_fd"),
            (self._dir / fmt.CHECKPOINTS_FILE, "_ckpt_fd"),
        ):
            flags = os.O_RDWR if attr == "_lock_fd" else os.O_RDWR | os.O_APPEND
            try:
                fd = fsutil.create_private_file(path, flags)
            except FileExistsError:
                fd = fsutil.open_private_file(path, flags)
            else:
                try:
                    fsutil.fsync_dir(self._dir)
                except BaseException:
                    os.close(fd)
                    raise
            setattr(self, attr, fd)

    def _load_last_checkpoint(self) -> dict[str, Any] | None:
        size = os.fstat(self._ckpt_fd).st_size
        tail = os.pread(self._ckpt_fd, min(size, 1 << 16), max(0, size - (1 << 16)))
        cut = tail.rfind(b"\n")
        if cut < 0 and size > len(tail):
            raise _Damaged(f"{fmt.CHECKPOINTS_FILE} ends in an overlong unterminated line")
        if cut + 1 < len(tail):  # an unterminated last line: a torn, unacknowledged write
            self._truncate(self._ckpt_fd, size - (len(tail) - cut - 1), fmt.CHECKPOINTS_FILE)
            size -= len(tail) - cut - 1
        self._ckpt_size = size
        if size == 0:
            return None
        line = fmt.read_line_ending_at(self._ckpt_fd, size)
        try:
            checkpoint = json.loads(line)
        except ValueError:
            checkpoint = None
        if not isinstance(checkpoint, dict) or set(checkpoint) != fmt.CHECKPOINT_FIELDS:
            raise _Damaged(f"the last line of {fmt.CHECKPOINTS_FILE} is not a checkpoint")
        return checkpoint

    def _adopt_checkpoint(self, last: dict[str, Any], names: list[str]) -> None:
        try:
            signature = bytes.fromhex(last["signature"])
        except (ValueError, TypeError):
            signature = b""
        if not self._signer.accepts(fmt.checkpoint_message(last), signature):
            raise _Damaged("the last checkpoint's signature does not verify with this signing key")
        if last["segment"] not in names:
            raise _Damaged(f"segment {last['segment']} sealed by the last checkpoint is missing")
        fd = os.open(self._dir / last["segment"], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            line = fmt.read_line_ending_at(fd, last["offset"])
        except (ValueError, OSError) as exc:
            raise _Damaged(f"the record sealed by the last checkpoint is gone: {exc}") from exc
        finally:
            os.close(fd)
        if fmt.line_hash(line) != last["head"]:
            raise _Damaged(f"record seq {last['seq']} differs from the one its checkpoint sealed")
        self._next_seq, self._head = last["seq"] + 1, last["head"].encode("ascii")
        self._head_segment, self._head_offset = last["segment"], last["offset"]
        self._sealed_segment, self._sealed_offset = last["segment"], last["offset"]
        self._last_signature = last["signature"]
        self._unsealed = 0
        self._from_time = self._to_time = None
        self._last_checkpoint_at = time.monotonic()

    def _scan_segment(self, name: str, start: int, *, is_last: bool) -> None:
        """Follow the chain through a segment from ``start``; cut a torn tail."""
        path = self._dir / name
        torn_at: int | None = None
        head = self._head.decode("ascii")
        for offset, line, complete in fmt.iter_lines(path, start):
            if torn_at is not None:
                if complete and _parses_as_object(line):
                    raise _Damaged(f"{name}: a record follows damaged bytes at offset {torn_at}")
                continue
            record: object = None
            if complete:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
            if isinstance(record, dict):
                if record.get("seq") != self._next_seq or record.get("prevHash") != head:
                    raise _Damaged(f"{name}: the record at offset {offset} breaks the chain")
                head = fmt.line_hash(line)
                self._accept(name, offset + len(line) + 1, head, record.get("eventTime"))
            elif is_last:
                torn_at = offset
            else:
                raise _Damaged(f"{name}: damaged line at offset {offset}")
        if torn_at is not None:
            fd = fsutil.open_private_file(path, os.O_WRONLY)
            try:
                self._truncate(fd, torn_at, name)
            finally:
                os.close(fd)

    def _accept(self, name: str, end: int, head: str, event_time: object) -> None:
        self._head = head.encode("ascii")
        self._next_seq += 1
        self._head_segment, self._head_offset = name, end
        self._unsealed += 1
        if isinstance(event_time, str):
            low = self._from_time
            high = self._to_time
            self._from_time = event_time if low is None else min(low, event_time)
            self._to_time = event_time if high is None else max(high, event_time)

    def _truncate(self, fd: int, size: int, name: str) -> None:
        _log.warning("audit: cutting an unacknowledged torn tail off %s at byte %d", name, size)
        os.ftruncate(fd, size)
        os.fsync(fd)

    def _close_files(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._fd_lock:
            for attr in ("_seg_fd", "_ckpt_fd", "_lock_fd"):
                fd = getattr(self, attr)
                if fd >= 0:
                    setattr(self, attr, -1)
                    try:
                        os.close(fd)
                    except OSError as exc:
                        _log.warning("audit: closing a file failed: %s", exc)
        _open_trails.discard(self)

    def _forked(self) -> None:
        """In a forked child: refuse everything, keep nothing shared with the parent.

        The child's copies of the files are closed at once: a copy of the lock
        file would keep the parent's flock alive should the parent die holding it.
        """
        self._qlock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._pending = []
        self._busy = False
        self._broken = _FORKED
        for attr in ("_seg_fd", "_ckpt_fd", "_lock_fd"):
            fd = getattr(self, attr)
            setattr(self, attr, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _distrust_view(self) -> None:
        """After an exception mid-write: rebuild the view from the files next time.

        The state may have been left half updated, so the next writer turn
        recovers as an open does (from the last checkpoint), not from this
        writer's head.
        """
        self._in_sync = False
        self._next_seq = 0
        self._head = fmt.GENESIS_HASH.encode("ascii")
        self._head_segment = ""
        self._head_offset = 0
        self._unsealed = 0
        self._from_time = self._to_time = None
        self._last_signature = None
        self._ckpt_size = -1  # makes the checkpoints file look changed


def _as_internal(error: BaseException) -> KMSInternalException:
    if isinstance(error, KMSInternalException):
        return KMSInternalException(error.message)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return KMSInternalException(f"the audit record could not be written: {reason}")


class _SealView(NamedTuple):
    """The records one checkpoint (or a run of them) will seal."""

    sealed_segment: str
    sealed_offset: int
    head_segment: str
    head_offset: int
    first_seq: int
    records: int
    last_signature: str | None
    from_time: str | None
    to_time: str | None


def _background_seal(ref: weakref.ref[AuditTrail], view: _SealView) -> None:
    """Get a checkpoint signed by the witness, then write it at the writers' next turn."""
    trail = ref()
    if trail is None:
        return
    try:
        signed, error = trail._witness_signatures(view)
        if error is not None:
            _log.warning("audit checkpoint not signed, will retry: %s", error)
        if signed:
            trail._submit(_Slot([], lambda failure: trail._act_write_signed(failure, view, signed)))
    except (OSError, KMSInternalException) as exc:
        _log.warning("audit checkpoint failed, will retry: %s", exc)


def _timer(ref: weakref.ref[AuditTrail], stop: threading.Event, interval: float) -> None:
    """Seal records that have waited ``interval`` seconds; ends with the trail."""
    tick = min(max(interval / 4, 0.05), 5.0)
    while not stop.wait(tick):
        trail = ref()
        if trail is None:
            return
        try:
            trail._timed_checkpoint()
        except Exception:  # a timer must never die silently mid-run
            _log.exception("audit checkpoint timer failed")
        del trail


def _flusher(
    ref: weakref.ref[AuditTrail], wake: threading.Event, stop: threading.Event, interval: float
) -> None:
    """Fsync what was written, at most every ``interval`` seconds; ends with the trail."""
    last = 0.0
    while True:
        wake.wait()
        if stop.is_set():
            return
        delay = last + interval - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        trail = ref()
        if trail is None:
            return
        wake.clear()  # before the dirty flag is read: a later write wakes us again
        last = time.monotonic()
        try:
            trail._background_fsync()
        except Exception:  # pragma: no cover - _background_fsync handles OSError
            _log.exception("audit flusher failed")
        del trail
