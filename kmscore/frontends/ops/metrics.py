"""Prometheus metrics: cheap counters on the hot path, the rest computed when scraped.

A request costs one dict increment, one bucket search and two clock reads
(:meth:`RequestMetrics.observe`, on the event loop's thread only, so no lock).
Nothing of ``prometheus_client`` runs per request: its label lookup and lock
would cost about as much as a whole data-key call's framing. A scrape turns
the counts into metric families (:class:`ServiceCollector`) and adds what is
read from the store and the audit journal at that moment: keys by state, keys
due for rotation, the AES-GCM invocations left per key version, the audit
lag and the journals waiting to be chained.

Several HTTP worker processes (``--workers N``) each count their own
requests; each writes its counts to ``<data-dir>/metrics/<pid>.json`` every
:data:`SHARE_SECONDS`, and a scrape of any of them adds up every process's
file (its own counts it takes live), so every worker answers the same totals.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from kmscore.fsutil import ensure_private_dir, replace_private_file
from kmscore.model.keystate import KeyState
from kmscore.service import KeyService
from kmscore.service.versions import DEFAULT_LIMIT

__all__ = [
    "BUCKETS",
    "CONTENT_TYPE",
    "METRICS_DIR",
    "SHARE_SECONDS",
    "RequestMetrics",
    "ServiceCollector",
    "render",
    "requests_for",
]

#: The ``Content-Type`` of the Prometheus text format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Latency bucket bounds, seconds: a data key on the loop takes tens of
#: microseconds, a store write with its fsync milliseconds.
BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_WIDTH: Final = len(BUCKETS) + 2
_bisect: Final = bisect.bisect_left
#: Where worker processes share their counts (in the data dir).
METRICS_DIR: Final = "metrics"
#: Seconds between a process's writes of its counts.
SHARE_SECONDS: Final = 2.0
#: Rotation horizons of ``kms_keys_due_for_rotation``.
_HORIZONS: Final = (("0d", 0), ("7d", 7), ("30d", 30))
_PAGE: Final = 1000


class RequestMetrics:
    """One frontend's request counts and latencies, in this process.

    Call :meth:`observe` from one thread (the frontend's event loop); a scrape
    from another thread copies the rows, which the GIL keeps whole.
    """

    __slots__ = ("_rows", "frontend")

    def __init__(self, frontend: str) -> None:
        """Count the requests of ``frontend`` (``http``, ``socket``)."""
        self.frontend = frontend
        #: (operation, outcome) -> [requests per latency bucket ..., past the
        #: last bound, sum of seconds]: one lookup per request.
        self._rows: dict[tuple[str, str], list[Any]] = {}

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one answered request.

        Args:
            operation: The operation's name (``Unknown`` when the request named none).
            outcome: ``Success`` or the AWS error code it was answered with.
            seconds: From the request's arrival to its answer.
        """
        row = self._rows.get((operation, outcome))
        if row is None:
            row = self._rows[(operation, outcome)] = [0] * (_WIDTH - 1) + [0.0]
        row[_bisect(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counts so far, as plain JSON-able data."""
        rows = self._rows.copy()
        return {
            "frontend": self.frontend,
            "rows": [[op, outcome, list(row)] for (op, outcome), row in rows.items()],
        }


_REQUESTS: dict[str, RequestMetrics] = {}
_REQUESTS_LOCK = threading.Lock()


def requests_for(frontend: str) -> RequestMetrics:
    """This process's counter of ``frontend``'s requests (one per frontend and process)."""
    with _REQUESTS_LOCK:
        found = _REQUESTS.get(frontend)
        if found is None:
            found = _REQUESTS[frontend] = RequestMetrics(frontend)
        return found


def _local_snapshots() -> list[dict[str, Any]]:
    with _REQUESTS_LOCK:
        metrics = list(_REQUESTS.values())
    return [m.snapshot() for m in metrics]


class CountSharer:
    """Writes this process's counts to the data dir, so other workers' scrapes add them."""

    def __init__(self, data_dir: Path) -> None:
        """Share under ``<data_dir>/metrics``."""
        self.directory = Path(data_dir) / METRICS_DIR
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write now, then every :data:`SHARE_SECONDS` in a daemon thread."""
        ensure_private_dir(self.directory)
        self.write()
        self._thread = threading.Thread(target=self._run, name="kms-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SHARE_SECONDS):
            with contextlib.suppress(OSError):
                self.write()

    def write(self) -> None:
        """Write this process's counts now.

        Raises:
            OSError: the file cannot be written.
        """
        data = json.dumps({"pid": os.getpid(), "frontends": _local_snapshots()})
        replace_private_file(self.directory / f"{os.getpid()}.json", data.encode())

    def stop(self) -> None:
        """Write a last time and stop the thread."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.write()


def clear_shared(data_dir: Path) -> None:
    """Forget the counts of earlier runs (called once, before any worker starts)."""
    directory = Path(data_dir) / METRICS_DIR
    for path in directory.glob("*.json") if directory.is_dir() else ():
        with contextlib.suppress(OSError):
            path.unlink()


def _shared_snapshots(data_dir: Path | None) -> list[dict[str, Any]]:
    """Every process's counts: this one's live, the others' from their files."""
    found = _local_snapshots()
    if data_dir is None:
        return found
    directory = Path(data_dir) / METRICS_DIR
    if not directory.is_dir():
        return found
    me = f"{os.getpid()}.json"
    for path in sorted(directory.glob("*.json")):
        if path.name == me:
            continue
        try:
            data = json.loads(path.read_text())
            found.extend(data["frontends"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a file being replaced, or not ours: skip this scrape
    return found


class ServiceCollector(Collector):
    """Every kmscore metric, made when the registry is collected (a scrape).

    Args:
        service: The key service whose store and audit journal are read.
        share_dir: The data dir whose workers' shared counts are added, or
            None to report this process's only.
    """

    def __init__(self, service: KeyService, share_dir: Path | None = None) -> None:
        self.service = service
        self.share_dir = share_dir

    def collect(self) -> Iterable[Metric]:
        """The metric families of this moment."""
        yield from self._requests()
        yield from self._audit()
        yield from self._keys()

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "kms_requests",
            "Requests answered, by frontend, operation and outcome "
            "(Success or the AWS error code).",
            labels=["frontend", "operation", "outcome"],
        )
        latency = HistogramMetricFamily(
            "kms_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by frontend and operation.",
            labels=["frontend", "operation"],
        )
        counts: dict[tuple[str, str, str], float] = {}
        rows: dict[tuple[str, str], list[float]] = {}
        for snap in _shared_snapshots(self.share_dir):
            frontend = str(snap["frontend"])
            for op, outcome, row in snap["rows"]:
                key = (frontend, str(op), str(outcome))
                counts[key] = counts.get(key, 0) + sum(row[:-1])
                total = rows.setdefault((frontend, str(op)), [0.0] * _WIDTH)
                for i, value in enumerate(row):
                    total[i] += value
        for key, n in sorted(counts.items()):
            requests.add_metric(list(key), n)
        for (frontend, op), row in sorted(rows.items()):
            buckets: list[tuple[str, float]] = []
            running = 0.0
            for bound, n in zip(BUCKETS, row, strict=False):
                running += n
                buckets.append((repr(bound), running))
            running += row[len(BUCKETS)]
            buckets.append(("+Inf", running))
            latency.add_metric([frontend, op], buckets, row[-1])
        yield requests
        yield latency

    def _audit(self) -> Iterator[Metric]:
        trail = getattr(self.service.auditor, "trail", None)
        journal = getattr(trail, "journal", None)
        if journal is None:
            return  # the audit trail is off
        lag = GaugeMetricFamily(
            "kms_audit_lag_entries",
            "Audit entries this process journaled that are not in the chained trail yet.",
        )
        lag.add_metric([], journal.pending())
        from kmscore.audit.journal_format import journal_dir
        from kmscore.audit.journal_reader import pending_journals

        depth = GaugeMetricFamily(
            "kms_audit_journal_depth",
            "Journal files of every process of the data dir with entries not yet chained.",
        )
        depth.add_metric([], len(pending_journals(journal_dir(self.service.data_dir))))
        yield lag
        yield depth

    def _keys(self) -> Iterator[Metric]:
        store = self.service.store
        now = datetime.now(UTC)
        states = dict.fromkeys((state.value for state in KeyState), 0)
        due = dict.fromkeys((label for label, _ in _HORIZONS), 0)
        headroom = GaugeMetricFamily(
            "kms_gcm_invocations_remaining",
            "AES-GCM invocations a symmetric key version may still make before it must "
            "rotate (2**32 less a margin, minus those reserved).",
            labels=["key_id", "version"],
        )
        after: str | None = None
        while True:
            page = store.list_keys(after, _PAGE)
            for key in page:
                states[key.state.value] = states.get(key.state.value, 0) + 1
                if key.rotation_enabled and key.next_rotation_date is not None:
                    for label, days in _HORIZONS:
                        if key.next_rotation_date <= now + timedelta(days=days):
                            due[label] += 1
                if key.key_spec == "SYMMETRIC_DEFAULT" and key.state is not KeyState.PENDING_IMPORT:
                    for material in store.list_materials(key.key_id):
                        if material.wrapped:
                            left = max(0, DEFAULT_LIMIT - material.reserved)
                            headroom.add_metric([key.key_id, str(material.version)], left)
            if len(page) < _PAGE:
                break
            after = page[-1].key_id
        by_state = GaugeMetricFamily("kms_keys", "KMS keys by key state.", labels=["state"])
        for state, n in sorted(states.items()):
            by_state.add_metric([state], n)
        due_family = GaugeMetricFamily(
            "kms_keys_due_for_rotation",
            "Keys with automatic rotation whose next rotation date is within the horizon "
            "(0d: due now, waiting for maintenance).",
            labels=["within"],
        )
        for label, _ in _HORIZONS:
            due_family.add_metric([label], due[label])
        yield by_state
        yield due_family
        yield headroom


def render(service: KeyService, share_dir: Path | None = None) -> bytes:
    """One scrape's answer in the Prometheus text format.

    Raises:
        KMSError: the store could not be read.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service, share_dir))
    return generate_latest(registry)


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (a :func:`time.perf_counter` reading)."""
    return time.perf_counter() - start
