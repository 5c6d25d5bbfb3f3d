"""Group commit of the audit trail: callers queue, one leader writes the batch.

The top layer below :class:`~kmscore.audit.trail.AuditTrail`'s public API:
the queue, the leader's turn under the shared ``flock`` (catch up, write the
batch with one ``write``, run the queued actions, checkpoint when due), the
actions themselves, and the background threads (flusher, checkpoint timer,
witness sealer) that reach the trail only through a weak reference.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from kmscore.audit._checkpoints import Checkpoints, SealView
from kmscore.audit._segments import Damaged
from kmscore.audit.witness import WitnessError
from kmscore.errors import KMSInternalException
from kmscore.fsutil import write_all

__all__ = ["CLOSED", "GroupCommit", "Record", "Slot", "as_internal", "flusher", "timer"]

_log = logging.getLogger("kmscore.audit.trail")
CLOSED: Final = "the audit trail is closed"
_FORKED: Final = "the audit trail was opened before fork(); open it again in the child process"
_sha256 = hashlib.sha256
_hexlify = binascii.hexlify
_allocate_lock = threading.Lock
_monotonic = time.monotonic

Record = tuple[bytes, "str | None"]


class Slot:
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


class GroupCommit(Checkpoints):
    """The queue of callers and the leader that writes for them."""

    _checkpoint_every: int
    _checkpoint_interval: float | None
    # Group commit (guarded by _qlock).
    _qlock: threading.Lock
    _pending: list[Slot]
    _busy: bool
    _closed: bool

    def _submit(self, slot: Slot, check: bool = True) -> None:
        """Queue a slot, lead or wait for the leader, raise the slot's error."""
        with self._qlock:
            if check and (self._closed or self._broken is not None):
                raise KMSInternalException(CLOSED if self._closed else str(self._broken))
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
        return as_internal(error)

    def _await(self, slot: Slot) -> None:
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

    def _lead(self, first: Slot) -> None:
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

    def _process(self, batch: list[Slot]) -> None:
        """Write a batch and run its actions, under the shared lock (leader only)."""
        failure: KMSInternalException | None = None
        locked = False
        if self._broken is not None or self._closed:
            failure = KMSInternalException(CLOSED if self._closed else str(self._broken))
        try:
            if failure is None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                    locked = True
                    self._sync_shared()
                except (OSError, Damaged) as exc:
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

    def _commit(self, batch: list[Slot]) -> None:
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
            write_all(fd, data)
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
            return as_internal(exc)
        try:
            if not self._in_sync or os.pread(lock_fd, self._token_peek, 0) != self._token:
                try:
                    self._sync_shared()
                except (OSError, Damaged) as exc:
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

    def _cannot_continue(self, exc: OSError | Damaged) -> KMSInternalException:
        failure = KMSInternalException(
            f"the audit trail cannot continue the chain other writers left: {exc}"
        )
        _log.error("%s", failure.message)
        return failure

    def _usable_or_raise(self, failure: KMSInternalException | None) -> None:
        if self._closed:
            raise KMSInternalException(CLOSED)
        if self._broken is not None:
            raise KMSInternalException(self._broken)
        if failure is not None:
            raise failure

    def _act_checkpoint(self, failure: KMSInternalException | None) -> None:
        self._usable_or_raise(failure)
        try:
            self._write_checkpoint()
        except OSError as exc:
            raise as_internal(exc) from exc

    def _act_write_signed(
        self,
        failure: KMSInternalException | None,
        view: SealView,
        signed: list[tuple[dict[str, Any], str]],
    ) -> None:
        self._usable_or_raise(failure)
        try:
            self._write_signed(view, signed)
        except OSError as exc:
            raise as_internal(exc) from exc

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
            raise as_internal(problem) from problem

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
        self._submit(Slot([], self._act_timed), check=False)

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


def as_internal(error: BaseException) -> KMSInternalException:
    if isinstance(error, KMSInternalException):
        return KMSInternalException(error.message)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return KMSInternalException(f"the audit record could not be written: {reason}")


def _background_seal(ref: weakref.ref[GroupCommit], view: SealView) -> None:
    """Get a checkpoint signed by the witness, then write it at the writers' next turn."""
    trail = ref()
    if trail is None:
        return
    try:
        signed, error = trail._witness_signatures(view)
        if error is not None:
            _log.warning("audit checkpoint not signed, will retry: %s", error)
        if signed:
            trail._submit(Slot([], lambda failure: trail._act_write_signed(failure, view, signed)))
    except (OSError, KMSInternalException) as exc:
        _log.warning("audit checkpoint failed, will retry: %s", exc)


def timer(ref: weakref.ref[GroupCommit], stop: threading.Event, interval: float) -> None:
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


def flusher(
    ref: weakref.ref[GroupCommit], wake: threading.Event, stop: threading.Event, interval: float
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
