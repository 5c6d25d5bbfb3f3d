"""``python -m kmscore.frontends.awsjson``: the HTTP endpoint alone, for tests and benchmarks.

    python -m kmscore.frontends.awsjson --data-dir D --listen 127.0.0.1:4599 [--workers N]

Opens the data dir (``$KMS_PASSPHRASE`` for a passphrase-protected one), with
its audit trail, prints ``AWS_ENDPOINT_URL_KMS=http://HOST:PORT`` once every
worker listens, and serves until SIGINT or SIGTERM. ``--workers N`` runs N
processes on the same port (``SO_REUSEPORT``: the kernel spreads connections
over them), each with its own view of the one data dir. ``kms serve --http``
is the way to run it beside the Unix-socket daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from kmscore.service import KeyService, default_data_dir, open_service

from ..limits import ConnectionLimits
from ..ops.endpoint import OpsRoutes
from ..ops.metrics import CountSharer
from .server import start_http_server
from .workers import READY, reserve_port, spawn_worker, stop_workers, wait_ready


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kmscore.frontends.awsjson",
        description="Serve the AWS KMS JSON API (SigV4) for one data dir.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $KMS_DATA_DIR")
    parser.add_argument(
        "--listen", type=_address, default=("127.0.0.1", 4599), help="HOST:PORT (port 0: any)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default=os.environ.get("KMSCORE_EVENT_LOOP") or "auto",
        help="event loop: uvloop when installed (auto), or asyncio's own; "
        "default $KMSCORE_EVENT_LOOP",
    )
    parser.add_argument("--max-connections", type=int, default=None, help="per worker")
    parser.add_argument(
        "--idle-timeout", type=float, default=None, help="seconds; 0: never (per worker)"
    )
    parser.add_argument(
        "--any-region",
        action="store_true",
        help="answer any Region, making it on first use (development and CI)",
    )
    # Internal: a worker started by the first process, on its port.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


async def _serve(args: argparse.Namespace, host: str, port: int, spawn: int) -> int:
    data_dir = args.data_dir or default_data_dir()
    service = open_service(
        data_dir, passphrase=os.environ.get("KMS_PASSPHRASE") or None, audit=True
    )
    limits = _limits(args)
    children: list[subprocess.Popen[str]] = []
    ops, sharer = _ops(service, data_dir)
    try:
        server = await start_http_server(
            service,
            host,
            port,
            reuse_port=args.workers > 1,
            limits=limits,
            ops=ops,
            any_region=args.any_region,
        )
        try:
            for _ in range(spawn):
                child = spawn_worker(
                    args.data_dir,
                    host,
                    server.port,
                    args.workers,
                    loop=args.loop,
                    limits=limits,
                    any_region=args.any_region,
                )
                children.append(child)
            try:
                await wait_ready(children)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 1
            print(READY if args.worker else server.env_line, flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            await stop_workers(children)
            await server.close()
    finally:
        if sharer is not None:
            sharer.stop()
        service.close()
    return 0


def _ops(service: KeyService, data_dir: Path) -> tuple[OpsRoutes | None, CountSharer | None]:
    """The operator's paths of a worker of ``kms serve``, as its environment says.

    ``$KMSCORE_OPS_AUTH`` (set by ``kms serve`` for its workers) turns on
    ``/metrics``, ``/health`` and ``/ready`` with that authentication and the
    token in ``$KMSCORE_METRICS_TOKEN``; the worker's counts are shared in the
    data dir for the others' scrapes.
    """
    auth = os.environ.get("KMSCORE_OPS_AUTH")
    if not auth:
        return None, None
    routes = OpsRoutes(
        service,
        None,
        auth=auth,
        token=os.environ.get("KMSCORE_METRICS_TOKEN") or None,
        share_dir=data_dir,
    )
    sharer = CountSharer(data_dir)
    sharer.start()
    return routes, sharer


def _limits(args: argparse.Namespace) -> ConnectionLimits | None:
    if args.max_connections is None and args.idle_timeout is None:
        return None
    defaults = ConnectionLimits()
    return ConnectionLimits(
        args.max_connections if args.max_connections is not None else defaults.max_connections,
        args.idle_timeout if args.idle_timeout is not None else defaults.idle_timeout,
    )


def _run(coro_args: tuple[argparse.Namespace, str, int, int], loop_kind: str) -> int:
    if loop_kind != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            if loop_kind == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed") from None
        else:
            return int(uvloop.run(_serve(*coro_args)))
    return asyncio.run(_serve(*coro_args))


def main(argv: list[str] | None = None) -> int:
    """Run the endpoint until SIGINT or SIGTERM; the exit status."""
    args = _parser().parse_args(argv)
    host, port = args.listen
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.worker or args.workers == 1:
        return _run((args, host, port, 0), args.loop)
    reserved = reserve_port(host, port)
    try:
        port = reserved.getsockname()[1]
        return _run((args, host, port, args.workers - 1), args.loop)
    finally:
        reserved.close()


if __name__ == "__main__":
    sys.exit(main())
