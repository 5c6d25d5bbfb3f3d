"""Key commands: create, list, describe, state, deletion, aliases, tags, rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import all_pages, echo_json, key_command, parse_pairs, show, table
from .session import kms_client

__all__ = ["register"]


def _metadata_rows(md: dict[str, Any]) -> list[tuple[str, Any]]:
    names = ("KeyId", "Arn", "KeyState", "Description", "KeySpec", "KeyUsage", "Origin",
             "CreationDate", "DeletionDate", "MultiRegion")  # fmt: skip
    return [(n, md.get(n)) for n in names if n in md]


# --- keys ------------------------------------------------------------------------


@click.command("create-key")
@click.option("--description", default=None)
@click.option("--key-usage", default=None, help="ENCRYPT_DECRYPT (default), SIGN_VERIFY, ...")
@click.option("--key-spec", default=None, help="SYMMETRIC_DEFAULT (default), ...")
@click.option(
    "--policy", "policy_file", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--multi-region", is_flag=True)
@click.option(
    "--origin",
    type=click.Choice(["AWS_KMS", "EXTERNAL"]),
    default=None,
    help="EXTERNAL: no material until `kms import` brings it.",
)
@key_command
def create_key(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    description: str | None,
    key_usage: str | None,
    key_spec: str | None,
    policy_file: Path | None,
    tags: tuple[str, ...],
    multi_region: bool,
    origin: str | None,
) -> None:
    """Create a KMS key."""
    request: dict[str, Any] = {}
    if description is not None:
        request["Description"] = description
    if key_usage:
        request["KeyUsage"] = key_usage
    if key_spec:
        request["KeySpec"] = key_spec
    if policy_file is not None:
        request["Policy"] = policy_file.read_text()
    if tags:
        request["Tags"] = [
            {"TagKey": k, "TagValue": v} for k, v in parse_pairs(tags, "--tag").items()
        ]
    if multi_region:
        request["MultiRegion"] = True
    if origin is not None:
        request["Origin"] = origin
    with kms_client(data_dir, socket_path) as kms:
        response = kms.create_key(**request)
    show(response, as_json, _metadata_rows(response["KeyMetadata"]))


@click.command("list-keys")
@click.option("--limit", type=int, default=None, help="One page of at most this many.")
@key_command
def list_keys(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, limit: int | None
) -> None:
    """List KMS keys."""
    with kms_client(data_dir, socket_path) as kms:
        if limit is not None:
            response = kms.list_keys(Limit=limit)
        else:
            response = {"Keys": all_pages(kms.list_keys, "Keys", Limit=1000), "Truncated": False}
    if as_json:
        echo_json(response)
    else:
        table(["KeyId", "KeyArn"], response["Keys"])


@click.command("describe-key")
@click.argument("key")
@key_command
def describe_key(data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str) -> None:
    """Show a key (by id, ARN, alias name or alias ARN)."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.describe_key(KeyId=key)
    show(response, as_json, _metadata_rows(response["KeyMetadata"]))


def _simple(name: str, method: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("key")
    @key_command
    def command(data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str) -> None:
        with kms_client(data_dir, socket_path) as kms:
            response = getattr(kms, method)(KeyId=key)
        show(response, as_json, [(k, v) for k, v in response.items()] or [("KeyId", key)])

    return command


enable_key = _simple("enable-key", "enable_key", "Enable a key (key id or ARN).")
disable_key = _simple("disable-key", "disable_key", "Disable a key: it then refuses all crypto.")
cancel_deletion = _simple(
    "cancel-deletion", "cancel_key_deletion", "Cancel a scheduled deletion (the key is Disabled)."
)
rotate = _simple("rotate", "rotate_key_on_demand", "Rotate a key's material now.")


@click.command("schedule-deletion")
@click.argument("key")
@click.option("--days", type=int, default=None, help="Waiting period, 7-30 [30].")
@key_command
def schedule_deletion(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str, days: int | None
) -> None:
    """Schedule a key's deletion; it refuses all crypto meanwhile."""
    request: dict[str, Any] = {"KeyId": key}
    if days is not None:
        request["PendingWindowInDays"] = days
    with kms_client(data_dir, socket_path) as kms:
        response = kms.schedule_key_deletion(**request)
    show(response, as_json, list(response.items()))


# --- aliases -----------------------------------------------------------------------


@click.group()
def alias() -> None:
    """Aliases: create, update, list, delete."""


@alias.command("create")
@click.argument("name")
@click.argument("key")
@key_command
def alias_create(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, name: str, key: str
) -> None:
    """Create alias NAME (alias/...) for KEY (key id or ARN)."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.create_alias(AliasName=name, TargetKeyId=key)
    show(response, as_json, [("AliasName", name), ("TargetKeyId", key)])


@alias.command("update")
@click.argument("name")
@click.argument("key")
@key_command
def alias_update(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, name: str, key: str
) -> None:
    """Point alias NAME at KEY."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.update_alias(AliasName=name, TargetKeyId=key)
    show(response, as_json, [("AliasName", name), ("TargetKeyId", key)])


@alias.command("list")
@click.option("--key", default=None, help="Only this key's aliases (key id or ARN).")
@key_command
def alias_list(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str | None
) -> None:
    """List aliases."""
    request: dict[str, Any] = {"Limit": 1000}
    if key is not None:
        request["KeyId"] = key
    with kms_client(data_dir, socket_path) as kms:
        aliases = all_pages(kms.list_aliases, "Aliases", **request)
    if as_json:
        echo_json({"Aliases": aliases, "Truncated": False})
    else:
        table(["AliasName", "TargetKeyId", "AliasArn"], aliases)


@alias.command("delete")
@click.argument("name")
@key_command
def alias_delete(data_dir: Path | None, socket_path: Path | None, as_json: bool, name: str) -> None:
    """Delete alias NAME."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.delete_alias(AliasName=name)
    show(response, as_json, [("Deleted", name)])


# --- tags --------------------------------------------------------------------------


@click.command()
@click.argument("key")
@click.argument("pairs", nargs=-1)
@click.option("--remove", "remove", multiple=True, help="Tag key to remove, repeatable.")
@key_command
def tag(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    pairs: tuple[str, ...],
    remove: tuple[str, ...],
) -> None:
    """Add tags (KEY=VALUE ...), remove some (--remove), then list KEY's tags."""
    with kms_client(data_dir, socket_path) as kms:
        if pairs:
            tags = parse_pairs(pairs, "PAIRS")
            kms.tag_resource(
                KeyId=key, Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()]
            )
        if remove:
            kms.untag_resource(KeyId=key, TagKeys=list(remove))
        listed = all_pages(kms.list_resource_tags, "Tags", KeyId=key, Limit=1000)
    if as_json:
        echo_json({"Tags": listed, "Truncated": False})
    else:
        table(["TagKey", "TagValue"], listed)


# --- rotation ----------------------------------------------------------------------


@click.group()
def rotation() -> None:
    """Automatic rotation: status, enable, disable, list."""


rotation.add_command(_simple("status", "get_key_rotation_status", "Show a key's rotation status."))
rotation.add_command(_simple("disable", "disable_key_rotation", "Stop automatic rotation."))


@rotation.command("enable")
@click.argument("key")
@click.option("--days", type=int, default=None, help="Rotation period, 90-2560 [365].")
@key_command
def rotation_enable(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str, days: int | None
) -> None:
    """Rotate KEY automatically every --days."""
    request: dict[str, Any] = {"KeyId": key}
    if days is not None:
        request["RotationPeriodInDays"] = days
    with kms_client(data_dir, socket_path) as kms:
        kms.enable_key_rotation(**request)
        response = kms.get_key_rotation_status(KeyId=key)
    show(response, as_json, list(response.items()))


@rotation.command("list")
@click.argument("key")
@key_command
def rotation_list(data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str) -> None:
    """List KEY's completed rotations."""
    with kms_client(data_dir, socket_path) as kms:
        rotations = all_pages(kms.list_key_rotations, "Rotations", KeyId=key, Limit=1000)
    if as_json:
        echo_json({"Rotations": rotations, "Truncated": False})
    else:
        table(["RotationDate", "RotationType", "KeyMaterialState", "KeyMaterialId"], rotations)


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    for command in (
        create_key, list_keys, describe_key, enable_key, disable_key, schedule_deletion,
        cancel_deletion, alias, tag, rotate, rotation,
    ):  # fmt: skip
        group.add_command(command)
