"""``kms seed``, ``kms backup`` and ``kms restore``: the data dir as a whole."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ._common import data_dir_option, existing_data_dir

__all__ = ["register"]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
@click.option("--check", is_flag=True, help="Only check the file; change nothing.")
def seed(file: Path, data_dir: Path | None, check: bool) -> None:
    """Load keys, aliases, policies, grants and tags from FILE.yaml (idempotent).

    A wrong file changes nothing and names the entry that is wrong.
    """
    from kmscore.service import open_service

    from ..ops.seed import SeedError, admin_caller, apply_seed, load_seed

    try:
        plan = load_seed(file)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from None
    if check:
        click.echo(f"{file}: {len(plan.keys)} keys, {len(plan.aliases)} aliases, "
                   f"{len(plan.grants)} grants: well formed")  # fmt: skip
        return
    path = existing_data_dir(data_dir)
    passphrase = os.environ.get("KMS_PASSPHRASE") or None
    service = open_service(path, passphrase=passphrase, audit=True)
    try:
        try:
            changes = apply_seed(service, plan, admin_caller(service))
        except SeedError as exc:
            raise click.ClickException(f"{file}: {exc} (nothing was changed)") from None
    finally:
        service.close()
    if not changes:
        click.echo(f"{file}: the store has it all already; nothing changed")
    for line in changes:
        click.echo(line)


def register(group: click.Group) -> None:
    """Add the data-dir commands to the ``kms`` group."""
    group.add_command(seed)
