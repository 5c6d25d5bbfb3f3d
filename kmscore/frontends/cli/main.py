"""The ``kms`` command group and its shared options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from kmscore.errors import KMSError
from kmscore.service import default_data_dir

__all__ = [
    "cli",
    "data_dir_option",
    "echo_json",
    "existing_data_dir",
    "kms_errors",
    "main",
    "print_table",
    "resolve_data_dir",
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
    if not (path / "kms.db").exists():
        raise click.UsageError(f"no kmscore data dir at {path}; run 'kms init' first")
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmscore", prog_name="kms")
def cli() -> None:
    """kmscore: a self-hosted key management service that speaks AWS KMS."""


def main() -> None:
    """Entry point of the ``kms`` console script."""
    from . import access, admin, audit, crypto, envelope, keys, serve, witness

    for module in (admin, serve, keys, crypto, access, audit, envelope, witness):
        module.register(cli)
    cli()
