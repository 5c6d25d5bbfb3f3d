"""Checkpoints of the audit trail, and catching up with the other writers.

The middle layer of :class:`~kmscore.audit.trail.AuditTrail`: signing and
appending checkpoints (by the data dir's key or through a witness, in runs of
at most ``MAX_LINES`` records), closing a full segment once it is sealed, and
following the chain that other writers extended since this one last looked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any, NamedTuple

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.audit._segments import APPEND, Damaged, SegmentFiles
from kmscore.audit.export import CheckpointExport
from kmscore.audit.witness import MAX_LINES, CheckpointSigner, WitnessError, checkpoint_times
from kmscore.fsutil import write_all

__all__ = ["Checkpoints", "SealView"]

_log = logging.getLogger("kmscore.audit.trail")


class SealView(NamedTuple):
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


class Checkpoints(SegmentFiles):
    """Sealing records with signed checkpoints, and adopting other writers' ones."""

    _signer: CheckpointSigner
    _export: CheckpointExport | None
    _signer_retry_at: float
    _sealer: threading.Thread | None
    _last_checkpoint_at: float
    # The end of the last sealed record ("" and 0: the trail's start).
    _sealed_segment: str
    _sealed_offset: int
    _token: bytes
    _token_peek: int

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
            write_all(self._ckpt_fd, data)
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

    def _seal_view(self) -> SealView:
        """What to seal now: from the last checkpoint to the head (lock held)."""
        return SealView(
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

    def _entries(self, view: SealView) -> list[tuple[str, int, bytes]]:
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
        self, view: SealView
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

    def _write_signed(self, view: SealView, signed: list[tuple[dict[str, Any], str]]) -> None:
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

    def _rotate_if_full(self) -> None:
        if self._seg_size < self._max_segment_bytes:
            return
        name = fmt.segment_name(self._next_seq)
        try:
            self._write_checkpoint()
            self._fsync_segment()  # closing it: all of it durable
            fd = fsutil.create_private_file(self._dir / name, APPEND)
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

    def _load_last_checkpoint(self) -> dict[str, Any] | None:
        size = os.fstat(self._ckpt_fd).st_size
        tail = os.pread(self._ckpt_fd, min(size, 1 << 16), max(0, size - (1 << 16)))
        cut = tail.rfind(b"\n")
        if cut < 0 and size > len(tail):
            raise Damaged(f"{fmt.CHECKPOINTS_FILE} ends in an overlong unterminated line")
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
            raise Damaged(f"the last line of {fmt.CHECKPOINTS_FILE} is not a checkpoint")
        return checkpoint

    def _adopt_checkpoint(self, last: dict[str, Any], names: list[str]) -> None:
        try:
            signature = bytes.fromhex(last["signature"])
        except (ValueError, TypeError):
            signature = b""
        if not self._signer.accepts(fmt.checkpoint_message(last), signature):
            raise Damaged("the last checkpoint's signature does not verify with this signing key")
        if last["segment"] not in names:
            raise Damaged(f"segment {last['segment']} sealed by the last checkpoint is missing")
        fd = os.open(self._dir / last["segment"], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            line = fmt.read_line_ending_at(fd, last["offset"])
        except (ValueError, OSError) as exc:
            raise Damaged(f"the record sealed by the last checkpoint is gone: {exc}") from exc
        finally:
            os.close(fd)
        if fmt.line_hash(line) != last["head"]:
            raise Damaged(f"record seq {last['seq']} differs from the one its checkpoint sealed")
        self._next_seq, self._head = last["seq"] + 1, last["head"].encode("ascii")
        self._head_segment, self._head_offset = last["segment"], last["offset"]
        self._sealed_segment, self._sealed_offset = last["segment"], last["offset"]
        self._last_signature = last["signature"]
        self._unsealed = 0
        self._from_time = self._to_time = None
        self._last_checkpoint_at = time.monotonic()

    def _sync_shared(self) -> None:
        """Make this writer's view current (lock held); see the module docstring.

        Raises:
            OSError: If the files cannot be read or the torn tail cut.
            Damaged: If the trail is not what writers and crashes leave.
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
                raise Damaged(
                    f"the last checkpoint seals records through seq {last['seq']}, but this "
                    f"writer saw records sealed through seq {sealed_through}"
                )
            self._adopt_checkpoint(last, names)
        elif last is None and self._last_signature is not None:
            raise Damaged(f"{fmt.CHECKPOINTS_FILE} lost the checkpoints it had")
        elif self._head_offset > 0:
            self._check_head(names)
        if self._head_segment:
            if self._head_segment not in names:
                raise Damaged(f"segment {self._head_segment} is missing")
            index, offset = names.index(self._head_segment), self._head_offset
        else:
            index, offset = 0, 0
        for position in range(index, len(segments)):
            first, name = segments[position]
            start = offset if position == index else 0
            if start == 0 and first != self._next_seq:
                raise Damaged(f"{name} should start at seq {self._next_seq}")
            self._scan_segment(name, start, is_last=position == len(segments) - 1)
        if segments:
            self._use_segment(segments[-1][1])
        else:
            name = fmt.segment_name(self._next_seq)
            fd = fsutil.create_private_file(self._dir / name, APPEND)
            try:
                fsutil.fsync_dir(self._dir)
            except BaseException:
                os.close(fd)
                raise
            self._swap_segment(fd, name)
            self._seg_size = 0
