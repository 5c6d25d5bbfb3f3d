"""``kms init`` and ``kms principal add|list|tag|untag|remove``."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from kmscore.model.principal import user_arn
from kmscore.service import KeyService, open_service
from kmscore.service.principals import CREDENTIALS_FILE

from ._common import (
    data_dir_option,
    echo_json,
    existing_data_dir,
    kms_errors,
    parse_pairs,
    print_table,
    resolve_data_dir,
)

__all__ = ["register"]


def _open(data_dir: Path | None) -> KeyService:
    passphrase = os.environ.get("KMS_PASSPHRASE") or None
    return open_service(existing_data_dir(data_dir), passphrase=passphrase)


@click.command()
@data_dir_option
@click.option("--region", default=None, help="Region of a new data dir [us-east-1].")
@click.option("--account", default=None, help="Account id of a new data dir [111122223333].")
@click.option(
    "--passphrase-env",
    default=None,
    metavar="VAR",
    help="Protect the root key with the passphrase in this environment variable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def init(
    data_dir: Path | None,
    region: str | None,
    account: str | None,
    passphrase_env: str | None,
    as_json: bool,
) -> None:
    """Create a data dir: root key, key store, and an admin user for you."""
    path = resolve_data_dir(data_dir)
    passphrase = os.environ.get(passphrase_env) if passphrase_env else None
    if passphrase_env and not passphrase:
        raise click.UsageError(f"${passphrase_env} is empty or not set")
    try:
        svc = open_service(path, region=region, account=account, passphrase=passphrase)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        admin = svc.principals.by_uid(os.getuid())
        info = {
            "DataDir": str(path),
            "Region": svc.region,
            "Account": svc.account,
            "Admin": admin.arn if admin is not None else None,
            "CredentialsFile": str(path / CREDENTIALS_FILE),
        }
    finally:
        svc.close()
    if as_json:
        echo_json(info)
        return
    click.echo(
        f"Data dir:     {info['DataDir']} (region {info['Region']}, account {info['Account']})"
    )
    click.echo(f"Admin:        {info['Admin']}")
    click.echo(f"Credentials:  {info['CredentialsFile']}")


@click.group()
def principal() -> None:
    """Users of the KMS: add, list, remove."""


@principal.command("add")
@click.argument("name")
@data_dir_option
@click.option("--uid", type=int, default=None, help="Map this Unix uid to the user.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Identity policy (IAM JSON) file.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Principal tag (aws:PrincipalTag/KEY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print Arn, AccessKeyId, SecretAccessKey.")
@kms_errors
def principal_add(
    name: str,
    data_dir: Path | None,
    uid: int | None,
    policy_file: Path | None,
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create user NAME with an access key (the secret is shown once)."""
    policy = policy_file.read_text() if policy_file is not None else None
    tag_map = parse_pairs(tags, "--tag")
    svc = _open(data_dir)
    try:
        user, access_key_id, secret = svc.principals.add(name, uid=uid, policy=policy, tags=tag_map)
    finally:
        svc.close()
    out = {"Arn": user.arn, "AccessKeyId": access_key_id, "SecretAccessKey": secret}
    if uid is not None:
        out["Uid"] = uid  # type: ignore[assignment]
    if as_json:
        echo_json(out)
        return
    click.echo(f"Arn:             {user.arn}")
    click.echo(f"AccessKeyId:     {access_key_id}")
    click.echo(f"SecretAccessKey: {secret}  (shown once)")


@principal.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def principal_list(data_dir: Path | None, as_json: bool) -> None:
    """List users."""
    svc = _open(data_dir)
    try:
        rows = [
            {
                "Name": p.name,
                "Arn": p.arn,
                "Uid": p.uid,
                "AccessKeyIds": svc.store.list_access_key_ids(p.name),
                "HasIdentityPolicy": p.identity_policy is not None,
                "Tags": dict(p.tags),
                "CreationDate": p.creation_date,
            }
            for p in svc.principals.list()
        ]
    finally:
        svc.close()
    if as_json:
        echo_json({"Principals": rows})
        return
    table = Table("Name", "Arn", "Uid", "Access keys", "Policy", "Tags")
    for r in rows:
        table.add_row(
            str(r["Name"]),
            str(r["Arn"]),
            "" if r["Uid"] is None else str(r["Uid"]),
            ", ".join(r["AccessKeyIds"]),  # type: ignore[arg-type]
            "yes" if r["HasIdentityPolicy"] else "",
            ", ".join(f"{k}={v}" for k, v in r["Tags"].items()),  # type: ignore[union-attr]
        )
    print_table(table)


@principal.command("tag")
@click.argument("name")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
@data_dir_option
@kms_errors
def principal_tag(name: str, tags: tuple[str, ...], data_dir: Path | None) -> None:
    """Add or overwrite tags of user NAME; policies see them at once."""
    new = parse_pairs(tags, "KEY=VALUE")
    svc = _open(data_dir)
    try:
        user = svc.store.get_principal(name)
        if user is None:
            raise click.ClickException(f"Principal {name} does not exist.")
        folded = {k.lower() for k in new}
        kept = {k: v for k, v in user.tags.items() if k.lower() not in folded}
        svc.principals.set_tags(name, {**kept, **new})
    finally:
        svc.close()


@principal.command("untag")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True)
@data_dir_option
@kms_errors
def principal_untag(name: str, keys: tuple[str, ...], data_dir: Path | None) -> None:
    """Remove tags of user NAME by key (case-insensitive); absent keys are ignored."""
    folded = {k.lower() for k in keys}
    svc = _open(data_dir)
    try:
        user = svc.store.get_principal(name)
        if user is None:
            raise click.ClickException(f"Principal {name} does not exist.")
        svc.principals.set_tags(
            name, {k: v for k, v in user.tags.items() if k.lower() not in folded}
        )
    finally:
        svc.close()


@principal.command("remove")
@click.argument("name")
@data_dir_option
@kms_errors
def principal_remove(name: str, data_dir: Path | None) -> None:
    """Delete user NAME and its access keys."""
    svc = _open(data_dir)
    try:
        svc.principals.remove(name)
        click.echo(f"Removed {user_arn(svc.account, name)}")
    finally:
        svc.close()


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    group.add_command(init)
    group.add_command(principal)
