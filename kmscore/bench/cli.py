"""``kms bench`` (and ``python -m kmscore.bench``): how fast, compared with what, at what cost.

Exit status: 0 after a run; 1 when ``--compare`` finds a regression past
``--fail-above``; 2 for bad arguments or a target that cannot be reached or
refuses the credentials (one line on stderr saying which).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

# The rest loads when the command runs: every ``kms`` command builds this one.
if TYPE_CHECKING:
    from kmscore.bench.operations import Operation
    from kmscore.bench.runner import Load
    from kmscore.bench.targets import Contender, Workspace

__all__ = ["BenchCommand", "bench", "main"]

TARGETS = ("library", "socket", "http", "envelope")


class _OneLine(click.ClickException):
    """An error printed as one line, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """``kms bench: <message>`` on stderr."""
        click.echo(f"kms bench: {self.format_message()}", err=True)


class BenchCommand(click.Command):
    """A command whose usage errors are one line and exit 2."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the arguments; a usage error becomes :class:`_OneLine`."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _OneLine(exc.format_message()) from exc


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]i?B?)?", text.strip(), re.IGNORECASE)
    if not match or int(match[1]) <= 0:
        raise _OneLine(f"--size {text!r} is not a positive size (e.g. 65536, 64K, 1M)")
    unit = (match[2] or "").upper()[:1]
    return int(match[1]) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]


def _operations(target: str, op: str | None, mix: str | None) -> list[Operation]:
    from kmscore.bench.operations import parse_mix, parse_operation

    envelope = target == "envelope"
    if op and mix:
        raise _OneLine("give --op or --mix, not both")
    try:
        if mix:
            return parse_mix(mix, envelope)
        default = "EncryptStream" if envelope else "GenerateDataKey"
        return [parse_operation(op or default, envelope)]
    except ValueError as exc:
        raise _OneLine(str(exc)) from exc


def _region(region: str | None, profile: str | None) -> str:
    if region:
        return region
    try:
        import botocore.session  # type: ignore[import-untyped,import-not-found,unused-ignore]

        found = botocore.session.Session(profile=profile).get_config_variable("region")
    except Exception:
        found = None
    return str(found or "us-east-1")


def _endpoint(
    url: str, name: str, role: str, region: str, profile: str | None, ops: Sequence[Operation],
    threads: int, batch: int, seed: int,
) -> Contender:  # fmt: skip
    from kmscore.bench import targets
    from kmscore.bench.http import credentials_from_chain
    from kmscore.bench.targets import BenchSetupError

    try:
        creds = credentials_from_chain(profile)
    except ImportError as exc:
        raise BenchSetupError(
            "--endpoint-url needs botocore: pip install 'kmscore[bench]'"
        ) from exc
    if creds is None:
        raise BenchSetupError(
            f"no AWS credentials found for {url} (environment, ~/.aws, --profile)"
        )
    clients = targets.http_clients(url, region, creds, threads)
    return targets.kms_contender(name, role, clients, ops, threads, batch, seed)


def _contenders(
    ws: Workspace, o: dict[str, Any], ops: list[Operation], out: list[Contender]
) -> list[Contender]:
    """Build the target and the baselines into ``out`` (so a failure can clean up)."""
    from kmscore.bench import targets

    target, threads, batch, seed = o["target"], o["concurrency"], o["batch"], o["seed"]
    endpoints = list(o["endpoint_url"])
    region = _region(o["region"], o["profile"])
    spec: Any = None  # how --processes workers reach the target
    if target == "library":
        kms = targets.library_client(ws, o["data_dir"], not o["no_audit"])
        spec = ("library", str(kms.service.data_dir), None, None)
        out.append(
            targets.kms_contender("library", "target", lambda t: kms, ops, threads, batch, seed)
        )
    elif target == "socket":
        remote, pid = targets.socket_client(ws, o["socket_path"], not o["no_audit"])
        spec = ("socket", remote.socket_path, None, None)
        name = "socket" if pid is not None else f"socket {remote.socket_path}"
        contender = targets.kms_contender(
            name, "target", lambda t: remote, ops, 1 if o["pipeline"] else threads, batch, seed, pid
        )
        if o["pipeline"]:
            contender.name = f"{name} pipelined x{threads}"
            targets.pipelined_socket(contender, remote.socket_path, remote, threads, batch, seed)
        out.append(contender)
    elif target == "http":
        if endpoints:
            url = endpoints.pop(0)
            spec = ("http", url, region, None)
            out.append(
                _endpoint(url, url, "target", region, o["profile"], ops, threads, batch, seed)
            )
        else:
            url, creds, pid = targets.start_http_server(ws, o["server_workers"])
            clients = targets.http_clients(url, "us-east-1", creds, threads)
            spec = ("http", url, "us-east-1", creds)
            out.append(
                targets.kms_contender("http", "target", clients, ops, threads, batch, seed, pid)
            )
    else:
        out.append(
            targets.envelope_contender(
                ws, ops, o["size"], threads, seed, not o["no_audit"], o["envelope_cache"]
            )
        )
    if o["processes"] > 1:
        _pool(ws, o, out[0], spec, ops)
    if o["baselines"]:
        if target != "envelope" and importlib.util.find_spec("moto") is None:
            o["notes"].append("moto is not installed (pip install 'moto[kms]'): no moto baseline")
        if target == "envelope":
            out.append(targets.envelope_baseline(ops, o["size"]))
        else:
            for make in (
                targets.engine_baseline,
                targets.cryptography_baseline,
                targets.moto_baseline,
            ):
                base = make(ops, batch)
                if base is not None:
                    out.append(base)
    for url in endpoints if target != "envelope" else []:
        out.append(_endpoint(url, url, "baseline", region, o["profile"], ops, threads, batch, seed))
    return out


def _pool(ws: Workspace, o: dict[str, Any], target: Contender, spec: Any, ops: Any) -> None:
    """Give the target ``--processes`` worker processes (each with ``--concurrency`` threads)."""
    from kmscore.bench.processes import ClientSpec, WorkerPool
    from kmscore.bench.targets import BenchSetupError

    kind, where, region, creds = spec
    if kind == "http" and creds is None:
        from kmscore.bench.http import credentials_from_chain

        creds = credentials_from_chain(o["profile"])
    client = ClientSpec(kind, where, not o["no_audit"], region or "us-east-1", creds)
    try:
        pool = WorkerPool(o["processes"], client, ops, o["concurrency"], o["batch"], o["seed"])
    except RuntimeError as exc:
        raise BenchSetupError(str(exc)) from exc
    ws.closers.append(pool.close)
    target.pool = pool
    target.name += f" x{o['processes']} processes"


def _bill(document: dict[str, Any], o: dict[str, Any], ops: list[Operation]) -> dict[str, Any]:
    from kmscore.bench import bill as billing

    target = document["contenders"][0]
    calls = target["calls"] or 1
    rate = target["ops_per_s"]
    monthly_calls = o["bill_requests"] or rate * billing.SECONDS_PER_MONTH
    per_month: dict[tuple[str, str | None], float] = {}
    for op in ops:
        row = target["operations"][op.label]
        n = row["calls"] / calls * monthly_calls
        name = op.name
        if name == "GenerateDataKeys":
            name, n = "GenerateDataKey", n * o["batch"]  # AWS: one request per data key
        elif name.startswith("Encrypt") and op.key_spec is None:
            name = "GenerateDataKey"  # an envelope message: one data key
        elif name.startswith("Decrypt") and op.key_spec is None:
            name = "Decrypt"
        key = (name, op.key_spec or "SYMMETRIC_DEFAULT")
        per_month[key] = per_month.get(key, 0.0) + n
    keys = len({op.key_spec or "SYMMETRIC_DEFAULT" for op in ops})
    keys += any(op.name == "ReEncrypt" for op in ops)
    out = billing.monthly_bill(per_month, keys, reuse=o["cache_reuse"], batch=o["batch"])
    out["rate_per_s"] = rate
    out["keys"] = keys
    out["basis"] = (
        f"{o['bill_requests']:,} calls a month as given"
        if o["bill_requests"]
        else "the measured rate, all month"
    )
    return out


@click.command(cls=BenchCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="library",
    show_default=True,
    help="What to time.",
)
@click.option(
    "--op",
    default=None,
    metavar="OP[:KEYSPEC]",
    help="One operation [GenerateDataKey; EncryptStream for envelope].",
)
@click.option(
    "--mix",
    default=None,
    metavar="OP=W,...",
    help="Operations by weight, e.g. GenerateDataKey=1,Decrypt=10.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1024),
    default=1,
    show_default=True,
    help="Threads calling at once (closed loop), or sharing the --rate.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=256),
    default=1,
    show_default=True,
    help="Worker processes for the target, each with --concurrency threads (past the GIL).",
)
@click.option(
    "--pipeline",
    is_flag=True,
    help="Socket target: --concurrency calls in flight on one asyncio connection.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Open loop: calls per second, latency from when each was due.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Timed seconds per contender [10].",
)
@click.option(
    "--requests", type=click.IntRange(min=1), default=None, help="Or calls per contender."
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Untimed seconds per contender first.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help="Turns per contender, interleaved [one per 2 s, 1 to 10].",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1, max=10_000),
    default=100,
    show_default=True,
    help="Data keys per GenerateDataKeys call.",
)
@click.option("--size", default="1M", show_default=True, help="Envelope message size.")
@click.option("--envelope-cache", is_flag=True, help="Envelope target through a DataKeyCache.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Library target: this data dir instead of a temporary one.",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Socket target: a running daemon instead of a new one.",
)
@click.option(
    "--endpoint-url",
    multiple=True,
    metavar="URL",
    help="HTTP target: this endpoint; again (or with other targets): a baseline.",
)
@click.option("--region", default=None, help="Signing region of --endpoint-url.")
@click.option("--profile", default=None, help="AWS profile for --endpoint-url credentials.")
@click.option(
    "--server-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes of the kms serve --http this starts.",
)
@click.option("--no-audit", is_flag=True, help="Servers and LocalKMS without the audit trail.")
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Run the raw engine, cryptography and moto beside the target.",
)
@click.option(
    "--cache-reuse",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Messages per data key for the bill's data-key-cache line.",
)
@click.option(
    "--bill-requests",
    type=click.IntRange(min=1),
    default=None,
    help="Price this many calls a month of the mix instead of the measured rate.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every figure to FILE.",
)
@click.option(
    "--compare",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="OLD.json",
    help="Print the changes since an older --json run.",
)
@click.option(
    "--fail-above",
    type=click.FloatRange(min=0),
    default=None,
    metavar="PCT",
    help="With --compare: exit 1 when the target lost more than PCT%.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.png|svg",
    help="Draw latency percentiles and throughput over time.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Mix and turn order.")
@click.option("--live/--no-live", default=None, help="Live progress [on a terminal].")
def bench(**o: Any) -> None:
    """Benchmark kmscore (or any AWS KMS endpoint) on this machine.

    Runs the target and its baselines in interleaved turns, then prints calls/s,
    CPU per call, latency percentiles (HDR histogram), errors by AWS code and
    what the load would cost on AWS KMS.
    """
    sys.exit(execute(o))


def execute(o: dict[str, Any]) -> int:
    """Run ``kms bench`` with parsed options; returns the exit status.

    Raises:
        _OneLine: A bad argument or a target that cannot be set up.
    """
    from rich.console import Console

    from kmscore.bench import display, results
    from kmscore.bench.runner import Load, run
    from kmscore.bench.targets import BenchSetupError, Workspace

    ops = _operations(o["target"], o["op"], o["mix"])
    o["notes"] = []
    o["size"] = _size(o["size"])
    if o["duration"] is not None and o["requests"] is not None:
        raise _OneLine("give --duration or --requests, not both")
    if o["fail_above"] is not None and o["compare"] is None:
        raise _OneLine("--fail-above needs --compare")
    if o["plot"] is not None:
        if o["plot"].suffix.lower() not in (".png", ".svg"):
            raise _OneLine(f"--plot {o['plot']}: the file must end in .png or .svg")
        if not results.plot_available():
            raise _OneLine("--plot needs matplotlib: pip install 'kmscore[plot]'")
    if o["no_audit"] and o["target"] == "http":
        raise _OneLine("--no-audit: kms serve --http always keeps its audit trail")
    if o["processes"] > 1 and (o["pipeline"] or o["target"] == "envelope"):
        raise _OneLine("--processes is for the library, socket and http targets, on threads")
    if o["pipeline"] and (o["target"] != "socket" or o["rate"] is not None):
        raise _OneLine("--pipeline is for the socket target, closed loop")
    if o["rate"] is not None and o["target"] == "envelope":
        raise _OneLine("--rate is for the KMS targets; the envelope target runs closed loop")
    if o["target"] != "http" and o["endpoint_url"] and o["target"] == "envelope":
        raise _OneLine("--endpoint-url baselines are for the KMS targets")
    old = None
    if o["compare"] is not None:
        try:
            old = json.loads(o["compare"].read_text())
        except (OSError, ValueError) as exc:
            raise _OneLine(f"--compare {o['compare']}: cannot read it: {exc}") from exc
        if not isinstance(old, dict) or old.get("schema") != results.SCHEMA:
            raise _OneLine(f"--compare {o['compare']}: not a kms bench --json file")
    seconds = o["duration"] if o["duration"] is not None or o["requests"] else 10.0
    rounds = o["rounds"] or (max(1, min(10, int(seconds // 2))) if seconds else 1)
    if o["requests"] is not None:
        rounds = min(rounds, o["requests"])
    load = Load(seconds, o["requests"], o["rate"], rounds, o["warmup"], o["seed"])
    console = Console()
    ws = Workspace()
    try:
        contenders: list[Contender] = []
        try:
            _contenders(ws, o, ops, contenders)
        except BenchSetupError as exc:
            raise _OneLine(str(exc)) from exc
        finally:
            for contender in contenders:  # before the clients close (closers run last first)
                if contender.cleanup is not None:
                    ws.closers.append(contender.cleanup)
        started = results.started_now()
        before = results.machine()
        live_on = o["live"] if o["live"] is not None else console.is_terminal
        total = (o["requests"] or 0) if o["requests"] else seconds
        view = (
            display.LiveView(console, total * len(contenders), bool(o["requests"]))
            if live_on
            else None
        )
        try:
            figures = run(contenders, load, view)
        finally:
            if view is not None:
                view.stop()
    finally:
        ws.close()
    summaries = [f.summary() for f in figures]
    document: dict[str, Any] = {
        "schema": results.SCHEMA,
        "started": started,
        "machine": before,
        "load_average_after": results.machine()["load_average"],
        "parameters": _parameters(o, ops, load),
        "contenders": summaries,
        "ratios": results.ratios(summaries),
        "notes": o["notes"],
    }
    document["bill"] = _bill(document, o, ops)
    display.print_results(console, document)
    display.print_bill(console, document["bill"])
    for note in document["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    status = 0
    if old is not None:
        rows, failed = results.compare(old, document, o["fail_above"])
        differ = results.differences(old, document)
        if differ:
            console.print(
                f"note: the older run differs in {', '.join(differ)}; its figures are not "
                "the same measurement",
                highlight=False,
                soft_wrap=True,
            )
        document["compare"] = {"against": str(o["compare"]), "rows": rows, "regressed": failed}
        display.print_compare(console, rows, o["fail_above"])
        status = 1 if failed else 0
    if o["json_path"] is not None:
        results.write_json(o["json_path"], document)
    if o["plot"] is not None:
        results.plot(o["plot"], document)
    return status


def _parameters(o: dict[str, Any], ops: list[Operation], load: Load) -> dict[str, Any]:
    return {
        "target": o["target"],
        "operations": [{"operation": op.label, "weight": op.weight} for op in ops],
        "mode": "open" if load.rate is not None else "closed",
        "concurrency": o["concurrency"],
        "pipeline": o["pipeline"],
        "processes": o["processes"],
        "rate": load.rate,
        "duration_s": load.seconds,
        "requests": load.requests,
        "rounds": load.rounds,
        "warmup_s": load.warmup,
        "batch": o["batch"],
        "size": o["size"] if o["target"] == "envelope" else None,
        "audit": not o["no_audit"],
        "endpoint_urls": list(o["endpoint_url"]),
        "server_workers": o["server_workers"],
        "seed": o["seed"],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m kmscore.bench``."""
    bench.main(args=argv, prog_name="python -m kmscore.bench")
