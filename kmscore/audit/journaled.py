"""The service's audit sink: a per-process journal in front of the shared trail.

:class:`JournaledTrail` keeps the :class:`~kmscore.audit.sink.AuditSink`
contract with a journal (:mod:`kmscore.audit.journal`) as the durable record of
each call and the trail (:class:`~kmscore.audit.trail.AuditTrail`) as the
chained, signed one:

1. *Durable on return*: the entry's commit word is stored in the shared
   mapping of a file before :meth:`record_service_call` returns, so ``kill -9`` loses
   nothing; :meth:`flush` fsyncs the journal and drains it.
2. *Fail closed*: an entry either fits in the preallocated file or raises
   before anything of it is visible; a new file that cannot be made (a full
   disk) fails the call. Too many full files waiting for the chainer make an
   append wait, then fail.
3. *Ordered*: one chain per journal, merged into the trail in time order.
4. *Tamper-evident*: each journal is chained, and so is the trail, whose
   checkpoints are signed as before.
5. *Scrubbed*: the journal writer drops secret members before they reach the
   file; the trail's records are built by :func:`kmscore.audit.build_event`.
6. *Shared*: every process writes its own journal; draining is serialized by a
   lock that no call waits on.

Who drains: while a process makes few calls and is the data dir's only
writer, its own pump thread drains every :data:`PUMP_INTERVAL` seconds (a few
hundred entries, about a millisecond of work). When more than
:data:`INLINE_LIMIT` entries wait, or another process writes too, it starts a
chainer process (:mod:`kmscore.audit.chainer`) instead, which then drains every
writer of the data dir on the other cores and exits when they are gone.
Opening drains what dead processes left; closing drains this process's own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from kmscore.audit.chainer import Drainer, chainer_running, start_chainer
from kmscore.audit.journal import Journal
from kmscore.audit.journal_format import DEFAULT_JOURNAL_BYTES, journal_dir
from kmscore.audit.scrub import scrub_event
from kmscore.audit.trail import AuditTrail

__all__ = ["INLINE_LIMIT", "PUMP_INTERVAL", "JournaledTrail"]

PUMP_INTERVAL: Final = 0.05
INLINE_LIMIT: Final = 256
_log = logging.getLogger(__name__)


class JournaledTrail:
    """A data dir's audit sink for one process: journal first, trail behind."""

    def __init__(
        self,
        data_dir: Path,
        trail: AuditTrail,
        *,
        journal_bytes: int = DEFAULT_JOURNAL_BYTES,
        chainer: bool = True,
    ) -> None:
        """Open the sink, draining what dead writers left.

        Args:
            data_dir: The data dir.
            trail: The data dir's trail, opened by this process (its signer
                and export set up).
            journal_bytes: Bytes per journal file.
            chainer: Start a chainer process under load; False drains only in
                this process (tools, tests of the inline path).

        Raises:
            KMSInternalException: a dead writer's journal could not be drained.
        """
        self.data_dir = Path(data_dir)
        self.trail = trail
        self.journal = Journal(self.data_dir, capacity=journal_bytes, on_behind=self._kick)
        self.drainer = Drainer(self.data_dir, trail)
        self.use_chainer = chainer
        self._chainer: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._pump_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        if journal_dir(self.data_dir).is_dir():
            self.drainer.drain()  # the journals of processes that died

    # --- recording -----------------------------------------------------------------

    def record_service_call(
        self,
        call: Any,
        request: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        error: Any,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """Record one service call (see the native writer's ``append_service_call``).

        The auditor appends straight to :attr:`Journal.writer` while it can;
        this is the way when there is no writer yet or its file is full.

        Raises:
            KMSInternalException: it could not be recorded; nothing is kept.
        """
        self.journal.append_service_call(call, request, response, error, extra)
        if self._pump is None:
            self._start_pump()

    def append(self, event: Mapping[str, Any]) -> None:
        """Record one whole event (scrubbed here).

        Raises:
            TypeError: ``event`` is not a mapping.
            KMSInternalException: as :meth:`record_service_call`.
        """
        if not isinstance(event, Mapping):
            raise TypeError("an audit event is a mapping")
        self.journal.append_event(scrub_event(event))
        if self._pump is None:
            self._start_pump()

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Record several whole events.

        They are consecutive in this process's journal; unlike the trail's
        ``append_many`` a failure part way keeps the ones before it.

        Raises:
            TypeError, KMSInternalException: as :meth:`append`.
        """
        for event in list(events):
            self.append(event)

    # --- draining ------------------------------------------------------------------

    def _start_pump(self) -> None:
        with self._pump_lock:
            if self._pump is not None or self._closed:
                return
            self._pump = threading.Thread(
                target=self._run_pump, name="kmscore-audit-pump", daemon=True
            )
            self._pump.start()

    def _run_pump(self) -> None:
        while not self._stop.wait(PUMP_INTERVAL):
            try:
                self._tick()
            except Exception as exc:
                _log.error("draining the audit journal failed: %s", exc)

    def _tick(self) -> None:
        if self._chainer is not None and self._chainer.poll() is not None:
            self._chainer = None
        self.journal.prepare_spare_if_due()
        self.journal.prefault_ahead()
        pending = self.journal.pending()
        if pending == 0:
            return
        # One drainer for several writers: drainers that take turns on the
        # trail each catch up with the other's records first, which costs more
        # than building them (the trail's cross-process path, docs/performance.md).
        if self.use_chainer and (pending > INLINE_LIMIT or self.drainer.pending_journals() > 1):
            self._kick()
            return
        self.drainer.drain(own=True)

    def _kick(self) -> None:
        """Start a chainer process unless one runs (or drain here if we may not)."""
        if not self.use_chainer:
            self.drainer.drain()
            return
        if self._chainer is not None and self._chainer.poll() is None:
            return
        try:
            self._chainer = start_chainer(self.data_dir) or self._chainer
        except OSError as exc:
            _log.error("cannot start the audit chainer, draining here: %s", exc)
            self.drainer.drain()

    def drain(self) -> int:
        """Chain everything journaled so far into the trail; returns how many.

        Raises:
            KMSInternalException: the trail refused a batch.
        """
        return self.drainer.drain()

    def flush(self) -> None:
        """Make every record so far durable against power loss, and chain it.

        Raises:
            KMSInternalException: the journal or the trail could not be synced.
        """
        self.journal.flush()
        self.drain()
        self.trail.flush()

    def checkpoint(self) -> None:
        """Chain everything so far and seal it with a signed checkpoint.

        Raises:
            KMSInternalException: the checkpoint could not be made durable.
        """
        self.drain()
        self.trail.checkpoint()

    def close(self) -> None:
        """Seal this process's journal, chain it, and close the trail; idempotent.

        Raises:
            KMSInternalException: the final checkpoint could not be written.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._pump is not None and self._pump is not threading.current_thread():
            self._pump.join()
        self.journal.close()
        if self._pid == os.getpid():
            try:
                self.drain()
            finally:
                self.drainer.close()
                self.trail.close()

    def chainer_running(self) -> bool:
        """Whether a chainer process drains this data dir now."""
        return chainer_running(self.data_dir)

    def __repr__(self) -> str:
        return f"JournaledTrail({str(self.data_dir)!r})"
