"""``kms region add|list`` and ``kms account add|list``: the namespaces of a deployment.

A data dir serves one Region of one account when it is made; these commands
give it more (:mod:`kmscore.service.regions`, docs/regions.md). A running
``kms serve --http`` finds a Region added here at its first request.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from kmscore.errors import KMSError
from kmscore.service import open_service
from kmscore.service.principals import CREDENTIALS_FILE
from kmscore.service.regions import Deployment

from ._common import data_dir_option, echo_json, existing_data_dir, kms_errors

__all__ = ["register"]


@contextlib.contextmanager
def _deployment(data_dir: Path | None) -> Iterator[Deployment]:
    passphrase = os.environ.get("KMS_PASSPHRASE") or None
    home = open_service(existing_data_dir(data_dir), passphrase=passphrase)
    try:
        deployment = Deployment(home)
        try:
            yield deployment
        finally:
            deployment.close()
    finally:
        home.close()


@click.group()
def region() -> None:
    """The Regions this data dir serves (each with its own keys, aliases and grants)."""


@region.command("add")
@data_dir_option
@click.argument("name")
@click.option("--account", default=None, help="The account to add it to [the data dir's].")
@kms_errors
def region_add(data_dir: Path | None, name: str, account: str | None) -> None:
    """Add Region NAME (like us-west-2)."""
    with _deployment(data_dir) as deployment:
        try:
            svc = deployment.add_region(name, account)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except KMSError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"Region {svc.region} of account {svc.account} added ({svc.data_dir}).")


@region.command("list")
@data_dir_option
@click.option("--account", default=None, help="The account [the data dir's].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def region_list(data_dir: Path | None, account: str | None, as_json: bool) -> None:
    """List the Regions of an account."""
    with _deployment(data_dir) as deployment:
        regions = deployment.regions(account)
        if as_json:
            echo_json({"Account": account or deployment.home.account, "Regions": regions})
        else:
            for name in regions:
                click.echo(name)


@region.command("identity")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def region_identity(data_dir: Path | None, as_json: bool) -> None:
    """Show this deployment's peering identity: give its fingerprint to a peer's operator."""
    from kmscore.service.peering import peering_of

    with _deployment(data_dir) as deployment:
        info = peering_of(deployment).public_info()
        if as_json:
            echo_json(info)
        else:
            click.echo(f"Deployment: {info['Identity']['DeploymentId']}")
            click.echo(f"Fingerprint: {info['Identity']['Fingerprint']}")
            click.echo(f"Regions: {' '.join(info['Regions'])}")


@region.command("peer")
@data_dir_option
@click.argument("name")
@click.argument("url")
@click.option(
    "--fingerprint",
    required=True,
    help="The peer's fingerprint, from its operator (kms region identity there).",
)
@kms_errors
def region_peer(data_dir: Path | None, name: str, url: str, fingerprint: str) -> None:
    """Peer with the deployment serving HTTP at URL, as NAME (run it on both sides)."""
    from kmscore.service.peering import peering_of

    with _deployment(data_dir) as deployment:
        try:
            peer = peering_of(deployment).add_peer(name, url, fingerprint)
        except KMSError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"Peer {peer.name} at {peer.url}: Regions {' '.join(peer.regions)}.")


@region.command("peers")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def region_peers(data_dir: Path | None, as_json: bool) -> None:
    """List the peers."""
    from kmscore.service.peering import peering_of

    with _deployment(data_dir) as deployment:
        peers = peering_of(deployment).peers()
        if as_json:
            echo_json({"Peers": [p.to_json() for p in peers]})
        else:
            for p in peers:
                click.echo(f"{p.name}\t{p.url}\t{' '.join(p.regions)}\t{p.identity.fingerprint}")


@region.command("sync")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def region_sync(data_dir: Path | None, as_json: bool) -> None:
    """Converge every multi-Region key with its related keys here and at peers, now."""
    from kmscore.service.replication import converge_all

    with _deployment(data_dir) as deployment:
        results = converge_all(deployment)
        if as_json:
            echo_json(
                {
                    "Keys": [
                        {"KeyId": r.key_id, "Applied": r.applied, "Unreached": r.unreached}
                        for r in results
                    ]
                }
            )
        else:
            for r in results:
                for line in r.applied:
                    click.echo(f"{r.key_id}: {line}")


@click.group()
def account() -> None:
    """The accounts this data dir serves (each with its own users)."""


@account.command("add")
@data_dir_option
@click.argument("account_id")
@kms_errors
def account_add(data_dir: Path | None, account_id: str) -> None:
    """Add account ACCOUNT_ID (12 digits), in the data dir's Region, with an admin for you."""
    with _deployment(data_dir) as deployment:
        try:
            svc = deployment.add_account(account_id)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except KMSError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"Account {svc.account} added in {svc.region}.")
        click.echo(f"Admin credentials: {svc.data_dir / CREDENTIALS_FILE}")


@account.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def account_list(data_dir: Path | None, as_json: bool) -> None:
    """List the accounts and their Regions."""
    with _deployment(data_dir) as deployment:
        found = {a: deployment.regions(a) for a in deployment.accounts()}
        if as_json:
            echo_json({"Accounts": [{"Account": a, "Regions": r} for a, r in found.items()]})
        else:
            for name, regions in found.items():
                click.echo(f"{name}\t{' '.join(regions)}")


def register(group: click.Group) -> None:
    """Add ``region`` and ``account`` to the ``kms`` group."""
    group.add_command(region)
    group.add_command(account)
