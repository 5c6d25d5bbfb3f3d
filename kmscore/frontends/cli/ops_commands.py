"""``kms seed``, ``kms backup`` and ``kms restore``: the data dir as a whole."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def _key_options(fn: Any) -> Any:
    fn = click.option(
        "--passphrase-env",
        default=None,
        metavar="VAR",
        help="The backup's passphrase is in this variable (scrypt derives the key).",
    )(fn)
    return click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="The backup key: 32 bytes, raw, hex or base64.",
    )(fn)


def _secret(key_file: Path | None, passphrase_env: str | None) -> tuple[int, bytes | str]:
    from ..ops.backup import BackupError, backup_key

    passphrase = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise click.UsageError(f"${passphrase_env} is empty or not set")
    try:
        return backup_key(key_file=key_file, passphrase=passphrase)
    except BackupError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@_key_options
def backup(
    dest: Path, data_dir: Path | None, key_file: Path | None, passphrase_env: str | None
) -> None:
    """Write an encrypted, consistent snapshot of the data dir to DEST (the service may run).

    The store, the audit trail and the settings, encrypted under the key given.
    A PostgreSQL store is not in it: back it up with pg_dump (docs/operations.md).
    """
    from kmscore.service.data_dir import saved_store

    from ..ops.backup import BackupError
    from ..ops.backup import backup as take

    path = existing_data_dir(data_dir)
    kdf, secret = _secret(key_file, passphrase_env)
    try:
        names = take(path, dest, kdf=kdf, secret=secret)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{dest}: {len(names)} files of {path}")
    if saved_store(path) is not None:
        click.echo("The keys are in PostgreSQL: back them up with pg_dump (docs/operations.md).")


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The new data dir (absent or empty).",
)
@_key_options
def restore(
    source: Path, data_dir: Path, key_file: Path | None, passphrase_env: str | None
) -> None:
    """Restore the backup SOURCE into a new data dir (all of it, or nothing)."""
    from ..ops.backup import BackupError
    from ..ops.backup import restore as put_back

    _, secret = _secret(key_file, passphrase_env)
    try:
        names = put_back(source, data_dir, secret=secret)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{data_dir}: {len(names)} files restored; check it with kms audit verify")


def register(group: click.Group) -> None:
    """Add the data-dir commands to the ``kms`` group."""
    group.add_command(seed)
    group.add_command(backup)
    group.add_command(restore)
