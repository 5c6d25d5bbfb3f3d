"""``kms witness init|serve|status``: the audit checkpoint witness."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from kmscore.audit.witness import WITNESS_PUB_FILE, Witness

from ._common import echo_json, kms_errors

__all__ = ["register"]

_MODES = {"owner": 0o600, "group": 0o660}
_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The witness's own directory (its key and the last head it signed).",
)


@click.group()
def witness() -> None:
    """The audit witness: signs only checkpoints that extend what it signed."""


@witness.command("init")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def witness_init(directory: Path, as_json: bool) -> None:
    """Make a witness directory and key; prints the public key for auditors."""
    try:
        made = Witness.init(directory)
    except FileExistsError:
        raise click.ClickException(f"{directory} already holds a witness key") from None
    public = made.public_key.encode().hex()
    if as_json:
        echo_json({"Directory": str(directory), "PublicKey": public})
        return
    click.echo(f"Witness directory: {directory}")
    click.echo(f"Public key:        {public}")
    click.echo(f"Give auditors {directory / WITNESS_PUB_FILE} (kms audit verify --public-key).")


@witness.command("serve")
@_dir_option
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to listen.",
)
@click.option(
    "--socket-mode",
    type=click.Choice(sorted(_MODES)),
    default="owner",
    show_default=True,
    help="group: the daemon's uid connects through a group it shares with the witness.",
)
@click.option("--allow-uid", "allow_uids", type=int, multiple=True, help="Only these peer uids.")
@kms_errors
def witness_serve(
    directory: Path, socket_path: Path, socket_mode: str, allow_uids: tuple[int, ...]
) -> None:
    """Serve the witness until SIGINT or SIGTERM."""
    from ..witness.server import serve_witness

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def ready(server: Any) -> None:
        click.echo(f"kmscore witness (pid {os.getpid()}) listening on {server.path}")
        sys.stdout.flush()

    serve_witness(
        directory, socket_path, mode=_MODES[socket_mode], allow_uids=allow_uids, ready=ready,
        stop=stop,
    )  # fmt: skip


@witness.command("status")
@_dir_option
@kms_errors
def witness_status(directory: Path) -> None:
    """Print the witness's public key and the last head it signed (JSON)."""
    opened = Witness(directory)
    echo_json({"PublicKey": opened.public_key.encode().hex(), "LastSigned": opened.state})


def register(group: click.Group) -> None:
    """Add ``witness`` to the ``kms`` group."""
    group.add_command(witness)
