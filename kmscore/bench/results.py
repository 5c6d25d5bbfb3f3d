"""The figures of a run: gathering them, the JSON document, comparing two runs, the plot.

The JSON document (``--json FILE``) has ``schema`` (:data:`SCHEMA`),
``started``, ``machine`` (CPU model, cores, load average, OpenSSL, Python,
kmscore and engine backend), ``parameters`` (the command's options),
``contenders`` (per contender: ``name``, ``role``, ``ops_per_s``,
``items_per_s``, ``unit``, ``cpu_us_per_op``, ``server_cpu_us_per_op``,
``calls``, ``errors`` by AWS code, ``round_ops_per_s``, ``timeline``, and per
operation ``calls``, ``ops_per_s``, ``latency_us`` with p50/p90/p99/p99.9/max/
mean, and in open loop ``service_time_us``), ``ratios`` and ``bill``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from kmscore.bench.targets import Contender
from kmscore.bench.timing import Latency, Slice

__all__ = ["SCHEMA", "Figures", "compare", "cpu_model", "machine", "plot", "ratios", "write_json"]

SCHEMA: Final = "kmscore-bench/1"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """The machine a run was made on."""
    from importlib.metadata import PackageNotFoundError, version

    from kmscore import engine

    try:
        kmscore_version = version("kmscore")
    except PackageNotFoundError:
        kmscore_version = "unknown"

    model = cpu_model()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "openssl": engine.openssl_version(),
        "engine_backend": engine.BACKEND,
        "kmscore": kmscore_version,
    }


@dataclass
class Figures:
    """Everything measured for one contender, over all its rounds."""

    contender: Contender
    latency: list[Latency] = field(default_factory=list)
    service: list[Latency] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: float = 0.0
    server_cpu: float | None = None
    rounds: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """One histogram and count per operation."""
        n = len(self.contender.operations)
        self.latency = [Latency() for _ in range(n)]
        self.service = [Latency() for _ in range(n)]
        self.calls = [0] * n

    def add(self, part: Slice, started: float, server_cpu: float | None) -> None:
        """Add one slice (a round) that began ``started`` seconds into the run."""
        for i, values in enumerate(part.latencies):
            self.latency[i].record(values)
            self.calls[i] += len(values)
        for i, values in enumerate(part.service_times):
            self.service[i].record(values)
        self.errors.update(part.errors)
        self.elapsed += part.elapsed
        self.cpu += part.cpu
        if server_cpu is not None:
            self.server_cpu = (self.server_cpu or 0.0) + server_cpu
        self.rounds.append(part.calls / part.elapsed if part.elapsed else 0.0)
        whole = int(part.elapsed / Slice.BUCKET)  # the last, partial bucket would read low
        for bucket, count in sorted(part.completions.items()):
            if bucket >= whole and whole > 0:
                continue
            when = started + (bucket + 0.5) * Slice.BUCKET
            self.timeline.append((round(when, 3), count / Slice.BUCKET))

    @property
    def total_calls(self) -> int:
        """Successful calls of every operation."""
        return sum(self.calls)

    def ops_per_s(self) -> float:
        """Successful calls per second of timed wall time."""
        return self.total_calls / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON figures of this contender."""
        c = self.contender
        calls = self.total_calls
        items = sum(n * k for n, k in zip(self.calls, c.items, strict=True))
        per_op: dict[str, Any] = {}
        for i, op in enumerate(c.operations):
            row: dict[str, Any] = {
                "calls": self.calls[i],
                "ops_per_s": round(self.calls[i] / self.elapsed, 2) if self.elapsed else 0.0,
                "latency_us": self.latency[i].summary_us(),
            }
            if self.service[i].count:
                row["service_time_us"] = self.service[i].summary_us()
            per_op[op.label] = row
        total = Latency()
        for h in self.latency:
            total.add(h)
        per_s = items / self.elapsed if self.elapsed else 0.0
        return {
            "name": c.name,
            "role": c.role,
            "threads": len(c.schedules),
            "processes": c.pool.processes if c.pool else 1,
            "in_flight": (
                c.pipeline[2]
                if c.pipeline
                else len(c.schedules) * (c.pool.processes if c.pool else 1)
            ),
            "calls": calls,
            "errors": dict(self.errors.most_common()),
            "elapsed_s": round(self.elapsed, 4),
            "ops_per_s": round(self.ops_per_s(), 2),
            "unit": c.unit,
            "items_per_s": round(per_s / 1e6 if c.unit == "bytes" else per_s, 3),
            "cpu_us_per_op": round(self.cpu / calls * 1e6, 3) if calls else None,
            "server_cpu_us_per_op": (
                round(self.server_cpu / calls * 1e6, 3)
                if calls and self.server_cpu is not None
                else None
            ),
            "latency_us": total.summary_us(),
            "operations": per_op,
            "round_ops_per_s": [round(r, 2) for r in self.rounds],
            "timeline": self.timeline,
            "_curves": {
                op.label: self.latency[i].percentile_curve_us() for i, op in enumerate(c.operations)
            },
        }


def ratios(contenders: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each other contender against the target, per operation both ran.

    ``throughput`` is the other's ops/s over the target's, for the operation's
    share of each run; ``p50`` the other's median latency over the target's.
    """
    target = next((c for c in contenders if c["role"] == "target"), None)
    out: list[dict[str, Any]] = []
    if target is None:
        return out
    for other in contenders:
        if other is target:
            continue
        for label, row in other["operations"].items():
            mine = target["operations"].get(label)
            if not mine or not mine["ops_per_s"] or not mine["latency_us"]["p50"]:
                continue
            out.append(
                {
                    "contender": other["name"],
                    "operation": label,
                    "throughput": round(row["ops_per_s"] / mine["ops_per_s"], 4),
                    "p50": round(row["latency_us"]["p50"] / mine["latency_us"]["p50"], 4),
                }
            )
    return out


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write the document (without the plot's private curves)."""
    clean = dict(document)
    clean["contenders"] = [
        {k: v for k, v in c.items() if not k.startswith("_")} for c in document["contenders"]
    ]
    path.write_text(json.dumps(clean, indent=2) + "\n")


def started_now() -> str:
    """The run's start time, UTC ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def compare(
    old: Mapping[str, Any], new: Mapping[str, Any], fail_above: float | None
) -> tuple[list[dict[str, Any]], bool]:
    """Deltas of every (contender, operation) both runs have.

    A regression is throughput (ops/s) down by more than ``fail_above``
    percent, or p99 latency up by more than that, on a target row; baselines
    are shown but never fail a run (they are there to show the machine's noise).

    Returns:
        The rows (``contender``, ``operation``, old and new ops/s and p99, the
        two deltas in percent, ``regressed``), and whether any row regressed.
    """
    before = {c["name"]: c for c in old.get("contenders", [])}
    rows: list[dict[str, Any]] = []
    # Runs of other shapes are compared all the same, with a warning (see differences()).
    failed = False
    for c in new["contenders"]:
        prior = before.get(c["name"])
        if prior is None:
            continue
        for label, row in c["operations"].items():
            was = prior.get("operations", {}).get(label)
            if not was or not was.get("ops_per_s"):
                continue
            d_rate = (row["ops_per_s"] / was["ops_per_s"] - 1) * 100
            old_p99 = was["latency_us"]["p99"]
            d_p99 = (row["latency_us"]["p99"] / old_p99 - 1) * 100 if old_p99 else 0.0
            bad = (
                fail_above is not None
                and c["role"] == "target"
                and (-d_rate > fail_above or d_p99 > fail_above)
            )
            failed = failed or bad
            rows.append(
                {
                    "contender": c["name"],
                    "operation": label,
                    "old_ops_per_s": was["ops_per_s"],
                    "new_ops_per_s": row["ops_per_s"],
                    "ops_per_s_change_pct": round(d_rate, 2),
                    "old_p99_us": old_p99,
                    "new_p99_us": row["latency_us"]["p99"],
                    "p99_change_pct": round(d_p99, 2),
                    "regressed": bad,
                }
            )
    return rows, failed


#: The parameters two runs must share for their figures to be comparable.
COMPARABLE: Final = ("target", "operations", "mode", "concurrency", "pipeline", "rate", "batch")


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The parameters in which two runs differ (their deltas then mean less)."""
    a, b = old.get("parameters", {}), new.get("parameters", {})
    return [k for k in COMPARABLE if a.get(k) != b.get(k)]


def plot_available() -> bool:
    """Whether matplotlib can be imported (the ``plot`` extra)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def plot(path: Path, document: Mapping[str, Any]) -> None:
    """Draw latency by percentile and throughput over time to ``path`` (.png or .svg).

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for c in document["contenders"]:
        for label, curve in c.get("_curves", {}).items():
            if not curve:
                continue
            xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p, _ in curve]
            left.plot(xs, [v for _, v in curve], marker=".", label=f"{c['name']} {label}")
        if c["timeline"]:
            right.plot(
                [t for t, _ in c["timeline"]],
                [r for _, r in c["timeline"]],
                ".",
                markersize=3,
                label=c["name"],
            )
    ticks = [2, 10, 100, 1000, 10000, 1e5]
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(ticks, ["p50", "p90", "p99", "p99.9", "p99.99", "max"])
    left.set_ylabel("latency (us)")
    left.set_title("Latency by percentile")
    left.legend(fontsize="x-small")
    right.set_xlabel("seconds into the run (contenders take turns)")
    right.set_ylabel("calls/s")
    right.set_title("Throughput over time")
    right.legend(fontsize="x-small")
    params = document["parameters"]
    figure.suptitle(f"kms bench --target {params['target']} ({document['started']})")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
