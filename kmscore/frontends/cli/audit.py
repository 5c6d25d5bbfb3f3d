"""``kms audit verify|query`` and ``kms usage``."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from kmscore.audit import VerifyError, query, verify
from kmscore.audit.fleet import query_trails, verify_trails
from kmscore.audit.usage import usage as compute_usage
from kmscore.model.key import utcnow
from kmscore.service import open_service

from ._common import (
    data_dir_option,
    echo_json,
    existing_data_dir,
    kms_errors,
    print_table,
)

__all__ = ["register"]


def _trail_option(fn: Any) -> Any:
    return click.option(
        "--trail",
        "trails",
        multiple=True,
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help="Another node's data dir whose trail to take too (repeatable): a fleet's "
        "trails, merged by time.",
    )(fn)


def _when(text: str | None) -> datetime | None:
    """An ISO 8601 date or time (UTC when no zone is given)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@click.group()
def audit() -> None:
    """The audit trail: verify it, search it."""


@audit.command("verify")
@data_dir_option
@click.option("--anchor", default=None, help="A checkpoint signature the trail must still hold.")
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The auditor's copy of the signing public key (hex), e.g. the witness's "
    "witness.pub [<data-dir>/audit-signing.pub].",
)
@click.option(
    "--exported",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Checkpoints exported as they were made; the trail must hold them all.",
)
@_trail_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def audit_verify(
    data_dir: Path | None,
    anchor: str | None,
    public_key_file: Path | None,
    exported: Path | None,
    trails: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check the hash chain and every signed checkpoint; exit 1 at the first bad place."""
    path = existing_data_dir(data_dir)
    public_key: bytes | None = None
    if public_key_file is not None:
        try:
            public_key = bytes.fromhex(public_key_file.read_text().strip())
        except ValueError:
            public_key = b""
        if len(public_key) != 32:
            raise click.BadParameter("not a 32-byte key in hex", param_hint="--public-key")
    if trails:
        if anchor is not None or exported is not None:
            raise click.UsageError("--anchor and --exported name one trail; not with --trail")
        _verify_fleet([path, *trails], public_key, as_json)
        return
    try:
        report = verify(path, anchor=anchor, public_key=public_key, exported=exported)
    except VerifyError as exc:
        _failed(exc, as_json)
    if as_json:
        echo_json(
            {
                "Valid": True,
                "Records": report.records,
                "Segments": report.segments,
                "Checkpoints": report.checkpoints,
                "Unsealed": report.unsealed,
                "HeadHash": report.head_hash,
                "LastSignature": report.last_signature,
            }
        )
    else:
        click.echo(report.describe())


def _failed(exc: VerifyError, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"Valid": False, "Error": str(exc)})
    else:
        click.echo(f"FAILED: {exc}", err=True)
    sys.exit(1)


def _verify_fleet(paths: list[Path], public_key: bytes | None, as_json: bool) -> None:
    try:
        reports = verify_trails(paths, public_key=public_key)
    except VerifyError as exc:
        _failed(exc, as_json)
    if as_json:
        echo_json(
            {
                "Valid": True,
                "Trails": [
                    {"Node": node, "Records": r.records, "HeadHash": r.head_hash}
                    for node, r in reports
                ],
            }
        )
        return
    for node, report in reports:
        click.echo(f"node {node}: {report.describe()}")


@audit.command("query")
@data_dir_option
@click.option("--key", "key_id", default=None, help="Key id or ARN.")
@click.option("--principal", default=None, help="Principal ARN.")
@click.option("--event", "event_name", default=None, help="Operation name, e.g. Decrypt.")
@click.option("--error", "error_code", default=None, help="Only calls that failed with this code.")
@click.option("--errors", "any_error", is_flag=True, help="Only calls that failed.")
@click.option("--since", default=None, help="ISO 8601 time (inclusive).")
@click.option("--until", default=None, help="ISO 8601 time (exclusive).")
@click.option("--limit", type=int, default=None, help="At most this many records.")
@_trail_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines (one event per line).")
@kms_errors
def audit_query(
    data_dir: Path | None,
    trails: tuple[Path, ...],
    key_id: str | None,
    principal: str | None,
    event_name: str | None,
    error_code: str | None,
    any_error: bool,
    since: str | None,
    until: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Search the trail by key, principal, operation, error and time."""
    import json

    error: str | bool | None = error_code if error_code else (True if any_error else None)
    filters: dict[str, Any] = {
        "key_id": key_id,
        "principal": principal,
        "event_name": event_name,
        "error_code": error,
        "since": _when(since),
        "until": _when(until),
    }
    path = existing_data_dir(data_dir)
    events = query_trails([path, *trails], **filters) if trails else query(path, **filters)
    columns = ("time", "node", "event", "principal", "key", "error")
    table = Table(*(c for c in columns if trails or c != "node"))
    for count, event in enumerate(events):
        if limit is not None and count >= limit:
            break
        if as_json:
            click.echo(json.dumps(event, separators=(",", ":")))
            continue
        resources = event.get("resources") or []
        key = resources[0].get("ARN", "") if resources else ""
        table.add_row(
            str(event.get("eventTime", "")),
            *([str(event.get("node", ""))] if trails else []),
            str(event.get("eventName", "")),
            str((event.get("userIdentity") or {}).get("arn", "")),
            str(key).rsplit("/", 1)[-1],
            str(event.get("errorCode") or ""),
        )
    if not as_json:
        print_table(table)


@click.command()
@data_dir_option
@click.option("--since", default=None, help="ISO 8601 date: count from here [the first record].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@kms_errors
def usage(data_dir: Path | None, since: str | None, as_json: bool) -> None:
    """Requests per key and operation, priced as AWS KMS would, and what batching saved."""
    path = existing_data_dir(data_dir)
    start = _when(since)
    svc = open_service(path, passphrase=os.environ.get("KMS_PASSPHRASE") or None)
    try:
        keys: list[Any] = []
        after = None
        while page := svc.store.list_keys(after, 500):
            for key in page:
                rotations = sum(1 for m in svc.store.list_materials(key.key_id) if m.rotation_type)
                keys.append((key, rotations))
            after = page[-1].key_id
    finally:
        svc.close()
    now = utcnow()
    report = compute_usage(query(path, since=start), keys, since=start, until=now)
    data = report.as_dict()
    if as_json:
        echo_json(data)
        return
    console = Console()
    console.print(
        f"Requests: {report.requests} ({report.errors} failed) since {data['Since'] or 'the start'}"
    )
    ops = Table("operation", "requests")
    for name, count in report.by_operation.most_common():
        ops.add_row(name, str(count))
    print_table(ops)
    keys_table = Table("key", "requests")
    for arn, counter in sorted(report.by_key.items()):
        keys_table.add_row(arn.rsplit("/", 1)[-1], str(sum(counter.values())))
    print_table(keys_table)
    costs = data["CostsUSD"]
    console.print(
        f"Priced as AWS KMS (list prices): key storage ${costs['KeyStorage']:.4f}, "
        f"requests ${costs['SymmetricRequests'] + costs['AsymmetricRequests']:.4f}, "
        f"total ${costs['Total']:.4f}"
    )
    console.print(
        f"Batching delivered {report.batch_items} items and saved {report.saved_requests} "
        f"requests (symmetric requests without batching: "
        f"${data['SymmetricRequestCostWithoutBatchingUSD']:.4f})"
    )


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    group.add_command(audit)
    group.add_command(usage)
