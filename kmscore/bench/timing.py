"""The timing code of every kmscore benchmark: loops, clocks, histograms and CPU.

``kms bench`` and the developer scripts in ``bench/`` time with these and
nothing else:

- :func:`per_op_ns` and :func:`best_ns`: the plain loop, nanoseconds per
  operation (the interleaved-rounds scripts); :func:`elapsed_ns` for a tight
  loop of the caller's own; :func:`timed_calls` (:func:`timed_awaits` on an
  event loop) for each call's latency;
- :class:`Latency`: an HDR histogram of nanoseconds (the ``hdrhistogram``
  package) with the percentiles the reports print;
- :func:`closed_loop` and :func:`open_loop`: ``concurrency`` threads, each
  calling as fast as it can, or all together at a fixed rate with each
  latency measured from the time its request was due (the coordinated-omission
  correction: a stalled server is charged for the requests it kept waiting);
- :func:`process_tree`, :func:`cpu_seconds`: the CPU time of a server and its
  worker processes, from ``/proc``.

Latencies are gathered in plain lists while a slice runs and moved into the
histograms after it, so recording costs the timed loop one ``append``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = [
    "PERCENTILES",
    "Latency",
    "Slice",
    "best_ns",
    "closed_loop",
    "cpu_seconds",
    "cpu_ticks",
    "elapsed_ns",
    "elapsed_ns_async",
    "error_code",
    "open_loop",
    "per_op_ns",
    "pipelined",
    "process_tree",
    "server_cpu",
    "timed_awaits",
    "timed_calls",
]

#: The percentiles every report prints.
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
#: The histogram's range: 1 ns to one hour, three significant digits.
_LOWEST: Final = 1
_HIGHEST: Final = 3600 * 10**9
_DIGITS: Final = 3

#: The open loop spins, rather than sleeps, this close to a call's due time.
_SPIN_NS: Final = 100_000

#: One scheduled call: the index of its operation, and the call.
Call = tuple[int, Callable[[], object]]


def per_op_ns(fn: Callable[[], object], calls: int, per_call: int = 1) -> float:
    """Nanoseconds per operation of ``calls`` calls of ``fn`` in a plain loop.

    Args:
        fn: The call.
        calls: How many times to call it.
        per_call: Operations one call does (keys of a batch), to divide by.

    Returns:
        The mean nanoseconds per operation.
    """
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / (calls * per_call)


def best_ns(fn: Callable[[], object], calls: int, repeats: int = 7, warmup: int = 0) -> float:
    """The best of ``repeats`` :func:`per_op_ns` loops (the least disturbed one).

    ``warmup`` calls run first, untimed.
    """
    for _ in range(warmup):
        fn()
    return min(per_op_ns(fn, calls) for _ in range(repeats))


def elapsed_ns(body: Callable[[], object]) -> int:
    """Nanoseconds one call of ``body`` takes (a loop of its own, kept tight)."""
    clock = time.perf_counter_ns
    start = clock()
    body()
    return clock() - start


def timed_calls(fn: Callable[[], object], calls: int) -> tuple[int, list[int]]:
    """Call ``fn`` ``calls`` times in this thread: total nanoseconds, and each call's."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    append = latencies.append
    start = clock()
    for _ in range(calls):
        t = clock()
        fn()
        append(clock() - t)
    return clock() - start, latencies


class Latency:
    """An HDR histogram of latencies in nanoseconds."""

    def __init__(self) -> None:
        """Make an empty histogram (1 ns to 1 hour, 3 significant digits)."""
        self.histogram = HdrHistogram(_LOWEST, _HIGHEST, _DIGITS)

    def record(self, values: Sequence[int]) -> None:
        """Add latencies (ns); values outside the range are clamped to it."""
        record = self.histogram.record_value
        for value in values:
            record(min(max(value, _LOWEST), _HIGHEST))

    def add(self, other: Latency) -> None:
        """Add another histogram's counts to this one."""
        self.histogram.add(other.histogram)

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return int(self.histogram.get_total_count())

    def percentile(self, p: float) -> float:
        """The latency (ns) at percentile ``p`` (0..100); 0 when empty."""
        return float(self.histogram.get_value_at_percentile(p)) if self.count else 0.0

    def summary_us(self) -> dict[str, float]:
        """p50, p90, p99, p99.9, max and mean in microseconds (all 0 when empty)."""
        if not self.count:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0, "mean": 0.0}
        out = {f"p{p:g}": self.percentile(p) / 1000 for p in PERCENTILES}
        out["max"] = float(self.histogram.get_max_value()) / 1000
        out["mean"] = float(self.histogram.get_mean_value()) / 1000
        return {k: round(v, 3) for k, v in out.items()}

    def percentile_curve_us(self) -> list[tuple[float, float]]:
        """(percentile, latency in us) pairs for plotting, up to the maximum."""
        points = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0]
        return [(p, self.percentile(p) / 1000) for p in points] if self.count else []


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call (or the exception's class name)."""
    for attr in ("code", "error_type"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(exc).__name__


@dataclass
class Slice:
    """What one run of a load shape measured: latencies per operation, errors, time.

    Attributes:
        latencies: Per operation index, the latencies (ns) of its successful calls,
            measured from when each call was due (open loop) or began (closed loop).
        service_times: Open loop only: the same calls measured from when they
            began; the difference to ``latencies`` is the waiting that a closed-loop
            tool would hide (coordinated omission).
        errors: Failed calls by AWS error code.
        elapsed: Wall seconds from the first call to the last answer.
        cpu: CPU seconds this process used meanwhile (every thread).
        completions: Seconds since the slice began at which each call ended,
            in buckets of ``BUCKET`` seconds, as counts.
    """

    latencies: list[list[int]]
    service_times: list[list[int]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: float = 0.0
    completions: Counter[int] = field(default_factory=Counter)

    BUCKET = 0.25

    @property
    def calls(self) -> int:
        """Successful calls."""
        return sum(len(v) for v in self.latencies)


class _Quota:
    """At most ``limit`` calls shared by all threads (``next`` on a count is atomic)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._count = itertools.count()

    def take(self) -> int | None:
        """The next call's number, or None when the quota is spent."""
        n = next(self._count)
        return n if self.limit is None or n < self.limit else None


def _run_threads(
    bodies: Sequence[Callable[[], None]], wait: Callable[[float], None] | None
) -> tuple[float, float]:
    """Run each body in its own thread; (wall seconds, CPU seconds) of the lot."""
    threads = [threading.Thread(target=b, daemon=True) for b in bodies]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.1)
            if wait is not None:
                wait(time.perf_counter() - t0)
    return time.perf_counter() - t0, time.process_time() - cpu0


def pipelined(
    connect: Callable[[], Awaitable[Any]],
    build: Callable[[Any], Sequence[Call]],
    inflight: int,
    operations: int,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    tick: Callable[[float, Slice], None] | None = None,
) -> Slice:
    """Keep ``inflight`` calls in flight on one asyncio client, closed loop.

    One thread runs an event loop (uvloop when installed); ``connect()`` makes
    the client on it, ``build(client)`` the schedule, whose calls return
    awaitables; ``inflight`` tasks each await the next call as soon as their
    last one is answered. The client is closed at the end.
    """
    import asyncio

    result = Slice([[] for _ in range(operations)])
    quota = _Quota(requests)
    span: list[int] = []

    async def main() -> None:
        client = await connect()
        try:
            schedule = build(client)
            clock = time.perf_counter_ns
            begin = clock()
            deadline = begin + int((seconds if seconds is not None else 1e9) * 1e9)
            lat, done, errors = result.latencies, result.completions, result.errors
            size = len(schedule)

            async def slot(offset: int) -> None:
                i = offset
                while quota.take() is not None:
                    now = clock()
                    if now >= deadline:
                        return
                    index, fn = schedule[i % size]
                    i += 1
                    try:
                        await fn()  # type: ignore[misc]
                    except Exception as exc:
                        errors[error_code(exc)] += 1
                        continue
                    end = clock()
                    lat[index].append(end - now)
                    done[int((end - begin) / 1e9 / Slice.BUCKET)] += 1

            await asyncio.gather(*(slot(k * 7919) for k in range(inflight)))
            span.append(clock() - begin)
        finally:
            await client.close()

    def body() -> None:
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]

            uvloop.run(main())
        except ImportError:
            asyncio.run(main())

    _, result.cpu = _run_threads([body], _ticker(tick, result))
    result.elapsed = span[0] / 1e9 if span else 0.0
    return result


async def timed_awaits(
    fn: Callable[[], Awaitable[object]],
    latencies: list[int],
    *,
    calls: int | None = None,
    seconds: float | None = None,
) -> None:
    """Await ``fn()`` in turn, ``calls`` times or for ``seconds``; append each latency (ns).

    Many of these gathered on one event loop are the pipelined load: each keeps
    one call in flight.
    """
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9) if seconds is not None else None
    append = latencies.append
    n = 0
    while (calls is None or n < calls) and (deadline is None or clock() < deadline):
        t = clock()
        await fn()
        append(clock() - t)
        n += 1


async def elapsed_ns_async(awaitable: Awaitable[object]) -> int:
    """Nanoseconds until ``awaitable`` is done."""
    clock = time.perf_counter_ns
    start = clock()
    await awaitable
    return clock() - start


def _ticker(
    tick: Callable[[float, Slice], None] | None, part: Slice
) -> Callable[[float], None] | None:
    return None if tick is None else (lambda seconds: tick(seconds, part))


def closed_loop(
    schedules: Sequence[Sequence[Call]],
    operations: int,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    tick: Callable[[float, Slice], None] | None = None,
) -> Slice:
    """Call as fast as answers come, one thread per schedule.

    Args:
        schedules: Per thread, the calls to cycle through (the mix, in order).
        operations: How many operation indexes there are.
        seconds: Stop starting calls after this long.
        requests: Or after this many calls, all threads together.
        tick: Called from the waiting thread every 0.1 s with the seconds so
            far and the slice being filled (the live display).

    Returns:
        What was measured.
    """
    result = Slice([[] for _ in range(operations)])
    quota = _Quota(requests)
    deadline = time.perf_counter_ns() + int((seconds if seconds is not None else 1e9) * 1e9)
    begin = time.perf_counter_ns()

    def body(schedule: Sequence[Call], offset: int) -> None:
        clock = time.perf_counter_ns
        lat = result.latencies
        done = result.completions
        errors = result.errors
        n = len(schedule)
        i = offset
        while quota.take() is not None:
            now = clock()
            if now >= deadline:
                return
            index, fn = schedule[i % n]
            i += 1
            try:
                fn()
            except Exception as exc:
                errors[error_code(exc)] += 1
                continue
            end = clock()
            lat[index].append(end - now)
            done[int((end - begin) / 1e9 / Slice.BUCKET)] += 1

    bodies = [
        (lambda s=s, k=k: body(s, k * 7919)) for k, s in enumerate(schedules)
    ]  # each thread starts elsewhere in the mix
    result.elapsed, result.cpu = _run_threads(bodies, _ticker(tick, result))
    return result


def open_loop(
    schedules: Sequence[Sequence[Call]],
    operations: int,
    rate: float,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    tick: Callable[[float, Slice], None] | None = None,
) -> Slice:
    """Start calls at ``rate`` per second, whatever the answers do.

    Call ``n`` is due at ``start + n / rate`` and is made by thread ``n mod
    threads``; its latency runs from when it was due, not from when a busy
    thread got round to it, so a server that stalls is charged for the calls it
    held up (the coordinated-omission correction of wrk2 and HdrHistogram).

    Args:
        schedules: Per thread, the calls to cycle through.
        operations: How many operation indexes there are.
        rate: Calls per second, all threads together (> 0).
        seconds: Schedule calls for this long.
        requests: Or this many calls.
        tick: As for :func:`closed_loop`.

    Returns:
        What was measured, with ``service_times`` too.
    """
    threads = len(schedules)
    result = Slice([[] for _ in range(operations)], [[] for _ in range(operations)])
    total = requests if requests is not None else max(1, int(rate * (seconds or 0.0)))
    interval = 1e9 / rate
    begin = time.perf_counter_ns() + 1_000_000  # 1 ms for the threads to start

    def body(schedule: Sequence[Call], k: int) -> None:
        clock = time.perf_counter_ns
        sleep = time.sleep
        lat, service = result.latencies, result.service_times
        done, errors = result.completions, result.errors
        size = len(schedule)
        for i, n in enumerate(range(k, total, threads)):
            due = begin + int(n * interval)
            now = clock()
            if due - now > _SPIN_NS:
                # Sleep short of the due time and spin the rest: a sleep wakes up
                # tens of microseconds late, and that lateness would be counted
                # as the server's.
                sleep((due - now - _SPIN_NS) / 1e9)
            while now < due:
                sleep(0)  # lets other threads (the audit writer) have the GIL
                now = clock()
            index, fn = schedule[(i + k * 7919) % size]
            try:
                fn()
            except Exception as exc:
                errors[error_code(exc)] += 1
                continue
            end = clock()
            lat[index].append(end - due)
            service[index].append(end - now)
            done[int((end - begin) / 1e9 / Slice.BUCKET)] += 1

    bodies = [(lambda s=s, k=k: body(s, k)) for k, s in enumerate(schedules)]
    result.elapsed, result.cpu = _run_threads(bodies, _ticker(tick, result))
    return result


# --- CPU of other processes -------------------------------------------------------------

_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``; just ``pid`` elsewhere)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        pids += process_tree(int(child))
    return pids


def cpu_ticks(pids: Sequence[int]) -> int:
    """User plus system clock ticks the processes have used (0 for gone ones)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds the processes have used, from ``/proc/<pid>/stat``."""
    return cpu_ticks(pids) / _TICKS


def server_cpu(pid: int | None) -> Callable[[], float] | None:
    """A reader of the CPU seconds of ``pid`` and its children, or None without one."""
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return None
    pids = process_tree(pid)
    return lambda: cpu_seconds(pids)
