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

Code layout
-----------
:class:`AuditTrail` is this module's public API over three layers, each a base
class in its own module that only calls the ones below it:
:mod:`kmscore.audit._segments` (the files, fsyncs, rollback, recovery scans),
:mod:`kmscore.audit._checkpoints` (sealing, witness runs, segment rotation,
catching up with other writers) and :mod:`kmscore.audit._commit` (the queue,
the leader's turn, the background threads).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from nacl.signing import SigningKey

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.audit._commit import GroupCommit, Record, Slot, flusher, timer
from kmscore.audit._segments import Damaged
from kmscore.audit.event import AuditEvent, scrub_event
from kmscore.audit.export import CheckpointExport
from kmscore.audit.witness import CheckpointSigner, LocalSigner
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

_log = logging.getLogger(__name__)


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


_open_trails: weakref.WeakSet[AuditTrail] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for trail in list(_open_trails):
        trail._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditTrail(GroupCommit):
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
        self._pending: list[Slot] = []
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
        except (OSError, Damaged) as exc:
            self._close_files()
            raise KMSInternalException(
                f"cannot open the audit trail in {self._dir}: {exc}"
            ) from exc

        _open_trails.add(self)
        if checkpoint_interval is not None:
            threading.Thread(
                target=timer,
                args=(weakref.ref(self), self._stop, checkpoint_interval),
                name="kmscore-audit-checkpoint",
                daemon=True,
            ).start()
        if not self._sync_always:
            threading.Thread(
                target=flusher,
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
            fsutil.ensure_private_dir(data)  # the constructor makes audit/ inside it
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
            self._submit(Slot([record]))
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
            self._submit(Slot(records))

    def checkpoint(self) -> None:
        """Seal every record written so far (by any writer) with a signed checkpoint now.

        Does nothing when every record is already sealed.

        Raises:
            KMSInternalException: If the checkpoint could not be made durable,
                or the trail is closed or failed.
        """
        self._submit(Slot([], self._act_checkpoint))

    def flush(self) -> None:
        """Wait until every append queued before this call is fsynced.

        Raises:
            KMSInternalException: If the fsync failed, or the trail is closed
                or failed.
        """
        self._submit(Slot([], self._act_flush))

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
            self._submit(Slot([], self._act_close), check=False)
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
