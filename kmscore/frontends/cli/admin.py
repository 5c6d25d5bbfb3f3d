"""``kms init`` and ``kms principal add|list|tag|untag|remove``.

The principal commands run the user operations (CreateUser, ListUsers, TagUser,
UntagUser, DeleteUser; :mod:`kmscore.operations.users`) through the dispatcher,
so each is authorized and recorded in the audit trail like any other call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from kmscore.model.principal import user_arn
from kmscore.operations import dispatch
from kmscore.service import Caller, KeyService, open_service
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
@click.option(
    "--store",
    default=None,
    metavar="URL",
    help="Keep the keys in this PostgreSQL database (postgresql://...; several hosts and "
    "target_session_attrs=read-write for failover) instead of SQLite in the data dir; "
    "saved for every later use of the data dir. See docs/fleet.md.",
)
@click.option(
    "--root",
    default=None,
    metavar="PKCS11-URI",
    help="Keep the root key inside a PKCS#11 token (pkcs11:token=...;object=...?module-path=...); "
    "--passphrase-env then names the token's PIN. See docs/keystores.md.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def init(
    data_dir: Path | None,
    region: str | None,
    account: str | None,
    passphrase_env: str | None,
    store: str | None,
    as_json: bool,
    root: str | None = None,
) -> None:
    """Create a data dir: root key, key store, and an admin user for you."""
    path = resolve_data_dir(data_dir)
    passphrase = os.environ.get(passphrase_env) if passphrase_env else None
    if passphrase_env and not passphrase:
        raise click.UsageError(f"${passphrase_env} is empty or not set")
    try:
        svc = open_service(
            path, region=region, account=account, passphrase=passphrase, store=store, root=root
        )
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


def _as_root(svc: KeyService, operation: str, **request: Any) -> dict[str, Any]:
    """Run a user operation through the dispatcher as the account root.

    Whoever can open the data dir holds its root key, so the CLI acts as the
    account's root: authorized like any call, and recorded in the trail.
    """
    caller = Caller(
        arn=f"arn:aws:iam::{svc.account}:root",
        account=svc.account,
        principal_id=svc.account,
        kind="Root",
        source=f"local:{os.getpid()}",
        user_agent="kmscore-cli",
    )
    return dispatch(svc, operation, request, caller)


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
    request: dict[str, Any] = {"UserName": name}
    if uid is not None:
        request["Uid"] = uid
    if policy_file is not None:
        request["PolicyDocument"] = policy_file.read_text()
    tag_map = parse_pairs(tags, "--tag")
    if tag_map:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tag_map.items()]
    svc = _open(data_dir)
    try:
        created = _as_root(svc, "CreateUser", **request)
    finally:
        svc.close()
    user, key = created["User"], created["AccessKey"]
    out: dict[str, Any] = {
        "Arn": user["Arn"],
        "AccessKeyId": key["AccessKeyId"],
        "SecretAccessKey": key["SecretAccessKey"],
    }
    if uid is not None:
        out["Uid"] = uid
    if as_json:
        echo_json(out)
        return
    click.echo(f"Arn:             {out['Arn']}")
    click.echo(f"AccessKeyId:     {out['AccessKeyId']}")
    click.echo(f"SecretAccessKey: {out['SecretAccessKey']}  (shown once)")


@principal.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def principal_list(data_dir: Path | None, as_json: bool) -> None:
    """List users."""
    svc = _open(data_dir)
    try:
        users = _as_root(svc, "ListUsers")["Users"]
    finally:
        svc.close()
    rows = [
        {
            "Name": u["UserName"],
            "Arn": u["Arn"],
            "Uid": u["Uid"],
            "AccessKeyIds": u["AccessKeyIds"],
            "HasIdentityPolicy": u["HasIdentityPolicy"],
            "Tags": {t["Key"]: t["Value"] for t in u["Tags"]},
            "CreationDate": u["CreateDate"],
        }
        for u in users
    ]
    if as_json:
        echo_json({"Principals": rows})
        return
    table = Table("Name", "Arn", "Uid", "Access keys", "Policy", "Tags")
    for r in rows:
        table.add_row(
            str(r["Name"]),
            str(r["Arn"]),
            "" if r["Uid"] is None else str(r["Uid"]),
            ", ".join(r["AccessKeyIds"]),
            "yes" if r["HasIdentityPolicy"] else "",
            ", ".join(f"{k}={v}" for k, v in r["Tags"].items()),
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
        _as_root(
            svc, "TagUser", UserName=name, Tags=[{"Key": k, "Value": v} for k, v in new.items()]
        )
    finally:
        svc.close()


@principal.command("untag")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True)
@data_dir_option
@kms_errors
def principal_untag(name: str, keys: tuple[str, ...], data_dir: Path | None) -> None:
    """Remove tags of user NAME by key (case-insensitive); absent keys are ignored."""
    svc = _open(data_dir)
    try:
        _as_root(svc, "UntagUser", UserName=name, TagKeys=list(keys))
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
        _as_root(svc, "DeleteUser", UserName=name)
        click.echo(f"Removed {user_arn(svc.account, name)}")
    finally:
        svc.close()


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    group.add_command(init)
    group.add_command(principal)
