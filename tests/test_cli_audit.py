"""The ``kms`` command: audit verify|query and usage, over a trail LocalKMS wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.frontends.cli import admin, audit
from kmscore.frontends.cli.main import cli
from kmscore.operations import dispatch

ACCOUNT = "111122223333"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
Runner = Callable[..., Result]


@pytest.fixture(scope="module")
def kms_cli() -> click.Group:
    admin.register(cli)
    audit.register(cli)
    return cli


@pytest.fixture
def run(kms_cli: click.Group, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.delenv("KMS_DATA_DIR", raising=False)
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)

    def invoke(*args: str | os.PathLike[str]) -> Result:
        return CliRunner().invoke(kms_cli, [str(a) for a in args])

    return invoke


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))


class Trail:
    """A data dir with a closed trail and what was done to make it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: dict[str, dict[str, Any]] = {}
        self.split: datetime | None = None


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    """Two keys, three principals, batches, errors, and a one-second gap.

    Module-scoped: the tests only read it (tampering works on copies).
    """
    t = Trail(tmp_path_factory.mktemp("cli-audit") / "kms")
    with LocalKMS(t.path, audit=True) as kms:
        svc = kms.service
        bob_principal, _, _ = svc.principals.add("bob")
        bob = svc.principals.caller(bob_principal, source="local:test", user_agent="test")
        a = kms.create_key(Description="a")["KeyMetadata"]
        b = kms.create_key(Description="b")["KeyMetadata"]
        t.keys = {"a": a, "b": b}
        for _ in range(3):
            kms.encrypt(KeyId=a["KeyId"], Plaintext=b"x")
        batch = kms.generate_data_keys(KeyId=a["KeyId"], Count=100, KeySpec="AES_256")
        kms.decrypt_many(CiphertextBlobs=batch["CiphertextBlobs"][:10])
        for _ in range(2):
            with pytest.raises(KMSError):
                dispatch(svc, "Encrypt", {"KeyId": b["KeyId"], "Plaintext": b"x"}, bob)
        # A denied batch saved nothing.
        with pytest.raises(KMSError):
            dispatch(
                svc,
                "GenerateDataKeys",
                {"KeyId": b["KeyId"], "Count": 50, "KeySpec": "AES_256"},
                bob,
            )
        with pytest.raises(KMSError):
            kms.encrypt(KeyId=b["KeyId"], Plaintext=b"")
        # Records after this moment are in a later second than every record before.
        time.sleep(1.05)
        blob = kms.encrypt(KeyId=b["KeyId"], Plaintext=b"y")["CiphertextBlob"]
        kms.decrypt(CiphertextBlob=blob)
        kms.generate_random(NumberOfBytes=8)
    records = [json.loads(line) for line in audit_lines(t.path)]
    t.split = event_time(records[-3])
    assert event_time(records[-4]) < t.split
    return t


def audit_lines(path: Path) -> list[str]:
    lines: list[str] = []
    for segment in sorted((path / "audit").glob("segment-*")):
        lines += segment.read_text().splitlines()
    return lines


def query_json(run: Runner, trail: Trail, *args: str) -> list[dict[str, Any]]:
    result = run("audit", "query", "--json", "--data-dir", trail.path, *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- audit verify ------------------------------------------------------------------------------


def test_verify_a_clean_trail(run: Runner, trail: Trail) -> None:
    result = run("audit", "verify", "--data-dir", trail.path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK:")
    out = run("audit", "verify", "--json", "--data-dir", trail.path)
    assert out.exit_code == 0
    report = json.loads(out.stdout)
    assert report["Valid"] is True
    assert report["Records"] == len(audit_lines(trail.path))
    assert report["Unsealed"] == 0
    # The last signature is an anchor the trail must still hold.
    anchored = run("audit", "verify", "--anchor", report["LastSignature"], "--data-dir", trail.path)
    assert anchored.exit_code == 0, anchored.output


def test_verify_names_the_tampered_line(run: Runner, trail: Trail, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trail.path, copy)
    (segment,) = sorted((copy / "audit").glob("segment-*"))
    lines = segment.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"Encrypt"', b'"Decrypt"', 1)
    segment.write_bytes(b"\n".join(lines))
    result = run("audit", "verify", "--data-dir", copy)
    assert result.exit_code == 1
    assert f"{segment.name}:3" in result.stderr
    assert result.stderr.startswith("FAILED:")
    out = run("audit", "verify", "--json", "--data-dir", copy)
    assert out.exit_code == 1
    report = json.loads(out.stdout)
    assert report["Valid"] is False and f"{segment.name}:3" in report["Error"]


def test_verify_and_query_report_an_unreadable_trail(
    run: Runner, trail: Trail, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trail.path, copy)
    (copy / "audit-signing.pub").unlink()
    result = run("audit", "verify", "--data-dir", copy)
    assert result.exit_code == 1
    assert result.stderr.startswith("KMSInternalException:")
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    shutil.rmtree(copy / "audit")
    result = run("audit", "query", "--data-dir", copy)
    assert result.exit_code == 1
    assert result.stderr.startswith("KMSInternalException:")
    assert isinstance(result.exception, SystemExit)


# --- audit query -------------------------------------------------------------------------------


def test_query_everything_as_json_lines(run: Runner, trail: Trail) -> None:
    records = query_json(run, trail)
    assert len(records) == len(audit_lines(trail.path))
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert (
        run("audit", "query", "--json", "--limit", "3", "--data-dir", trail.path).stdout.count("\n")
        == 3
    )


def test_query_filters(run: Runner, trail: Trail) -> None:
    a, b = trail.keys["a"], trail.keys["b"]
    by_key = query_json(run, trail, "--key", a["KeyId"])
    assert [r["eventName"] for r in by_key] == [
        "CreateKey",
        "Encrypt",
        "Encrypt",
        "Encrypt",
        "GenerateDataKeys",
        "DecryptMany",
    ]
    assert query_json(run, trail, "--key", a["Arn"]) == by_key
    by_bob = query_json(run, trail, "--principal", BOB)
    assert [(r["eventName"], r["errorCode"]) for r in by_bob] == [
        ("Encrypt", "AccessDeniedException"),
        ("Encrypt", "AccessDeniedException"),
        ("GenerateDataKeys", "AccessDeniedException"),
    ]
    encrypts = query_json(run, trail, "--event", "Encrypt")
    assert len(encrypts) == 3 + 2 + 1 + 1
    denied = query_json(run, trail, "--error", "AccessDeniedException")
    assert denied == by_bob
    errors = query_json(run, trail, "--errors")
    assert {r["errorCode"] for r in errors} == {"AccessDeniedException", "ValidationException"}
    assert len(errors) == 4
    combined = query_json(run, trail, "--key", b["KeyId"], "--event", "Encrypt", "--errors")
    # Bob's two denials name the key as a resource; the validation failure names
    # it only in its request, which --key matches too.
    assert len(combined) == 3
    assert query_json(run, trail, "--event", "NoSuchOperation") == []


def test_query_since_and_until(run: Runner, trail: Trail) -> None:
    assert trail.split is not None
    split = iso(trail.split)
    total = len(audit_lines(trail.path))
    after = query_json(run, trail, "--since", split)
    assert [r["eventName"] for r in after] == ["Encrypt", "Decrypt", "GenerateRandom"]
    before = query_json(run, trail, "--until", split)
    assert len(before) == total - 3  # --until is exclusive, --since inclusive
    assert query_json(run, trail, "--since", split, "--until", split) == []
    # Naive times are UTC; dates work; a time past the end finds nothing.
    naive = trail.split.strftime("%Y-%m-%dT%H:%M:%S")
    assert query_json(run, trail, "--since", naive) == after
    assert len(query_json(run, trail, "--since", "2000-01-01")) == total
    later = iso(datetime.now(UTC) + timedelta(hours=1))
    assert query_json(run, trail, "--since", later) == []
    bad = run("audit", "query", "--since", "yesterday", "--data-dir", trail.path)
    assert bad.exit_code == 2


def test_query_table(run: Runner, trail: Trail) -> None:
    result = run("audit", "query", "--errors", "--data-dir", trail.path)
    assert result.exit_code == 0
    assert "AccessDenied" in result.output


# --- usage -------------------------------------------------------------------------------------


def usage_json(run: Runner, trail: Trail, *args: str) -> dict[str, Any]:
    result = run("usage", "--json", "--data-dir", trail.path, *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_usage_counts_per_key_and_operation(run: Runner, trail: Trail) -> None:
    a, b = trail.keys["a"], trail.keys["b"]
    data = usage_json(run, trail)
    total = len(audit_lines(trail.path))
    assert data["Requests"] == total
    assert data["Errors"] == 4
    assert data["ByOperation"] == {
        "Encrypt": 7,
        "CreateKey": 2,
        "GenerateDataKeys": 2,
        "DecryptMany": 1,
        "Decrypt": 1,
        "GenerateRandom": 1,
    }
    assert data["ByKey"][a["Arn"]] == {
        "Encrypt": 3,
        "CreateKey": 1,
        "GenerateDataKeys": 1,
        "DecryptMany": 1,
    }
    assert data["ByKey"][b["Arn"]] == {
        "Encrypt": 3,
        "CreateKey": 1,
        "GenerateDataKeys": 1,
        "Decrypt": 1,
    }
    assert set(data["ByKey"]) == {a["Arn"], b["Arn"]}


def test_usage_batch_savings(run: Runner, trail: Trail) -> None:
    data = usage_json(run, trail)
    # GenerateDataKeys Count=100 saves 99 requests, DecryptMany of 10 saves 9;
    # bob's denied batch of 50 delivered nothing and saved nothing.
    assert data["BatchItems"] == 110
    assert data["RequestsSavedByBatching"] == 99 + 9
    costs = data["CostsUSD"]
    assert set(costs) == {
        "KeyStorage",
        "SymmetricRequests",
        "AsymmetricRequests",
        "DataKeyPairRequests",
        "Total",
    }
    # A few requests are well inside the free tier.
    assert costs["SymmetricRequests"] == 0
    assert costs["AsymmetricRequests"] == 0 and costs["DataKeyPairRequests"] == 0
    assert costs["KeyStorage"] > 0
    assert costs["Total"] == pytest.approx(costs["KeyStorage"], abs=1e-6)


def test_usage_since(run: Runner, trail: Trail) -> None:
    assert trail.split is not None
    data = usage_json(run, trail, "--since", iso(trail.split))
    assert data["Requests"] == 3
    assert data["ByOperation"] == {"Encrypt": 1, "Decrypt": 1, "GenerateRandom": 1}
    assert data["RequestsSavedByBatching"] == 0
    table = run("usage", "--data-dir", trail.path)
    assert table.exit_code == 0
    assert "Requests:" in table.output and "saved 108 requests" in table.output


def test_usage_and_query_through_the_console_script(trail: Trail) -> None:
    script = shutil.which("kms") or str(Path(sys.executable).parent / "kms")
    env = {k: v for k, v in os.environ.items() if k not in ("KMS_DATA_DIR", "KMS_PASSPHRASE")}
    out = subprocess.run(
        [script, "audit", "verify", "--json", "--data-dir", str(trail.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Valid"] is True
