"""What ``kms bench`` prints: the live progress and table, then the result tables and the bill."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kmscore.bench.results import Figures
from kmscore.bench.timing import Slice

__all__ = ["LiveView", "print_bill", "print_compare", "print_results"]


class LiveView:
    """A progress bar over the whole run and a table of each contender so far.

    Args:
        console: Where to draw.
        figures_total: Work units of the run (timed seconds, or calls), all contenders.
        by_requests: Units are calls rather than seconds.
    """

    def __init__(self, console: Console, figures_total: float, by_requests: bool) -> None:
        """Start drawing."""
        self.console = console
        self.by_requests = by_requests
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("warming up", total=figures_total)
        self.rows: dict[str, tuple[int, float, str, str, int]] = {}
        # The p50/p99 shown are the slowest operation's, over finished turns.
        self.done = 0.0
        self.done_by: dict[str, float] = {}
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)
        self.live.start()

    def _render(self) -> Group:
        table = Table("contender", "calls", "calls/s", "p50 us", "p99 us", "errors")
        for name, (calls, rate, p50, p99, errors) in self.rows.items():
            table.add_row(name, str(calls), f"{rate:,.0f}", p50, p99, str(errors))
        return Group(self.progress, table)

    def warmed(self, name: str) -> None:
        """A contender's warm-up is over."""
        self.progress.update(self.task, description=f"warmed up {name}")

    def _work(self, figures: Figures) -> float:
        if self.by_requests:
            return float(figures.total_calls + sum(figures.errors.values()))
        return figures.elapsed

    def tick(self, figures: Figures, part: Slice, seconds: float) -> None:
        """Called every 0.1 s while a turn runs."""
        calls = figures.total_calls + part.calls
        elapsed = figures.elapsed + seconds
        now = part.calls + sum(part.errors.values()) if self.by_requests else seconds
        self.progress.update(
            self.task, description=figures.contender.name, completed=self.done + now
        )
        self._row(figures, calls, calls / elapsed if elapsed else 0.0, sum(part.errors.values()))
        self.live.update(self._render())

    def _row(self, figures: Figures, calls: int, rate: float, errors: int) -> None:
        p50 = max((h.percentile(50) for h in figures.latency), default=0.0)
        p99 = max((h.percentile(99) for h in figures.latency), default=0.0)
        self.rows[figures.contender.name] = (
            calls,
            rate,
            f"{p50 / 1000:,.1f}" if p50 else "-",
            f"{p99 / 1000:,.1f}" if p99 else "-",
            sum(figures.errors.values()) + errors,
        )

    def turn_done(self, figures: Figures) -> None:
        """A turn ended: its figures are in."""
        name = figures.contender.name
        work = self._work(figures)
        self.done += work - self.done_by.get(name, 0.0)
        self.done_by[name] = work
        self._row(figures, figures.total_calls, figures.ops_per_s(), 0)
        self.progress.update(self.task, completed=self.done)
        self.live.update(self._render())

    def stop(self) -> None:
        """Stop drawing (the live lines are removed)."""
        self.live.stop()


def _print_wide(console: Console, table: Table) -> None:
    """Print a table at its natural width, even past the terminal's (a pipe's 80 columns)."""
    natural = console.measure(table, options=console.options.update_width(1 << 16)).maximum
    if natural > console.width:
        console = Console(width=natural, file=console.file)
    console.print(table)


def _us(value: float) -> str:
    return f"{value:,.1f}"


def print_results(console: Console, document: Mapping[str, Any]) -> None:
    """The table of every contender and operation, with ratios beside the target's."""
    contenders: Sequence[Mapping[str, Any]] = document["contenders"]
    ratios = {(r["contender"], r["operation"]): r for r in document["ratios"]}
    table = Table(title="kms bench: latency in microseconds, CPU in microseconds per call")
    for column in ("contender", "operation", "calls", "calls/s", "p50", "p90", "p99", "p99.9"):
        table.add_column(
            column, justify="left" if column in ("contender", "operation") else "right"
        )
    for column in ("max", "CPU/call", "vs target"):
        table.add_column(column, justify="right")
    for c in contenders:
        cpu = c["cpu_us_per_op"]
        cpu_text = "-" if cpu is None else _us(cpu)
        if c["server_cpu_us_per_op"] is not None:
            cpu_text += f" + {_us(c['server_cpu_us_per_op'])} server"
        for label, row in c["operations"].items():
            lat = row["latency_us"]
            ratio = ratios.get((c["name"], label))
            vs = "" if ratio is None else f"{ratio['throughput']:.2f}x calls/s"
            table.add_row(
                c["name"],
                label,
                f"{row['calls']:,}",
                f"{row['ops_per_s']:,.0f}",
                _us(lat["p50"]),
                _us(lat["p90"]),
                _us(lat["p99"]),
                _us(lat["p99.9"]),
                _us(lat["max"]),
                cpu_text,
                vs,
            )
            if "service_time_us" in row:
                svc = row["service_time_us"]
                table.add_row(
                    "",
                    "  (service time, uncorrected)",
                    "",
                    "",
                    _us(svc["p50"]),
                    _us(svc["p90"]),
                    _us(svc["p99"]),
                    _us(svc["p99.9"]),
                    _us(svc["max"]),
                    "",
                    "",
                )
    _print_wide(console, table)
    for c in contenders:
        unit = "MB/s" if c["unit"] == "bytes" else "data keys/s"
        line = f"{c['name']}: {c['ops_per_s']:,.0f} calls/s, {c['items_per_s']:,.1f} {unit}"
        if c["processes"] > 1:
            threads = f"{c['threads']} thread{'s' if c['threads'] != 1 else ''}"
            line += f" ({c['processes']} processes x {threads})"
        elif c["in_flight"] != c["threads"]:
            line += f" ({c['in_flight']} calls in flight on one asyncio connection)"
        else:
            line += f" ({c['threads']} thread{'s' if c['threads'] != 1 else ''})"
        if c["errors"]:
            line += "; errors: " + ", ".join(f"{k} x{v}" for k, v in c["errors"].items())
        console.print(line, highlight=False, soft_wrap=True)


def print_bill(console: Console, bill: Mapping[str, Any]) -> None:
    """The AWS KMS projection."""
    cost = bill["request_cost"]
    console.print(
        f"\nAWS KMS list prices for this mix at {bill['rate_per_s']:,.0f} calls/s "
        f"({bill['basis']}), per 730-hour month:",
        highlight=False,
        soft_wrap=True,
    )
    for op, n in bill["requests"].items():
        console.print(f"  {op:24} {n:>16,} requests", highlight=False)
    console.print(
        f"  requests ${cost['gross']:,.2f} - free tier ${cost['free_tier']:,.2f} = "
        f"${cost['net']:,.2f}; keys ${bill['key_cost']:,.2f} ({bill['keys']} key-months); "
        f"total ${bill['total']:,.2f}",
        highlight=False,
        soft_wrap=True,
    )
    cache, batch = bill["with_cache"], bill["with_batches"]
    console.print(
        f"  with the data key cache ({cache['reuse']} messages per data key): requests "
        f"${cache['request_cost']:,.2f}, saving ${cache['saving']:,.2f}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  with batch calls ({batch['batch']} data keys per GenerateDataKeys/DecryptMany, "
        f"priced as one request as kms usage counts them): requests "
        f"${batch['request_cost']:,.2f}, saving ${batch['saving']:,.2f}",
        highlight=False,
        soft_wrap=True,
    )


def print_compare(
    console: Console, rows: Sequence[Mapping[str, Any]], fail_above: float | None
) -> None:
    """The deltas against an older run."""
    table = Table(title="compared with the older run")
    for column in (
        "contender",
        "operation",
        "calls/s old",
        "new",
        "change",
        "p99 old",
        "new",
        "change",
        "",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["contender"],
            r["operation"],
            f"{r['old_ops_per_s']:,.0f}",
            f"{r['new_ops_per_s']:,.0f}",
            f"{r['ops_per_s_change_pct']:+.1f}%",
            _us(r["old_p99_us"]),
            _us(r["new_p99_us"]),
            f"{r['p99_change_pct']:+.1f}%",
            "REGRESSION" if r["regressed"] else "",
        )
    _print_wide(console, table)
    if fail_above is not None:
        bad = sum(1 for r in rows if r["regressed"])
        console.print(
            f"{bad} regression(s) past {fail_above:g}% on the target"
            if bad
            else f"no regression past {fail_above:g}% on the target",
            highlight=False,
            soft_wrap=True,
        )
