"""``kms serve``: the daemon on a Unix socket, and optionally the AWS HTTP endpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ._common import data_dir_option, resolve_data_dir

__all__ = ["register"]

_MODES = {"owner": 0o600, "group": 0o660, "everyone": 0o666}


def _listen(value: str, flag: str = "--http") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=flag)
    return host.strip("[]") or "127.0.0.1", int(port)


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--config's callback (eager): the file's and the environment's settings become defaults."""
    from ..ops.config import settings_for

    assert ctx.command is not None
    defaults = settings_for(ctx.command, ctx, value, os.environ, skip={"config", "help"})
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


@click.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="A TOML file of these flags (key: the flag's name, e.g. max-connections = 100). "
    "KMS_<FLAG> environment variables override it; flags override both.",
)
@data_dir_option
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to listen [<data-dir>/kms.sock].",
)
@click.option(
    "--socket-mode",
    type=click.Choice(sorted(_MODES)),
    default="owner",
    show_default=True,
    help="Who may connect to a socket outside the data dir; callers are still "
    "identified by uid, and an unmapped uid is denied.",
)
@click.option("--http", "http", default=None, metavar="HOST:PORT", help="Also serve AWS KMS HTTP.")
@click.option(
    "--xks",
    "xks",
    default=None,
    metavar="HOST:PORT",
    help="Also serve the XKS Proxy API over this data dir's keys (docs/keystores.md).",
)
@click.option("--xks-cert", default=None, metavar="PEM", help="TLS certificate chain for --xks.")
@click.option("--xks-key", default=None, metavar="PEM", help="TLS private key for --xks.")
@click.option(
    "--xks-uri-path",
    multiple=True,
    default=("/kms/xks/v1",),
    show_default=True,
    help="An XksProxyUriPath to serve (repeat for a path prefix per tenant).",
)
@click.option(
    "--xks-region",
    default=None,
    metavar="REGION",
    help="The AWS Region whose KMS signs XKS requests [the data dir's].",
)
@click.option(
    "--xks-plain-http",
    is_flag=True,
    default=False,
    help="Serve --xks without TLS (only behind a proxy that terminates TLS).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="HTTP worker processes on the --http port (SO_REUSEPORT), this one included; "
    "each opens the data dir and journals its own audit records. Default: the number "
    "of CPUs.",
)
@click.option(
    "--passphrase-env", default=None, metavar="VAR", help="Root key passphrase from this variable."
)
@click.option(
    "--store",
    default=None,
    metavar="URL",
    help="Serve the keys of this PostgreSQL database (postgresql://...), saved in the data "
    "dir for later starts and its other commands; a fleet's nodes share one. See docs/fleet.md.",
)
@click.option(
    "--audit-witness",
    default=None,
    metavar="SOCKET",
    help="Have audit checkpoints signed by the witness on SOCKET (kept for every later open).",
)
@click.option(
    "--audit-export",
    default=None,
    metavar="SINK",
    help="Copy each checkpoint to file:<path> or syslog as it is made (kept likewise).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Clients served at once, on the socket and on HTTP each; one more is refused.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds before a connection with nothing in flight is closed (0: never).",
)
@click.option(
    "--refusal-burst",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Refused requests recorded one by one per source, error and window; "
    "the rest are counted in one summary record.",
)
@click.option(
    "--refusal-window",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds of one refusal window.",
)
@click.option(
    "--metrics",
    "metrics_listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve /metrics, /health and /ready on this address of their own (they are "
    "on the --http endpoint too).",
)
@click.option(
    "--metrics-auth",
    type=click.Choice(["token", "none"]),
    default="token",
    show_default=True,
    help="What /metrics wants: a bearer token (--metrics-token-env), or nothing.",
)
@click.option(
    "--metrics-token-env",
    default=None,
    metavar="VAR",
    help="The variable holding /metrics's bearer token.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Logs on stderr as text, or one JSON object a line.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option(
    "--dev",
    is_flag=True,
    default=False,
    help="A throwaway KMS: a temporary data dir, HTTP on 127.0.0.1:4599, well-known test "
    "credentials (printed as export lines), requests signed for any Region. Never for real keys.",
)
@click.option(
    "--any-region",
    is_flag=True,
    default=False,
    help="Answer any Region a SigV4 credential scope names (and any account), making it "
    "on first use, as moto and LocalStack do; for development and CI. See docs/regions.md.",
)
def serve(
    data_dir: Path | None,
    store: str | None,
    socket_path: Path | None,
    socket_mode: str,
    http: str | None,
    workers: int | None,
    passphrase_env: str | None,
    audit_witness: str | None,
    audit_export: str | None,
    max_connections: int,
    idle_timeout: float,
    refusal_burst: int,
    refusal_window: float,
    metrics_listen: str | None,
    metrics_auth: str,
    metrics_token_env: str | None,
    log_format: str,
    log_level: str,
    dev: bool,
    any_region: bool,
    xks: str | None = None,
    xks_cert: str | None = None,
    xks_key: str | None = None,
    xks_uri_path: tuple[str, ...] = ("/kms/xks/v1",),
    xks_plain_http: bool = False,
    xks_region: str | None = None,
) -> None:
    """Run the KMS daemon until SIGINT or SIGTERM (initializing the data dir if new)."""
    from kmscore.service.refusals import RefusalLimits

    from ..limits import ConnectionLimits
    from ..ops.logs import configure_logging
    from ..ops.notify import notify
    from ..rpc.server import run

    configure_logging(log_format, log_level)
    temporary: Path | None = None
    if dev:
        import tempfile

        from ..ops.dev import DEV_HTTP

        if data_dir is None:
            temporary = data_dir = Path(tempfile.mkdtemp(prefix="kms-dev-"))
        http = http or DEV_HTTP
        workers = workers or 1
    # Read by KeyService when it opens the trail, which saves them for later opens.
    if audit_witness:
        os.environ["KMS_AUDIT_WITNESS"] = audit_witness
    if audit_export:
        os.environ["KMS_AUDIT_EXPORT"] = audit_export
    limits = ConnectionLimits(max_connections, idle_timeout)
    if store is not None:
        from kmscore.service.data_dir import open_store

        # Saved in the data dir, where the daemon and its workers find it.
        try:
            open_store(resolve_data_dir(data_dir), store).close()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    passphrase = os.environ.get(passphrase_env) if passphrase_env else None
    if passphrase_env and not passphrase:
        raise click.UsageError(f"${passphrase_env} is empty or not set")
    token = os.environ.get(metrics_token_env) if metrics_token_env else None
    if metrics_token_env and not token:
        raise click.UsageError(f"${metrics_token_env} is empty or not set")
    if any_region and http is None and not dev:
        raise click.UsageError("--any-region needs --http")
    if workers is not None and workers > 1 and http is None:
        raise click.UsageError("--workers needs --http")
    if workers is None:
        workers = (os.cpu_count() or 1) if http is not None else 1
    shared = resolve_data_dir(data_dir) if workers > 1 else None
    hooks: list[Any] = []
    if dev:
        from ..ops.dev import dev_user_startup

        hooks.append(dev_user_startup)
    ops = _ops_factory(metrics_auth, token, shared)
    if shared is not None:
        hooks.append(_share_counts(shared))
        # The workers make their own routes from these (never on a command line).
        os.environ["KMSCORE_OPS_AUTH"] = metrics_auth
        if token:
            os.environ["KMSCORE_METRICS_TOKEN"] = token
    if metrics_listen is not None:
        hooks.append(_ops_listener(ops, *_listen(metrics_listen, "--metrics")))
    if http is not None:
        host, port = _listen(http)

        def on_http(server: Any) -> None:
            where = f" ({workers} worker processes)" if workers > 1 else ""
            click.echo(f"HTTP (AWS KMS JSON, SigV4) on {server.url}{where}")
            if dev:
                from kmscore.service.data_dir import DEFAULT_REGION

                from ..ops.dev import export_lines

                # A new data dir serves the default Region; any other is taken too.
                click.echo("\n".join(export_lines(server.url, DEFAULT_REGION)))
            else:
                click.echo(server.env_line)

        if workers == 1:
            from ..awsjson.server import http_startup

            hooks.append(
                http_startup(
                    host,
                    port,
                    on_ready=on_http,
                    limits=limits,
                    ops=ops,
                    any_region=any_region or dev,
                )
            )
        else:
            from ..awsjson.workers import workers_startup

            hooks.append(
                workers_startup(
                    host,
                    port,
                    workers,
                    data_dir=resolve_data_dir(data_dir),
                    on_ready=on_http,
                    limits=limits,
                    passphrase=passphrase,
                    ops=ops,
                    any_region=any_region or dev,
                )
            )

    if xks is not None:
        hooks.append(_xks_hook(xks, xks_cert, xks_key, xks_uri_path, xks_plain_http, xks_region))

    def ready(info: dict[str, Any]) -> None:
        lines = [
            f"kmscore daemon (pid {info['pid']}) listening on {info['socket']}",
            f"Data dir: {info['data_dir']}",
        ]
        if info.get("credentials"):
            lines.append(f"Admin credentials: {info['credentials']}")
        # One write (click.echo flushes each call): a script that waits for the
        # "listening on" line gets the lines after it in the same read.
        click.echo("\n".join(lines))
        click.echo("Stop with Ctrl-C or SIGTERM.", err=True)
        sys.stdout.flush()
        notify(f"READY=1\nMAINPID={info['pid']}\nSTATUS=listening on {info['socket']}")

    try:
        status = run(
            resolve_data_dir(data_dir),
            socket_path,
            _MODES[socket_mode],
            ready=ready,
            extra_startup=hooks,
            passphrase=passphrase,
            limits=limits,
            refusal_limits=RefusalLimits(refusal_burst, refusal_window),
            fd_connections=max_connections if http is not None else 0,
        )
    finally:
        notify("STOPPING=1")
        if temporary is not None:
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)
    sys.exit(status)


def _ops_factory(auth: str, token: str | None, shared: Path | None) -> Any:
    """Makes the /metrics, /health, /ready routes of a service."""

    def make(service: Any) -> Any:
        from ..ops.endpoint import OpsRoutes

        return OpsRoutes(service, None, auth=auth, token=token, share_dir=shared)

    return make


def _ops_listener(ops: Any, host: str, port: int) -> Any:
    """A startup hook: the operations paths on an address of their own."""

    async def start(service: Any, loop: Any) -> Any:
        from ..ops.endpoint import start_ops_server

        server = await start_ops_server(ops(service), host, port)
        click.echo(f"Metrics and health on {server.url}/metrics, /health, /ready")
        return server

    return start


def _share_counts(data_dir: Path) -> Any:
    """A startup hook: this process's request counts shared with its HTTP workers."""

    async def start(service: Any, loop: Any) -> Any:
        from ..ops.metrics import CountSharer, clear_shared

        clear_shared(data_dir)
        sharer = CountSharer(data_dir)
        sharer.start()
        return _Stopping(sharer)

    return start


class _Stopping:
    """Gives a sharer the ``close()`` the daemon calls at shutdown."""

    def __init__(self, sharer: Any) -> None:
        self._sharer = sharer

    def close(self) -> None:
        self._sharer.stop()


def register(group: click.Group) -> None:
    """Add ``serve`` to the ``kms`` group."""
    group.add_command(serve)


def _xks_hook(
    listen: str,
    cert: str | None,
    key: str | None,
    uri_path: tuple[str, ...],
    plain: bool,
    region: str | None,
) -> Any:
    """The startup hook of ``--xks``: HTTPS unless ``--xks-plain-http``."""
    from ..xks.server import tls_context, xks_startup

    host, port = _listen(listen)
    if plain and (cert or key):
        raise click.UsageError("--xks-plain-http takes no --xks-cert or --xks-key")
    if not plain and not (cert and key):
        raise click.UsageError("--xks needs --xks-cert and --xks-key (or --xks-plain-http)")
    context = None if plain else tls_context(str(cert), str(key))

    def on_ready(server: Any) -> None:
        click.echo(f"XKS proxy (XKS Proxy API v1, SigV4 kms-xks-proxy) on {server.uri}")

    return xks_startup(
        host,
        port,
        ssl_context=context,
        uri_path=list(uri_path),
        on_ready=on_ready,
        region=region,
    )
