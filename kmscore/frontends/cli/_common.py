"""What the ``kms`` subcommands share: options, output and error handling.

The command modules import this and ``session``; only ``main`` imports the command
modules, so the CLI's imports go one way.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from kmscore.errors import KMSError
from kmscore.service import default_data_dir
from kmscore.service.data_dir import STORE_FILE

__all__ = [
    "all_pages",
    "data_dir_option",
    "echo_json",
    "existing_data_dir",
    "key_command",
    "kms_errors",
    "parse_pairs",
    "print_table",
    "resolve_data_dir",
    "show",
    "socket_option",
    "table",
]

F = TypeVar("F", bound=Callable[..., Any])


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


def echo_json(value: object) -> None:
    """Print a value as JSON: times as epoch seconds, bytes as base64 (AWS's wire form)."""
    click.echo(json.dumps(value, indent=2, default=_json_default, sort_keys=False))


def kms_errors(fn: F) -> F:
    """Turn KMS errors into ``<Code>: <message>`` on stderr and exit status 1.

    A daemon that vanished mid-command (``kmscore.client.remote.RemoteConnectionError``,
    a ConnectionError) is reported the same way, as ``ConnectionError: ...``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KMSError as exc:
            click.echo(f"{exc.code}: {exc.message}", err=True)
            sys.exit(1)
        except ConnectionError as exc:
            click.echo(f"ConnectionError: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def print_table(table: Table) -> None:
    """Print a rich table without ever eliding a cell.

    A cut key id, grant id or ARN cannot be copied into the next command, so a
    table wider than the terminal (80 columns in a pipe) is printed at its
    natural width and its lines run long.
    """
    console = Console()
    natural = console.measure(table, options=console.options.update_width(1 << 16)).maximum
    if natural > console.width:
        console = Console(width=natural)
    console.print(table)


def data_dir_option(fn: F) -> F:
    """The ``--data-dir`` option every subcommand takes."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data directory [default: $KMS_DATA_DIR, then ~/.local/share/kmscore].",
    )(fn)


def resolve_data_dir(data_dir: Path | None) -> Path:
    """The data dir option, or its default."""
    return data_dir if data_dir is not None else default_data_dir()


def existing_data_dir(data_dir: Path | None) -> Path:
    """The data dir, which must have been initialized (only ``init`` makes one).

    Raises:
        click.UsageError: there is no data dir there.
    """
    path = resolve_data_dir(data_dir)
    if not (path / "kms.db").exists() and not (path / STORE_FILE).exists():
        raise click.UsageError(f"no kmscore data dir at {path}; run 'kms init' first")
    return path


def socket_option(fn: Any) -> Any:
    """The ``--socket`` option of key commands (the daemon's socket)."""
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The daemon's socket [default: <data-dir>/kms.sock]; without a daemon the data "
        "dir is opened directly.",
    )(fn)


def key_command(fn: F) -> F:
    """The options every command that talks to the KMS takes, and its error handling."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    wrapped: Any = kms_errors(wrapper)
    wrapped = click.option("--json", "as_json", is_flag=True, help="Print the AWS response.")(
        wrapped
    )
    wrapped = socket_option(wrapped)
    return data_dir_option(wrapped)  # type: ignore[no-any-return]


def parse_pairs(pairs: Iterable[str], what: str = "--context") -> dict[str, str]:
    """``k=v`` arguments as a dict.

    Raises:
        click.BadParameter: an argument without ``=``.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def show(response: dict[str, Any], as_json: bool, rows: Iterable[tuple[str, Any]] = ()) -> None:
    """Print a response: AWS JSON with ``--json``, else the given rows (or the JSON)."""
    rows = list(rows)
    if as_json or not rows:
        echo_json(response)
        return
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name + ':':{width + 2}}{'' if value is None else value}")


def table(columns: list[str], items: Iterable[dict[str, Any]]) -> None:
    table = Table(*columns)
    for item in items:
        table.add_row(*("" if item.get(c) is None else str(item.get(c)) for c in columns))
    print_table(table)


def all_pages(call: Callable[..., dict[str, Any]], name: str, **request: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        page = call(**request)
        items += page[name]
        if not page.get("Truncated"):
            return items
        request["Marker"] = page["NextMarker"]
