"""The audit trail writer: hash-chained JSON Lines segments, signed checkpoints.

Contract: :meth:`AuditTrail.append` returns only after the record is written and
fsynced; if that cannot be done it raises :class:`KMSInternalException` and the
trail holds no trace of the record (fail closed). The trail is append-only.

Why checkpoints live in their own file (``checkpoints.jsonl``) and not inline
between records: a checkpoint exists to prove how far the trail reached. Inline,
the checkpoint sealing records 0..n sits after record n, so cutting the tail
removes the checkpoint together with the records it sealed, and the shortened
trail looks whole. In a separate file, the last checkpoint still names seq n and
the hash of its line after the records are cut, and verification fails. The
records stay pure CloudTrail-shaped events for ``jq``, and the small checkpoint
file is all a verifier needs to pin (see ``anchor`` in :func:`verify`). Cutting
both files at once is only detectable against a checkpoint kept elsewhere.

Ordering makes the two files consistent after any crash: a checkpoint is
written only after the records it seals are fsynced, and a segment is closed
(a new one created) only after a checkpoint sealed it.

Group commit: callers encode and scrub their events on their own thread, then
queue them. The first caller to find no writer active becomes the leader, takes
the whole queue, writes it with one ``write`` and one ``fsync``, and wakes the
others; callers that queued meanwhile are written by the next leader. No thread
is dedicated to writing, so an idle trail costs nothing.

Crash recovery at open: bytes after the last acknowledged record can be torn
(an unterminated line, or a run of lines that are not JSON objects up to the
end of the file). They were never acknowledged and are cut off. A complete
JSON line that does not continue the chain is never cut: it is not a crash
artifact, so opening fails and ``verify`` names the place.

One writer per trail: the writer holds an exclusive ``flock`` on ``audit/LOCK``
for its lifetime; a second writer, in this or another process, fails at once
with :class:`KMSInternalException` instead of forking the chain. Readers
(``verify``, ``query``) take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from kmscore.audit import _format as fmt
from kmscore.audit.event import scrub_event
from kmscore.errors import KMSInternalException

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "AuditTrail",
]

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
DEFAULT_CHECKPOINT_EVERY: Final = 1000
DEFAULT_CHECKPOINT_INTERVAL: Final = 60.0

_log = logging.getLogger(__name__)


class _Slot:
    """One caller's records waiting for the leader."""

    __slots__ = ("done", "error", "records")

    def __init__(self, records: list[tuple[bytes, str | None]]) -> None:
        self.records = records
        self.done = False
        self.error: OSError | KMSInternalException | None = None


class _Damaged(Exception):
    """The trail on disk is not what a crash can leave; opening must stop."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _encode(event: Mapping[str, Any]) -> tuple[bytes, str | None]:
    if not isinstance(event, Mapping):
        raise TypeError(f"an audit event is a mapping, not {type(event).__name__}")
    clean = scrub_event(event)
    event_time = clean.get("eventTime")
    return fmt.encode_event(clean), event_time if isinstance(event_time, str) else None


def _parses_as_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class AuditTrail:
    """Writer of one tamper-evident audit trail (see the module docstring).

    Thread-safe. Use :meth:`open` for a data directory; the constructor is for
    callers that manage the key themselves.
    """

    def __init__(
        self,
        audit_dir: str | os.PathLike[str],
        signing_key: SigningKey,
        *,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
    ) -> None:
        """Open (creating if needed) the trail in ``audit_dir`` and recover its head.

        Args:
            audit_dir: The records directory (created 0700 if missing).
            signing_key: The Ed25519 key that signs checkpoints.
            max_segment_bytes: A segment is closed at the first batch that finds
                it at least this large.
            checkpoint_every: Write a checkpoint once this many records are unsealed.
            checkpoint_interval: Seconds after which unsealed records are sealed
                by a background timer; None for no timer.

        Raises:
            ValueError: If a limit is not positive.
            KMSInternalException: If the directory is unsafe or unusable, another
                writer holds the trail, the signing key does not match the
                checkpoints, or the trail is damaged beyond a torn tail.
        """
        if max_segment_bytes < 1 or checkpoint_every < 1:
            raise ValueError("max_segment_bytes and checkpoint_every must be positive")
        if checkpoint_interval is not None and checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be positive or None")
        self._dir = Path(audit_dir)
        self._key = signing_key
        self._max_segment_bytes = max_segment_bytes
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval

        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Slot] = []
        self._busy = False
        self._closed = False
        self._broken: str | None = None

        self._lock_fd = -1
        self._ckpt_fd = -1
        self._ckpt_size = 0
        self._seg_fd = -1
        self._seg_name = ""
        self._seg_size = 0
        self._next_seq = 0
        self._head = fmt.GENESIS_HASH
        self._head_segment = ""
        self._head_offset = 0
        self._unsealed = 0
        self._from_time: str | None = None
        self._to_time: str | None = None
        self._last_signature: str | None = None
        self._last_checkpoint_at = time.monotonic()

        try:
            fmt.ensure_dir(self._dir)
            self._take_lock()
            self._recover()
        except (OSError, _Damaged) as exc:
            self._close_files()
            raise KMSInternalException(
                f"cannot open the audit trail in {self._dir}: {exc}"
            ) from exc

        self._stop_timer = threading.Event()
        if checkpoint_interval is not None:
            threading.Thread(
                target=_timer,
                args=(weakref.ref(self), self._stop_timer, checkpoint_interval),
                name="kmscore-audit-checkpoint",
                daemon=True,
            ).start()

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
    ) -> Self:
        """Open the trail of a data directory, creating the trail and its key on first use.

        Creates ``<data_dir>/audit/`` (0700), ``<data_dir>/audit-signing.key``
        (0600, ``O_CREAT|O_EXCL|O_NOFOLLOW``) and ``<data_dir>/audit-signing.pub``.

        Args:
            data_dir: The service's data directory (created 0700 if missing).
            max_segment_bytes: See :class:`AuditTrail`.
            checkpoint_every: See :class:`AuditTrail`.
            checkpoint_interval: See :class:`AuditTrail`.

        Returns:
            The open trail.

        Raises:
            KMSInternalException: If the directory, key or trail is unusable,
                or another writer holds the trail.
        """
        from kmscore.audit.keys import load_or_create_signing_key

        data = Path(data_dir)
        try:
            data.mkdir(mode=fmt.DIR_MODE, parents=True, exist_ok=True)
            fmt.ensure_dir(data / fmt.AUDIT_DIR)
        except OSError as exc:
            raise KMSInternalException(f"cannot create the audit directory: {exc}") from exc
        key = load_or_create_signing_key(data)
        return cls(
            data / fmt.AUDIT_DIR,
            key,
            max_segment_bytes=max_segment_bytes,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
        )

    # --- public API ---------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence number the next record will get."""
        with self._cond:
            return self._next_seq

    @property
    def head_hash(self) -> str:
        """The chain hash of the last record (the genesis value if none)."""
        with self._cond:
            return self._head

    def append(self, event: Mapping[str, Any]) -> None:
        """Scrub one event and make it durable as the next record.

        Args:
            event: The event, normally from :func:`kmscore.audit.build_event`.

        Raises:
            TypeError: If ``event`` is not a mapping.
            KMSInternalException: If the record could not be made durable or the
                trail is closed; then the trail holds no trace of it.
        """
        self.append_many((event,))

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Make several events durable as consecutive records, all or none.

        Args:
            events: The events, in order.

        Raises:
            TypeError: If an event is not a mapping.
            KMSInternalException: If the records could not be made durable or the
                trail is closed; then the trail holds none of them.
        """
        records = [_encode(event) for event in events]
        if not records:
            return
        slot = _Slot(records)
        with self._cond:
            self._check_usable()
            self._pending.append(slot)
            while not slot.done and self._busy:
                self._cond.wait()
            if not slot.done:
                self._busy = True
                batch, self._pending = self._pending, []
        if not slot.done:
            self._lead(batch, self._checkpoint_if_due)
        if slot.error is not None:
            raise _as_internal(slot.error) from slot.error

    def checkpoint(self) -> None:
        """Seal the records written so far with a signed checkpoint now.

        Does nothing when every record is already sealed.

        Raises:
            KMSInternalException: If the checkpoint could not be made durable or
                the trail is closed.
        """
        with self._cond:
            self._check_usable()
        self._exclusive(self._write_checkpoint_or_raise)

    def flush(self) -> None:
        """Wait until every append queued before this call is durable.

        Raises:
            KMSInternalException: If the trail is closed.
        """
        with self._cond:
            self._check_usable()
        self._exclusive(lambda: None)

    def close(self) -> None:
        """Seal the unsealed records with a checkpoint, then release the trail.

        Idempotent. The files and the lock are released even when the final
        checkpoint fails.

        Raises:
            KMSInternalException: If the final checkpoint could not be written.
        """
        with self._cond:
            if self._closed:
                return
        self._stop_timer.set()
        failure: KMSInternalException | None = None

        def finish() -> None:
            nonlocal failure
            if self._broken is None:
                try:
                    self._write_checkpoint()
                except OSError as exc:
                    failure = _as_internal(exc)
            self._closed = True

        try:
            self._exclusive(finish)
        finally:
            self._close_files()
        if failure is not None:
            raise failure

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

    def _check_usable(self) -> None:
        if self._closed:
            raise KMSInternalException("the audit trail is closed")
        if self._broken is not None:
            raise KMSInternalException(self._broken)

    def _exclusive(self, action: Callable[[], None]) -> None:
        """Become the writer, commit what is queued, run ``action``, step down."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
            batch, self._pending = self._pending, []
        self._lead(batch, action)

    def _lead(self, batch: list[_Slot], then: Callable[[], None]) -> None:
        try:
            if batch:
                self._commit(batch)
            then()
        finally:
            with self._cond:
                for slot in batch:
                    if not slot.done:  # only after an unexpected exception
                        slot.error = KMSInternalException("the audit writer failed")
                        slot.done = True
                self._busy = False
                self._cond.notify_all()

    def _commit(self, batch: list[_Slot]) -> None:
        """Write and fsync a batch as consecutive records (busy held)."""
        if self._broken is not None or self._closed:
            error = KMSInternalException(self._broken or "the audit trail is closed")
            for slot in batch:
                slot.error, slot.done = error, True
            return
        self._rotate_if_full()
        seq, head = self._next_seq, self._head
        lines: list[bytes] = []
        times: list[str] = []
        for slot in batch:
            for body, event_time in slot.records:
                line = fmt.record_line(seq, head, body)
                head = fmt.line_hash(line)
                lines.append(line)
                seq += 1
                if event_time is not None:
                    times.append(event_time)
        data = b"\n".join(lines) + b"\n"
        start = self._seg_size
        try:
            _write_all(self._seg_fd, data)
            os.fsync(self._seg_fd)
        except BaseException as exc:
            # Also on KeyboardInterrupt: lines on disk that the head does not know
            # would fork the chain at the next write.
            self._roll_back(self._seg_fd, start, "segment")
            if not isinstance(exc, OSError):
                raise
            for slot in batch:
                slot.error, slot.done = exc, True
            return
        with self._cond:
            self._unsealed += seq - self._next_seq
            self._next_seq, self._head = seq, head
            self._seg_size = start + len(data)
            self._head_segment, self._head_offset = self._seg_name, self._seg_size
            for slot in batch:
                slot.done = True
        if times:
            low, high = min(times), max(times)
            self._from_time = low if self._from_time is None else min(self._from_time, low)
            self._to_time = high if self._to_time is None else max(self._to_time, high)

    def _roll_back(self, fd: int, size: int, what: str) -> None:
        """Cut a failed write off so no partial line stays; else stop the trail."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            self._broken = (
                f"the audit {what} file could not be rolled back after a failed write ({exc}); "
                "the trail refuses appends until it is reopened"
            )
            _log.error("%s", self._broken)

    def _rotate_if_full(self) -> None:
        if self._seg_size < self._max_segment_bytes:
            return
        name = fmt.segment_name(self._next_seq)
        try:
            self._write_checkpoint()
            fd = fmt.create_file(self._dir / name)
        except OSError as exc:
            _log.warning("audit segment %s stays open past its size limit: %s", self._seg_name, exc)
            return
        try:
            fmt.fsync_dir(self._dir)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._dir / name)
            _log.warning("audit segment %s stays open past its size limit: %s", self._seg_name, exc)
            return
        os.close(self._seg_fd)
        self._seg_fd, self._seg_name, self._seg_size = fd, name, 0

    # --- checkpoints ------------------------------------------------------------

    def _checkpoint_if_due(self) -> None:
        interval = self._checkpoint_interval
        due = self._unsealed >= self._checkpoint_every or (
            interval is not None
            and self._unsealed > 0
            and time.monotonic() - self._last_checkpoint_at >= interval
        )
        if due and self._broken is None and not self._closed:
            try:
                self._write_checkpoint()
            except OSError as exc:
                # The records are durable and chained; they are sealed later.
                _log.warning("audit checkpoint failed, will retry: %s", exc)

    def _timed_checkpoint(self) -> None:
        with self._cond:
            if self._closed or self._broken is not None:
                return
        self._exclusive(self._checkpoint_if_due)

    def _write_checkpoint_or_raise(self) -> None:
        self._check_usable()
        try:
            self._write_checkpoint()
        except OSError as exc:
            raise _as_internal(exc) from exc

    def _write_checkpoint(self) -> None:
        """Sign and append a checkpoint sealing every record so far (busy held).

        Raises:
            OSError: If it could not be made durable (the file is rolled back).
        """
        if self._unsealed == 0:
            return
        checkpoint: dict[str, Any] = {
            "v": fmt.CHECKPOINT_VERSION,
            "seq": self._next_seq - 1,
            "count": self._unsealed,
            "fromTime": self._from_time,
            "toTime": self._to_time,
            "head": self._head,
            "segment": self._head_segment,
            "offset": self._head_offset,
            "prevSignature": self._last_signature,
            "createdAt": fmt.utc_now(),
        }
        signature = self._key.sign(fmt.checkpoint_message(checkpoint)).signature.hex()
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
        self._unsealed = 0
        self._from_time = self._to_time = None
        self._last_checkpoint_at = time.monotonic()

    # --- opening and recovery ---------------------------------------------------

    def _take_lock(self) -> None:
        path = self._dir / fmt.LOCK_FILE
        try:
            fd = fmt.create_file(path, os.O_RDWR)
        except FileExistsError:
            fd = fmt.open_existing(path, os.O_RDWR)
        self._lock_fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise OSError(
                errno.EWOULDBLOCK, f"another writer (pid {holder}) holds the trail"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def _recover(self) -> None:
        path = self._dir / fmt.CHECKPOINTS_FILE
        try:
            self._ckpt_fd = fmt.create_file(path, os.O_RDWR | os.O_APPEND)
            fmt.fsync_dir(self._dir)
        except FileExistsError:
            self._ckpt_fd = fmt.open_existing(path, os.O_RDWR | os.O_APPEND)
        last = self._load_last_checkpoint()
        segments = fmt.list_segments(self._dir)
        start_index, start_offset = 0, 0
        if last is not None:
            self._adopt_checkpoint(last, segments)
            names = [name for _, name in segments]
            start_index, start_offset = names.index(last["segment"]), last["offset"]
        for index in range(start_index, len(segments)):
            first, name = segments[index]
            offset = start_offset if index == start_index else 0
            if offset == 0 and first != self._next_seq:
                raise _Damaged(f"{name} should start at seq {self._next_seq}")
            self._scan_segment(name, offset, is_last=index == len(segments) - 1)
        if segments:
            name = segments[-1][1]
            self._seg_fd = fmt.open_existing(self._dir / name, os.O_WRONLY | os.O_APPEND)
            self._seg_name, self._seg_size = name, os.fstat(self._seg_fd).st_size
        else:
            self._seg_name = fmt.segment_name(0)
            self._seg_fd = fmt.create_file(self._dir / self._seg_name)
            fmt.fsync_dir(self._dir)

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

    def _adopt_checkpoint(self, last: dict[str, Any], segments: list[tuple[int, str]]) -> None:
        verify_key: VerifyKey = self._key.verify_key
        try:
            verify_key.verify(fmt.checkpoint_message(last), bytes.fromhex(last["signature"]))
        except (BadSignatureError, ValueError, TypeError) as exc:
            raise _Damaged(
                "the last checkpoint's signature does not verify with this signing key"
            ) from exc
        if last["segment"] not in {name for _, name in segments}:
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
        self._next_seq, self._head = last["seq"] + 1, last["head"]
        self._head_segment, self._head_offset = last["segment"], last["offset"]
        self._last_signature = last["signature"]

    def _scan_segment(self, name: str, start: int, *, is_last: bool) -> None:
        """Follow the chain through a segment's unsealed records; cut a torn tail."""
        path = self._dir / name
        torn_at: int | None = None
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
                if record.get("seq") != self._next_seq or record.get("prevHash") != self._head:
                    raise _Damaged(f"{name}: the record at offset {offset} breaks the chain")
                self._accept(name, offset + len(line) + 1, line, record.get("eventTime"))
            elif is_last:
                torn_at = offset
            else:
                raise _Damaged(f"{name}: damaged line at offset {offset}")
        if torn_at is not None:
            fd = fmt.open_existing(path, os.O_WRONLY)
            try:
                self._truncate(fd, torn_at, name)
            finally:
                os.close(fd)

    def _accept(self, name: str, end: int, line: bytes, event_time: object) -> None:
        self._head = fmt.line_hash(line)
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
        for attr in ("_seg_fd", "_ckpt_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                try:
                    os.close(fd)  # closing the lock file releases the flock
                except OSError as exc:
                    _log.warning("audit: closing a file failed: %s", exc)


def _as_internal(error: BaseException) -> KMSInternalException:
    if isinstance(error, KMSInternalException):
        return KMSInternalException(error.message)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return KMSInternalException(f"the audit record could not be made durable: {reason}")


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
