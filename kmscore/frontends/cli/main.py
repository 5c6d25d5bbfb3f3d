"""The ``kms`` command group and its entry point."""

from __future__ import annotations

import click

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmscore", prog_name="kms")
def cli() -> None:
    """kmscore: a self-hosted key management service that speaks AWS KMS."""


def main() -> None:
    """Entry point of the ``kms`` console script."""
    from . import access, admin, audit, crypto, envelope, importing, keys, keystores, serve, witness

    for module in (admin, serve, keys, importing, crypto, access, audit, envelope, witness):
        module.register(cli)
    from . import ops_commands, regions, status

    status.register(cli)
    ops_commands.register(cli)
    regions.register(cli)
    keystores.register(cli)
    from kmscore.bench.cli import bench

    cli.add_command(bench)
    cli()
