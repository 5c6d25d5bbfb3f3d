"""Audit records for the requests a frontend refuses itself, at a bounded rate.

A frontend answers some requests without running an operation: a frame too
large or not msgpack, an unknown method, a failed SigV4 signature, a body that
is not JSON, a connection over the limit. Each still gets a CloudTrail-shaped
record, made by the service's auditor exactly as a call's record is (one
:class:`~kmscore.service.Call` with no resources, the error's AWS code and
message), never with the request's bytes.

A flood of such requests must not flood the trail. :class:`RefusalRecorder`
keeps one bucket per (source, error code): the first ``burst`` refusals of a
window are recorded one by one; the rest are only counted, and when the window
ends one summary record says how many more there were ("N more <code> from
<source> suppressed between t0 and t1"). At most ``max_sources`` buckets are
kept; refusals from sources beyond that share one overflow bucket per error
code, so memory stays bounded whatever the number of sources.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from kmscore.errors import KMSError
from kmscore.model.caller import Caller
from kmscore.service.call import Call, new_request_id
from kmscore.service.key_service import KeyService

__all__ = ["OVERFLOW_SOURCE", "RefusalLimits", "RefusalRecorder", "recorder_for"]

log = logging.getLogger("kmscore.service.refusals")

#: The source named by the shared bucket of sources past ``max_sources``.
OVERFLOW_SOURCE: Final = "other sources"


@dataclass(frozen=True, slots=True)
class RefusalLimits:
    """How many refusals are recorded one by one.

    Attributes:
        burst: Refusals recorded individually per (source, error code) and
            window; 0 records only the summaries.
        window: The window's length in seconds.
        max_sources: Buckets tracked at once; the rest share one.
    """

    burst: int = 20
    window: float = 60.0
    max_sources: int = 1024

    def __post_init__(self) -> None:
        """Raises: ValueError: a limit out of range."""
        if self.burst < 0 or self.window <= 0 or self.max_sources < 1:
            raise ValueError("burst >= 0, window > 0 and max_sources >= 1 are required")


class _Bucket:
    __slots__ = (
        "caller", "error", "event_name", "first", "last", "recorded", "start", "suppressed",
    )  # fmt: skip

    def __init__(self, start: float, caller: Caller, event_name: str, error: KMSError) -> None:
        self.start = start
        self.recorded = 0
        self.suppressed = 0
        self.first = 0.0
        self.last = 0.0
        self.caller = caller
        self.event_name = event_name
        self.error = error


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RefusalRecorder:
    """Records refusals through the service's auditor, summarizing floods."""

    def __init__(
        self,
        service: KeyService,
        limits: RefusalLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Record refusals of ``service``'s frontends under ``limits``."""
        self.service = service
        self.limits = limits or RefusalLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._timer: asyncio.TimerHandle | None = None
        #: Records written (individual and summaries) and refusals counted.
        self.recorded = 0
        self.suppressed = 0

    def refuse(self, caller: Caller, event_name: str, error: KMSError) -> None:
        """Record one refusal, or count it when its bucket is spent.

        Never raises: a refusal is answered whether or not its record could
        be written (a failed write is logged).

        Args:
            caller: Who was refused, as far as known (source, user agent,
                the identity when the frontend knows it).
            event_name: The operation asked for, or ``"Unknown"``.
            error: The error answered.
        """
        now = self._clock()
        limits = self.limits
        key = (caller.source, error.code)
        ended: _Bucket | None = None
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= limits.max_sources:
                    key = (OVERFLOW_SOURCE, error.code)
                    bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = _Bucket(now, caller, event_name, error)
            if now - bucket.start >= limits.window:
                if bucket.suppressed:
                    ended = bucket
                bucket = self._buckets[key] = _Bucket(now, caller, event_name, error)
            if bucket.recorded < limits.burst:
                bucket.recorded += 1
                write = True
            else:
                if not bucket.suppressed:
                    bucket.first = now
                bucket.suppressed += 1
                bucket.last = now
                self.suppressed += 1
                write = False
        if ended is not None:
            self._summarize(key[0], error.code, ended)
        if write:
            self._write(caller, event_name, error, None)

    def flush(self, *, everything: bool = False) -> None:
        """Write the summaries of ended windows (of all, with ``everything``).

        Buckets of ended windows are dropped, so the table only holds sources
        that refused lately.
        """
        now = self._clock()
        done: list[tuple[tuple[str, str], _Bucket]] = []
        with self._lock:
            for key, bucket in list(self._buckets.items()):
                if everything or now - bucket.start >= self.limits.window:
                    del self._buckets[key]
                    if bucket.suppressed:
                        done.append((key, bucket))
        for (source, code), bucket in done:
            self._summarize(source, code, bucket)

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush ended windows on ``loop`` once per window (once per recorder)."""
        if self._timer is not None:
            return

        def tick() -> None:
            self.flush()
            self._timer = loop.call_later(self.limits.window, tick)

        self._timer = loop.call_later(self.limits.window, tick)

    def close(self) -> None:
        """Stop the timer and write every pending summary."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush(everything=True)

    def _summarize(self, source: str, code: str, bucket: _Bucket) -> None:
        n, t0, t1 = bucket.suppressed, _iso(bucket.first), _iso(bucket.last)
        error = type(bucket.error)(
            f"{n} more {code} from {source} suppressed between {t0} and {t1}."
        )
        extra = {"suppressedCount": n, "suppressedFrom": t0, "suppressedUntil": t1}
        self._write(bucket.caller, bucket.event_name, error, extra)

    def _write(
        self,
        caller: Caller,
        event_name: str,
        error: KMSError,
        extra: dict[str, object] | None,
    ) -> None:
        call = Call(self.service, event_name, caller, new_request_id(), [])
        call.read_only = True
        call.additional_event_data = extra
        try:
            self.service.auditor.record(call, {}, None, error)
        except KMSError as exc:
            log.error("a refusal could not be recorded: %s", exc.message)
            return
        self.recorded += 1


_RECORDERS: weakref.WeakKeyDictionary[KeyService, RefusalRecorder] = weakref.WeakKeyDictionary()
_RECORDERS_LOCK = threading.Lock()


def recorder_for(service: KeyService, limits: RefusalLimits | None = None) -> RefusalRecorder:
    """The one recorder of ``service``, shared by its frontends.

    The first call makes it (with ``limits``, or the defaults); later calls
    return it, whatever ``limits`` they pass.
    """
    with _RECORDERS_LOCK:
        recorder = _RECORDERS.get(service)
        if recorder is None:
            recorder = _RECORDERS[service] = RefusalRecorder(service, limits)
        return recorder
