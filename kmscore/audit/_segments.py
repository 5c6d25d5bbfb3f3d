"""Segment files of the audit trail: writing, fsync, rollback and recovery scans.

The lowest layer of :class:`~kmscore.audit.trail.AuditTrail` (whose module
docstring has the design): the state every layer shares, the segment being
written, its fsyncs (the caller's and the background flusher's), cutting a
failed write or a torn tail off, and following the chain through a segment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Final

from kmscore import fsutil
from kmscore.audit import _format as fmt

__all__ = ["APPEND", "Damaged", "SegmentFiles"]

_log = logging.getLogger("kmscore.audit.trail")
APPEND: Final = os.O_WRONLY | os.O_APPEND


class Damaged(Exception):
    """The trail on disk is not what a crash can leave; opening must stop."""


def _parses_as_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class SegmentFiles:
    """The files of one trail writer and the chain as it last saw it.

    The attributes are set by :class:`~kmscore.audit.trail.AuditTrail`'s
    constructor; this layer and the ones above share them.
    """

    _dir: Path
    _broken: str | None
    _sync_always: bool
    _fsync_interval: float
    _max_segment_bytes: int
    _wake: threading.Event

    # Files. Only the leader changes them; the flusher reads _seg_fd under _fd_lock.
    _fd_lock: threading.Lock
    _lock_fd: int
    _ckpt_fd: int
    _ckpt_size: int
    _seg_fd: int
    _seg_name: str
    _seg_size: int
    _dirty: bool  # written to _seg_fd since its last fsync

    # The chain as this writer last saw it.
    _next_seq: int
    _head: bytes
    _head_segment: str
    _head_offset: int
    _unsealed: int
    _from_time: str | None
    _to_time: str | None
    _last_signature: str | None
    _in_sync: bool

    def _fail(self, reason: str) -> None:
        """Put the trail in the failed state: every later append raises."""
        if self._broken is None:
            self._broken = reason
            _log.error("%s", reason)

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

    def _scan_segment(self, name: str, start: int, *, is_last: bool) -> None:
        """Follow the chain through a segment from ``start``; cut a torn tail."""
        path = self._dir / name
        torn_at: int | None = None
        head = self._head.decode("ascii")
        for offset, line, complete in fmt.iter_lines(path, start):
            if torn_at is not None:
                if complete and _parses_as_object(line):
                    raise Damaged(f"{name}: a record follows damaged bytes at offset {torn_at}")
                continue
            record: object = None
            if complete:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
            if isinstance(record, dict):
                if record.get("seq") != self._next_seq or record.get("prevHash") != head:
                    raise Damaged(f"{name}: the record at offset {offset} breaks the chain")
                head = fmt.line_hash(line)
                self._accept(name, offset + len(line) + 1, head, record.get("eventTime"))
            elif is_last:
                torn_at = offset
            else:
                raise Damaged(f"{name}: damaged line at offset {offset}")
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

    def _check_head(self, names: list[str]) -> None:
        """The record this writer last saw must still be where it was."""
        if self._head_segment not in names:
            raise Damaged(f"segment {self._head_segment} holding seq {self._next_seq - 1} is gone")
        fd = os.open(self._dir / self._head_segment, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            line = fmt.read_line_ending_at(fd, self._head_offset)
        except ValueError as exc:
            raise Damaged(f"record seq {self._next_seq - 1} is gone: {exc}") from exc
        finally:
            os.close(fd)
        if fmt.line_hash(line).encode("ascii") != self._head:
            raise Damaged(f"record seq {self._next_seq - 1} was changed")

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
