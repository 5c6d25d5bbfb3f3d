"""Helpers shared by the audit tests (no tests here)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from kmscore.audit import Identity, build_event

ACCOUNT = "111122223333"
REGION = "us-east-1"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"
ALICE = Identity(
    type="IAMUser",
    principal_id="AIDAALICE",
    arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
    account_id=ACCOUNT,
    access_key_id="AKIAALICE",
    user_name="alice",
)
BOB = Identity(
    type="IAMUser",
    principal_id="AIDABOB",
    arn=f"arn:aws:iam::{ACCOUNT}:user/bob",
    account_id=ACCOUNT,
)


def event(
    name: str = "Encrypt",
    *,
    key_arn: str = KEY_ARN,
    identity: Identity = ALICE,
    error_code: str | None = None,
    request_id: str | None = None,
    **parameters: Any,
) -> dict[str, Any]:
    """A typical KMS event; ``parameters`` become request parameters."""
    return build_event(
        name,
        region=REGION,
        account_id=ACCOUNT,
        identity=identity,
        source_ip="unix:4242",
        user_agent="kmscore-tests/1.0",
        request_parameters={"KeyId": key_arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        | parameters,
        resources=[key_arn],
        read_only=False,
        error_code=error_code,
        error_message="denied" if error_code else None,
        request_id=request_id or str(uuid.uuid4()),
    )


def records(data_dir: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """Every stored record as (segment name, 1-based line, record)."""
    out = []
    for path in sorted((data_dir / "audit").glob("segment-*.jsonl")):
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            out.append((path.name, number, json.loads(line)))
    return out


def checkpoints(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored checkpoint."""
    path = data_dir / "audit" / "checkpoints.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def locate(data_dir: Path, seq: int) -> tuple[Path, int]:
    """The segment file and 1-based line holding record ``seq``."""
    for name, number, record in records(data_dir):
        if record["seq"] == seq:
            return data_dir / "audit" / name, number
    raise LookupError(seq)


def rewrite_lines(path: Path, edit: Any) -> None:
    """Replace a file's lines by ``edit(lines)`` (lines without newlines)."""
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"".join(line + b"\n" for line in edit(lines)))
