"""``kms policy get|put`` and ``kms grant create|list|revoke|retire``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._common import all_pages, key_command, parse_pairs, show, table
from .session import kms_client

__all__ = ["register"]


@click.group()
def policy() -> None:
    """Key policies: get, put."""


@policy.command("get")
@click.argument("key")
@key_command
def policy_get(data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str) -> None:
    """Print KEY's policy document."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.get_key_policy(KeyId=key)
    if as_json:
        show(response, True)
    else:
        click.echo(json.dumps(json.loads(response["Policy"]), indent=2))


@policy.command("put")
@click.argument("key")
@click.argument("policy_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--bypass-lockout-check", is_flag=True, help="BypassPolicyLockoutSafetyCheck.")
@key_command
def policy_put(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    policy_file: Path,
    bypass_lockout_check: bool,
) -> None:
    """Replace KEY's policy with the document in POLICY_FILE."""
    request: dict[str, Any] = {"KeyId": key, "Policy": policy_file.read_text()}
    if bypass_lockout_check:
        request["BypassPolicyLockoutSafetyCheck"] = True
    with kms_client(data_dir, socket_path) as kms:
        response = kms.put_key_policy(**request)
    show(response, as_json, [("Updated", key)])


@click.group()
def grant() -> None:
    """Grants: create, list, revoke, retire."""


@grant.command("create")
@click.argument("key")
@click.option("--grantee", required=True, help="Grantee principal ARN.")
@click.option("--operations", required=True, help="Comma-separated, e.g. Encrypt,Decrypt.")
@click.option("--retiring", default=None, help="Retiring principal ARN.")
@click.option("--name", default=None, help="Grant name (makes the request idempotent).")
@click.option("--context-subset", multiple=True, help="EncryptionContextSubset KEY=VALUE.")
@click.option("--context-equals", multiple=True, help="EncryptionContextEquals KEY=VALUE.")
@key_command
def grant_create(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    grantee: str,
    operations: str,
    retiring: str | None,
    name: str | None,
    context_subset: tuple[str, ...],
    context_equals: tuple[str, ...],
) -> None:
    """Let GRANTEE use KEY for some operations; prints the grant id and token."""
    request: dict[str, Any] = {
        "KeyId": key,
        "GranteePrincipal": grantee,
        "Operations": [op.strip() for op in operations.split(",") if op.strip()],
    }
    if retiring:
        request["RetiringPrincipal"] = retiring
    if name:
        request["Name"] = name
    constraints: dict[str, dict[str, str]] = {}
    if context_subset:
        constraints["EncryptionContextSubset"] = parse_pairs(context_subset, "--context-subset")
    if context_equals:
        constraints["EncryptionContextEquals"] = parse_pairs(context_equals, "--context-equals")
    if constraints:
        request["Constraints"] = constraints
    with kms_client(data_dir, socket_path) as kms:
        response = kms.create_grant(**request)
    show(response, as_json, list(response.items()))


@grant.command("list")
@click.argument("key")
@key_command
def grant_list(data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str) -> None:
    """List KEY's grants."""
    with kms_client(data_dir, socket_path) as kms:
        grants = all_pages(kms.list_grants, "Grants", KeyId=key, Limit=1000)
    if as_json:
        echo = {"Grants": grants, "Truncated": False}
        show(echo, True)
    else:
        rows = [{**g, "Operations": ",".join(g["Operations"])} for g in grants]
        table(["GrantId", "Name", "GranteePrincipal", "Operations"], rows)


@grant.command("revoke")
@click.argument("key")
@click.argument("grant_id")
@key_command
def grant_revoke(
    data_dir: Path | None, socket_path: Path | None, as_json: bool, key: str, grant_id: str
) -> None:
    """Revoke grant GRANT_ID of KEY (needs kms:RevokeGrant)."""
    with kms_client(data_dir, socket_path) as kms:
        response = kms.revoke_grant(KeyId=key, GrantId=grant_id)
    show(response, as_json, [("Revoked", grant_id)])


@grant.command("retire")
@click.option("--token", default=None, help="The grant token.")
@click.option("--key", default=None, help="With --grant-id: the key (id or ARN).")
@click.option("--grant-id", default=None)
@key_command
def grant_retire(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    token: str | None,
    key: str | None,
    grant_id: str | None,
) -> None:
    """Retire a grant, by --token or by --key and --grant-id."""
    request: dict[str, Any] = {}
    if token:
        request["GrantToken"] = token
    if key:
        request["KeyId"] = key
    if grant_id:
        request["GrantId"] = grant_id
    with kms_client(data_dir, socket_path) as kms:
        response = kms.retire_grant(**request)
    show(response, as_json, [("Retired", grant_id or "(by token)")])


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    group.add_command(policy)
    group.add_command(grant)
