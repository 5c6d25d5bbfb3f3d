"""The chainer: journal entries into the trail's hash-chained records.

A drain pass (:meth:`Drainer.drain`) takes ``audit/journal/DRAIN`` (an
exclusive ``flock``), reads every journal's entries after its chained cursor,
checks their chain, builds the CloudTrail-shaped record of each
(:func:`kmscore.audit.build_event`, the same bytes the service wrote before the
journal existed), appends them to the :class:`~kmscore.audit.trail.AuditTrail`
in time order, in batches, and then moves each journal's cursor. A journal
whose writer is gone (its ``flock`` is free) and whose entries are all in the
trail is removed. Passes are run by a chainer process (:func:`run`, started by
:func:`start_chainer`), by a writer when it is quiet, and at open and close.

Exactly once
------------
A record's ``eventID`` names its journal and entry (:func:`~kmscore.audit.journal_format.event_id`).
Before writing a batch the drainer marks ``DRAIN`` busy, and clean after the
cursors moved. A drainer that finds it busy (the last one died between the
two) reads the trail's last :data:`BATCH` records and moves each journal's
cursor past the entries they hold, so no entry is written twice and none is
skipped.

A damaged journal (an entry that breaks its chain, see
:class:`~kmscore.audit.journal_format.JournalDamaged`) is chained up to the damage and
then left alone: the drainer logs it once and goes on with the others, and
``kms audit verify`` fails while it is there.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.audit.event import AuditEvent, build_event
from kmscore.audit.journal_format import (
    DEFINE,
    EVENT,
    HEADER_BYTES,
    NEW_SUFFIX,
    SUFFIX,
    JournalDamaged,
    caller_identity,
    decode,
    event_id,
    genesis,
    journal_dir,
    parse_event_id,
)
from kmscore.audit.journal_reader import JournalReader
from kmscore.audit.sink import AuditSink
from kmscore.errors import KMSInternalException
from kmscore.wire.operations import KMS_EVENT_SOURCE, OPERATION_FACTS

__all__ = ["BATCH", "Drainer", "chainer_running", "drain_journals", "run", "start_chainer"]

BATCH: Final = 4096
"""Records per trail append; a reconciling drainer reads this many back."""

BUSY_PAUSE: Final = 0.005
"""Seconds the chainer process waits after a pass that was not a full batch.

A pass costs 120-180 µs of CPU whatever it moves (``bench_chainer.py``), so
passes run back to back under load, a few records each, made the chainer cost
55 µs per record instead of 26; it ran on the cores the workers needed. The
records are safe in the journals meanwhile: the pause delays only when they
reach the trail."""

ABANDONED_AFTER: Final = 10.0
"""Seconds before a half-made journal is removed.

See :data:`~kmscore.audit.journal_format.NEW_SUFFIX`.
"""
DRAIN_LOCK: Final = "DRAIN"
CHAINER_LOCK: Final = "CHAINER"
_CLEAN: Final = b"clean\n"
_EVENT_ID: Final = re.compile(rb'"eventID":"([0-9a-f-]{36})"')
_log = logging.getLogger(__name__)


def _event_source(operation: str) -> str:
    facts = OPERATION_FACTS.get(operation)
    return facts.event_source if facts is not None else KMS_EVENT_SOURCE


@dataclass(frozen=True, slots=True)
class _Item:
    """One journal entry read by a drainer, its record built (None for a definition)."""

    time_ns: int
    seq: int
    event: AuditEvent | dict[str, Any] | None
    end: int
    digest: bytes


@dataclass
class _Cursor:
    """What a drainer knows of one journal."""

    reader: JournalReader
    offset: int
    seq: int
    digest: bytes
    refs: list[Any] = field(default_factory=list)
    damaged: bool = False


def _lock_file(path: Path) -> int:
    try:
        return fsutil.open_private_file(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return fsutil.create_private_file(path, os.O_RDWR | os.O_CLOEXEC)
        except FileExistsError:
            return fsutil.open_private_file(path, os.O_RDWR | os.O_CLOEXEC)


class Drainer:
    """Drains a data dir's journals into one trail."""

    def __init__(self, data_dir: Path, trail: AuditSink) -> None:
        self.data_dir = Path(data_dir)
        self.directory = journal_dir(self.data_dir)
        self.trail = trail
        self._cursors: dict[Path, _Cursor] = {}
        #: Journals found damaged, with where and why.
        self.damaged: dict[Path, JournalDamaged] = {}

    # --- one pass ---------------------------------------------------------------

    def drain(self, *, own: bool = False) -> int:
        """Chain every committed journal entry into the trail; returns how many.

        Args:
            own: Drain only if no chainer process is running (a writer's quiet
                pass); the count is 0 then.

        Raises:
            KMSInternalException: the trail refused a batch (nothing of it is
                kept, and the cursors stay).
        """
        if not self.directory.is_dir():
            return 0
        try:
            fd = _lock_file(self.directory / DRAIN_LOCK)
        except OSError as exc:
            raise KMSInternalException(f"cannot lock the audit journals: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if own and chainer_running(self.data_dir):
                return 0
            state = os.pread(fd, 16, 0)
            if state.startswith(b"busy "):
                self._reconcile(int(state.split()[1]))
            return self._pass(fd)
        finally:
            os.close(fd)  # and the lock with it

    def _pass(self, lock_fd: int) -> int:
        self._attach()
        total = 0
        while True:
            share = max(64, BATCH // max(1, len(self._cursors)))
            runs: list[list[_Item]] = []
            moves: dict[Path, tuple[int, int, bytes, list[Any]]] = {}
            for path, cursor in list(self._cursors.items()):
                if cursor.damaged:
                    continue
                taken, refs = self._read(path, cursor, share)
                if taken:
                    runs.append(taken)
                    last = taken[-1]
                    moves[path] = (last.end, last.seq + 1, last.digest, refs)
            if not runs:
                break
            # In time order across journals, in entry order within each.
            events = [
                item.event
                for item in heapq.merge(*runs, key=lambda item: item.time_ns)
                if item.event is not None
            ]
            os.pwrite(lock_fd, b"busy %d\n" % max(1, len(events)), 0)
            self.trail.append_many(events)
            for path, (end, seq, digest, refs) in moves.items():
                cursor = self._cursors[path]
                self._advance(cursor, end, seq, digest)
                cursor.refs = refs  # the definitions read are now behind the cursor
            os.pwrite(lock_fd, _CLEAN.ljust(16), 0)
            total += len(events)
        self._remove_finished()
        return total

    def _attach(self) -> None:
        """Open journals not seen yet; forget ones that are gone."""
        try:
            listed = list(self.directory.iterdir())
        except FileNotFoundError:
            listed = []
        names = sorted(p for p in listed if p.name.endswith(SUFFIX))
        for path in listed:
            if path.name.endswith(NEW_SUFFIX):
                _remove_abandoned(path)
        present = set(names)
        for path in list(self._cursors):
            if path not in present:
                self._cursors.pop(path).reader.close()
        for path in names:
            cursor = self._cursors.get(path)
            if cursor is not None:
                head = cursor.reader.refresh()
                if head.chained_seq != cursor.seq:  # another drainer moved it
                    self._cursors.pop(path).reader.close()
                    cursor = None
            if cursor is None and path not in self.damaged:
                try:
                    cursor = self._open(path)
                except FileNotFoundError:
                    continue
                except JournalDamaged as exc:
                    self._mark_damaged(path, exc)
                    continue
                self._cursors[path] = cursor

    def _open(self, path: Path) -> _Cursor:
        reader = JournalReader(path)
        head = reader.header
        cursor = _Cursor(reader, head.chained_offset, head.chained_seq, head.chained_digest)
        # The definitions made before the cursor: read from the start again.
        if head.chained_seq:
            entries = reader.entries(HEADER_BYTES, 0, genesis(reader.journal_id))
            for seq, body, _end, _digest in entries:
                if seq >= head.chained_seq:
                    break
                if body[1:2] == b"\x00":
                    cursor.refs.append(self._decode(reader, seq, body)[1])
        return cursor

    def _decode(self, reader: JournalReader, seq: int, body: bytes) -> list[Any]:
        try:
            return decode(body)
        except ValueError as exc:
            raise JournalDamaged(reader.path, seq, "an entry is not a journal record") from exc

    def _read(self, path: Path, cursor: _Cursor, limit: int) -> tuple[list[_Item], list[Any]]:
        """Up to ``limit`` entries after the cursor, each with its record built.

        Returns the entries and the cursor's references with the definitions
        read; the cursor itself moves only once the trail holds the records. A
        journal is read up to its first damaged entry (see :class:`JournalDamaged`).
        """
        out: list[_Item] = []
        refs = list(cursor.refs)
        try:
            entries = cursor.reader.entries(cursor.offset, cursor.seq, cursor.digest)
            for seq, body, end, digest in entries:
                entry = self._decode(cursor.reader, seq, body)
                if entry[0] == DEFINE:
                    if len(entry) != 2:
                        raise JournalDamaged(path, seq, "a definition has the wrong shape")
                    refs.append(entry[1])
                    out.append(_Item(0, seq, None, end, digest))
                else:
                    time_ns, event = self._event(cursor.reader, refs, seq, entry)
                    out.append(_Item(time_ns, seq, event, end, digest))
                if len(out) >= limit:
                    break
        except JournalDamaged as exc:
            self._mark_damaged(path, exc)
            cursor.damaged = True
        return out, refs

    def _event(
        self, reader: JournalReader, refs: list[Any], seq: int, entry: list[Any]
    ) -> tuple[int, AuditEvent | dict[str, Any]]:
        """The time and trail record of a call or event entry.

        Raises:
            JournalDamaged: the entry is not one the writers make.
        """
        eid = event_id(reader.journal_id, seq)
        if entry[0] == EVENT:
            if len(entry) != 2 or not isinstance(entry[1], dict):
                raise JournalDamaged(reader.path, seq, "an event is not a mapping")
            event = entry[1]
            event["eventID"] = eid
            return 0, event
        if len(entry) != 14:
            raise JournalDamaged(reader.path, seq, "a call record has the wrong shape")
        (
            _kind,
            time_ns,
            op,
            request_id,
            caller,
            region,
            account,
            resources,
            read_only,
            error_code,
            error_message,
            request,
            response,
            extra,
        ) = entry
        if type(time_ns) is not int:
            raise JournalDamaged(reader.path, seq, "a call record's time is not an integer")
        try:
            if type(request_id) is list:  # [defined prefix, the rest] (see the journal's format)
                prefix, rest = request_id
                request_id = refs[prefix] + rest
                if type(request_id) is not str:
                    raise TypeError("a request id is a string")
            operation = refs[op]
            identity, source, agent = caller_identity(refs[caller])
            names = [refs[r] for r in resources]
            return time_ns, build_event(
                operation,
                region=refs[region],
                account_id=refs[account],
                identity=identity,
                source_ip=source,
                user_agent=agent,
                request_parameters=request,
                response_elements=response,
                resources=names,
                read_only=read_only,
                error_code=error_code,
                error_message=error_message,
                request_id=request_id,
                additional_event_data=extra,
                event_time=datetime.fromtimestamp(time_ns / 1e9, UTC),
                event_id=eid,
                event_source=_event_source(operation),
            )
        except (
            IndexError,
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            OSError,
            AttributeError,
        ) as exc:
            # Whatever the file holds, a bad entry stops this journal, not the drainer.
            raise JournalDamaged(
                reader.path, seq, "a call record is not one a writer makes"
            ) from exc

    def _advance(self, cursor: _Cursor, offset: int, seq: int, digest: bytes) -> None:
        """Move the cursor to ``offset``, past the entry whose digest is ``digest``."""
        cursor.reader.set_chained(offset, seq, digest)
        cursor.offset, cursor.seq, cursor.digest = offset, seq, digest

    def _remove_finished(self) -> None:
        for path, cursor in list(self._cursors.items()):
            if cursor.damaged:
                continue
            reader = cursor.reader
            head = reader.refresh()
            if not (head.closed or not reader.writer_alive()):
                continue
            try:
                if any(True for _ in reader.entries(cursor.offset, cursor.seq, cursor.digest)):
                    continue  # a dead writer's last entries: next pass
            except JournalDamaged as exc:
                self._mark_damaged(path, exc)
                cursor.damaged = True
                continue
            if cursor.seq < head.count:
                # The count is stored after each commit word: fewer entries than
                # the count means some were removed.
                self._mark_damaged(
                    path,
                    JournalDamaged(path, cursor.seq, f"it ends before its {head.count} entries"),
                )
                cursor.damaged = True
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._cursors.pop(path)
            reader.close()

    def _mark_damaged(self, path: Path, exc: JournalDamaged) -> None:
        if path not in self.damaged:
            self.damaged[path] = exc
            _log.error("%s", exc)

    def pending_journals(self) -> int:
        """Journals (of any process) whose writer is alive, among those of the last pass."""
        alive = 0
        for cursor in self._cursors.values():
            try:
                if cursor.reader.writer_alive():
                    alive += 1
            except OSError:
                pass
        return alive

    # --- after a drainer died mid-batch --------------------------------------------

    def _reconcile(self, count: int) -> None:
        """Move cursors past entries the trail holds already (of a batch of ``count``)."""
        self._attach()
        found: dict[int, int] = {}
        for raw in _trail_tail_ids(self.data_dir / "audit", count):
            parsed = parse_event_id(raw.decode("ascii"))
            if parsed is not None:
                jid, seq = parsed
                if seq >= found.get(jid, -1):
                    found[jid] = seq
        for cursor in self._cursors.values():
            last = found.get(cursor.reader.journal_id)
            if last is None or last < cursor.seq:
                continue
            entries = cursor.reader.entries(cursor.offset, cursor.seq, cursor.digest)
            for seq, body, end, digest in entries:
                if body[1:2] == b"\x00":
                    cursor.refs.append(self._decode(cursor.reader, seq, body)[1])
                if seq == last:
                    self._advance(cursor, end, seq + 1, digest)
                    break

    def close(self) -> None:
        """Close the journals this drainer has open."""
        for cursor in self._cursors.values():
            cursor.reader.close()
        self._cursors.clear()


def _remove_abandoned(path: Path) -> None:
    """Remove a journal left half made by a writer that died making it.

    It holds no entry (entries are appended only after the rename), and its
    maker holds its lock while it lives.
    """
    try:
        if time.time() - path.stat().st_mtime < ABANDONED_AFTER:
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _trail_tail_ids(audit_dir: Path, count: int) -> list[bytes]:
    """The eventIDs of the trail's last ``count`` records, oldest first."""
    segments = sorted(p for p in audit_dir.glob("segment-*.jsonl") if fmt.SEGMENT_RE.match(p.name))
    ids: list[bytes] = []
    for path in reversed(segments[-2:]):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        lines = data.splitlines()[-count:]
        ids = [m.group(1) for line in lines if (m := _EVENT_ID.search(line))] + ids
        if len(ids) >= count:
            break
    return ids[-count:]


def drain_journals(data_dir: str | os.PathLike[str]) -> tuple[int, list[JournalDamaged]]:
    """Chain what the data dir's journals hold, as a reader does before it reads.

    Opens the data dir's trail (with its signer) only when some journal has
    entries waiting.

    Returns:
        How many records were chained, and the journals found damaged.

    Raises:
        KMSInternalException: the trail cannot be opened or refused a batch.
    """
    from kmscore.audit.journal_reader import pending_journals
    from kmscore.audit.setup import open_service_trail

    data = Path(data_dir)
    waiting = pending_journals(journal_dir(data))
    if not waiting:
        return 0, []
    trail = open_service_trail(data)
    drainer = Drainer(data, trail)
    try:
        moved = drainer.drain()
        return moved, list(drainer.damaged.values())
    finally:
        drainer.close()
        trail.close()


# --- the chainer process -------------------------------------------------------------


def chainer_running(data_dir: Path) -> bool:
    """Whether a chainer process holds the data dir's chainer lock."""
    path = journal_dir(Path(data_dir)) / CHAINER_LOCK
    try:
        fd = fsutil.open_private_file(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def start_chainer(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start a chainer process for the data dir unless one runs.

    Returns:
        The process, or None when one was running already.

    Raises:
        OSError: it could not be started.
    """
    if chainer_running(data_dir):
        return None
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "kmscore.audit.chainer", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
        start_new_session=True,
        close_fds=True,
    )


def run(data_dir: Path, *, idle_exit: float = 2.0) -> int:
    """Drain the data dir's journals until no writer has been left for ``idle_exit`` s.

    Returns:
        The exit status: 0 (also when another chainer runs).

    Raises:
        KMSInternalException: the trail cannot be opened.
    """
    from kmscore.audit.setup import open_service_trail

    directory = journal_dir(Path(data_dir))
    fsutil.ensure_private_dir(directory)
    lock = _lock_file(directory / CHAINER_LOCK)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return 0
    stop = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    trail = open_service_trail(Path(data_dir))
    drainer = Drainer(Path(data_dir), trail)
    idle_since: float | None = None
    pause = 0.0005
    try:
        while not stop and directory.is_dir():
            try:
                moved = drainer.drain()
            except KMSInternalException as exc:
                if not directory.is_dir():
                    break  # the data dir was removed under us
                _log.error("chaining failed, retrying: %s", exc)
                moved = 0
                time.sleep(0.1)
            if moved:
                idle_since = None
                pause = 0.0005
                if moved < BATCH:
                    time.sleep(BUSY_PAUSE)  # not behind: let a batch gather
                continue
            now = time.monotonic()
            if drainer.pending_journals() == 0:
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= idle_exit:
                    break
            else:
                idle_since = None
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
    finally:
        drainer.close()
        try:
            trail.close()
        except KMSInternalException as exc:
            if directory.is_dir():
                raise
            _log.debug("the data dir is gone: %s", exc)  # removed under us (a temporary dir)
        os.close(lock)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kmscore.audit.chainer",
        description="Chain a data dir's audit journals into its trail until no writer is left.",
    )
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--idle-exit", type=float, default=2.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="kmscore chainer: %(message)s")
    data_dir: Path = args.data_dir

    def still_there(_record: logging.LogRecord) -> bool:
        # A data dir removed under the chainer (a temporary one, at the end of
        # a test or a benchmark) is its signal to stop, not a failure to report.
        # Files vanish before their directory, so look again a moment later.
        if data_dir.is_dir():
            time.sleep(0.2)
        return data_dir.is_dir()

    for handler in logging.getLogger().handlers:
        handler.addFilter(still_there)
    return run(data_dir, idle_exit=args.idle_exit)


if __name__ == "__main__":
    raise SystemExit(main())
