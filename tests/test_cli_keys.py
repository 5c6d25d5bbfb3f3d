"""The ``kms`` key commands: create-key ... rotation, in-process and through a real daemon.

In-process runs use click's CliRunner on the group ``main()`` builds, against a
data dir made by ``kms init`` (no daemon there, so each command opens the data
dir with the audit trail on). ``--json`` output is checked against botocore's
KMS output shapes: AWS member names only, required members present, blobs as
base64, times as epoch numbers. Failures exit 1 with ``<AWSErrorCode>: <message>``
on stderr; bad arguments are click usage errors (exit 2).

The last tests run the installed ``kms`` script as subprocesses against
``kms serve`` and tell from the audit trail which path each call took:
``unix:<pid>`` sources come through the daemon's socket, ``local:<pid>`` from a
process that opened the data dir itself.

test_cli_crypto.py and test_cli_access.py import the helpers from here.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.session
import click
import pytest
from click.testing import CliRunner, Result

from kmscore.audit import query
from kmscore.client import LocalKMS
from kmscore.frontends.cli import access, admin, audit, crypto, importing, keys, serve
from kmscore.frontends.cli.main import cli

ACCOUNT = "111122223333"
MODEL = botocore.session.get_session().get_service_model("kms")


def build_cli() -> click.Group:
    """The ``kms`` group with every subcommand, registered as ``main()`` does."""
    for module in (admin, serve, keys, importing, crypto, access, audit):
        module.register(cli)
    return cli


CLI = build_cli()


# --- helpers shared with test_cli_crypto.py and test_cli_access.py -----------------------


def check_shape(operation: str, value: Any) -> None:
    """Assert ``value`` is ``operation``'s AWS JSON response, by botocore's model."""
    shape = MODEL.operation_model(operation).output_shape
    if shape is None:
        assert value == {}, f"{operation} answers nothing in AWS, got {value!r}"
        return
    _check(shape, value, operation)


def _check(shape: Any, value: Any, where: str) -> None:
    kind = shape.type_name
    assert value is not None, f"{where}: null (AWS leaves a member out instead)"
    if kind == "structure":
        assert isinstance(value, dict), where
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{where}: not AWS members: {sorted(unknown)}"
        missing = set(shape.required_members) - set(value)
        assert not missing, f"{where}: required members missing: {sorted(missing)}"
        for name, member in value.items():
            _check(shape.members[name], member, f"{where}.{name}")
    elif kind == "list":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(shape.member, item, f"{where}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), where
        for k, v in value.items():
            _check(shape.key, k, f"{where} key")
            _check(shape.value, v, f"{where}.{k}")
    elif kind == "string":
        assert isinstance(value, str), where
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r} not in {shape.enum}"
    elif kind == "blob":
        assert isinstance(value, str), f"{where}: a blob is a base64 string"
        base64.b64decode(value, validate=True)
    elif kind == "timestamp":
        assert isinstance(value, int | float) and not isinstance(value, bool), (
            f"{where}: a time is epoch seconds, got {value!r}"
        )
        assert 1.5e9 < value < 4e9, f"{where}: {value} is not epoch seconds"
    elif kind == "boolean":
        assert isinstance(value, bool), where
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), where
    else:  # pragma: no cover - no other type appears in KMS responses
        pytest.fail(f"{where}: unexpected shape type {kind}")


def rows(output: str) -> dict[str, str]:
    """The ``Name: value`` lines people see, as a dict."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        name, sep, value = line.partition(":")
        assert sep and " " not in name, f"not a row: {line!r}"
        out[name] = value.strip()
    return out


class Kms:
    """The ``kms`` command group run in-process on one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def run(self, *args: str | os.PathLike[str], stdin: bytes | None = None) -> Result:
        argv = [str(a) for a in args] + ["--data-dir", str(self.data_dir)]
        return CliRunner().invoke(CLI, argv, input=stdin)

    def ok(self, *args: str | os.PathLike[str], stdin: bytes | None = None) -> Result:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, (result.stderr, result.exception)
        return result

    def json(
        self, operation: str, *args: str | os.PathLike[str], stdin: bytes | None = None
    ) -> Any:
        """Run with ``--json``; the output must be ``operation``'s AWS response."""
        value = json.loads(self.ok(*args, "--json", stdin=stdin).stdout)
        check_shape(operation, value)
        return value

    def fails(self, code: str, *args: str | os.PathLike[str], stdin: bytes | None = None) -> str:
        """Run it (with and without ``--json``): exit 1, ``<code>: <message>`` on stderr."""
        message = ""
        for extra in ((), ("--json",)):
            result = self.run(*args, *extra, stdin=stdin)
            assert result.exit_code == 1, (result.exit_code, result.stdout, result.exception)
            assert result.stdout == ""
            err = result.stderr
            assert err.startswith(f"{code}: ") and err.endswith("\n") and err.count("\n") == 1, err
            assert len(err) > len(code) + 3, "no message"
            message = err[len(code) + 2 : -1]
        return message

    def usage_error(
        self, *args: str | os.PathLike[str], stdin: bytes | None = None, says: str = ""
    ) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
        assert result.stdout == ""
        assert says in result.stderr
        return result.stderr

    def new_key(self, *args: str) -> str:
        return str(self.json("CreateKey", "create-key", *args)["KeyMetadata"]["KeyId"])

    def records(self) -> list[dict[str, Any]]:
        return list(query(self.data_dir))


@pytest.fixture
def no_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$KMS_DATA_DIR points nowhere, so only --data-dir can reach a data dir."""
    nowhere = tmp_path / "no-such-data-dir"
    monkeypatch.setenv("KMS_DATA_DIR", str(nowhere))
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)
    return nowhere


def init_data_dir(path: Path) -> Path:
    result = CliRunner().invoke(CLI, ["init", "--data-dir", str(path)])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert (path / "kms.db").exists()
    return path


@pytest.fixture
def kms(tmp_path: Path, no_default_data_dir: Path) -> Kms:
    """A data dir made by ``kms init``, and the commands run on it."""
    return Kms(init_data_dir(tmp_path / "kms"))


def arn(key_id: str) -> str:
    return f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"


# --- create-key --------------------------------------------------------------------------


def test_create_key_json_is_the_aws_response(kms: Kms) -> None:
    created = kms.json(
        "CreateKey", "create-key", "--description", "invoices", "--tag", "team=billing"
    )
    assert list(created) == ["KeyMetadata"]
    md = created["KeyMetadata"]
    assert md["Arn"] == arn(md["KeyId"]) and md["AWSAccountId"] == ACCOUNT
    assert md["Description"] == "invoices"
    assert md["KeyState"] == "Enabled" and md["Enabled"] is True
    assert md["KeyUsage"] == "ENCRYPT_DECRYPT" and md["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert md["Origin"] == "AWS_KMS" and md["KeyManager"] == "CUSTOMER"
    assert md["MultiRegion"] is False
    assert abs(md["CreationDate"] - time.time()) < 60
    # The same metadata describe-key prints, and what the library returns, on the wire.
    described = kms.json("DescribeKey", "describe-key", md["KeyId"])
    assert described == created
    with LocalKMS(kms.data_dir) as local:
        raw = local.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
        tags = local.list_resource_tags(KeyId=md["KeyId"])["Tags"]
    assert md["CreationDate"] == raw["CreationDate"].timestamp()
    assert tags == [{"TagKey": "team", "TagValue": "billing"}]


def test_create_key_options(kms: Kms, tmp_path: Path) -> None:
    multi = kms.json("CreateKey", "create-key", "--multi-region")["KeyMetadata"]
    assert multi["KeyId"].startswith("mrk-") and multi["MultiRegion"] is True
    explicit = kms.json(
        "CreateKey", "create-key", "--key-usage", "ENCRYPT_DECRYPT",
        "--key-spec", "SYMMETRIC_DEFAULT", "--tag", "a=1", "--tag", "b=x=y",
    )["KeyMetadata"]  # fmt: skip
    listed = kms.json("ListResourceTags", "tag", explicit["KeyId"])
    assert listed["Tags"] == [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "x=y"}]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "admin",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    with_policy = kms.new_key("--policy", str(path))
    got = kms.json("GetKeyPolicy", "policy", "get", with_policy)
    assert json.loads(got["Policy"]) == policy


def test_create_key_for_people(kms: Kms) -> None:
    shown = rows(kms.ok("create-key", "--description", "for people").stdout)
    assert list(shown) == [
        "KeyId", "Arn", "KeyState", "Description", "KeySpec", "KeyUsage", "Origin",
        "CreationDate", "MultiRegion",
    ]  # fmt: skip
    assert shown["Arn"] == arn(shown["KeyId"])
    assert shown["KeyState"] == "Enabled" and shown["Description"] == "for people"
    assert shown["MultiRegion"] == "False"


def test_create_key_failures(kms: Kms, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "JSON" in kms.fails("MalformedPolicyDocumentException", "create-key", "--policy", bad)
    no_statement = tmp_path / "empty.json"
    no_statement.write_text('{"Version": "2012-10-17"}')
    kms.fails("MalformedPolicyDocumentException", "create-key", "--policy", no_statement)
    assert "keyUsage" in kms.fails("ValidationException", "create-key", "--key-usage", "BOGUS")
    kms.fails("ValidationException", "create-key", "--description", "x" * 8193)
    kms.usage_error("create-key", "--tag", "novalue", says="--tag")
    kms.usage_error("create-key", "--policy", tmp_path / "missing.json", says="--policy")
    # Nothing was created by any of them.
    assert kms.json("ListKeys", "list-keys")["Keys"] == []


def test_a_key_command_needs_an_initialized_data_dir(
    tmp_path: Path, no_default_data_dir: Path
) -> None:
    nowhere = Kms(tmp_path / "never-initialized")
    nowhere.usage_error("list-keys", says="kms init")
    assert not (tmp_path / "never-initialized").exists()
    # Without --data-dir the default ($KMS_DATA_DIR here) is used, and is not there either.
    result = CliRunner().invoke(CLI, ["describe-key", "whatever"])
    assert result.exit_code == 2 and str(no_default_data_dir) in result.stderr


# --- list-keys, describe-key ------------------------------------------------------------


def test_list_keys(kms: Kms) -> None:
    assert kms.json("ListKeys", "list-keys") == {"Keys": [], "Truncated": False}
    made = sorted(kms.new_key() for _ in range(3))
    listed = kms.json("ListKeys", "list-keys")
    assert sorted(k["KeyId"] for k in listed["Keys"]) == made
    assert all(k["KeyArn"] == arn(k["KeyId"]) for k in listed["Keys"])
    assert listed["Truncated"] is False
    page = kms.json("ListKeys", "list-keys", "--limit", "2")
    assert len(page["Keys"]) == 2 and page["Truncated"] is True and page["NextMarker"]
    table = kms.ok("list-keys").stdout
    assert "KeyId" in table and "KeyArn" in table
    for key_id in made:  # whole, never cut short by the table's width
        assert arn(key_id) in table


def test_list_keys_failures(kms: Kms) -> None:
    assert "limit" in kms.fails("ValidationException", "list-keys", "--limit", "0")
    kms.fails("ValidationException", "list-keys", "--limit", "1001")
    kms.usage_error("list-keys", "--limit", "many")


def test_describe_key_by_every_reference(kms: Kms) -> None:
    key_id = kms.new_key("--description", "d")
    kms.ok("alias", "create", "alias/described", key_id)
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/described"
    for ref in (key_id, arn(key_id), "alias/described", alias_arn):
        md = kms.json("DescribeKey", "describe-key", ref)["KeyMetadata"]
        assert md["KeyId"] == key_id
    shown = rows(kms.ok("describe-key", "alias/described").stdout)
    assert shown["KeyId"] == key_id and shown["Description"] == "d"


def test_describe_key_failures(kms: Kms) -> None:
    assert "nope" in kms.fails("NotFoundException", "describe-key", "nope")
    kms.fails("NotFoundException", "describe-key", "alias/missing")
    kms.fails("NotFoundException", "describe-key", "1234abcd-12ab-34cd-56ef-1234567890ab")
    # Another Region's ARN is not found here.
    key_id = kms.new_key()
    kms.fails("NotFoundException", "describe-key", arn(key_id).replace("us-east-1", "eu-west-1"))
    kms.usage_error("describe-key")


# --- enable-key, disable-key -------------------------------------------------------------


def test_disable_and_enable(kms: Kms) -> None:
    key_id = kms.new_key()
    assert kms.json("DisableKey", "disable-key", key_id) == {}
    md = kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]
    assert md["KeyState"] == "Disabled" and md["Enabled"] is False
    assert "disabled" in kms.fails("DisabledException", "encrypt", key_id, stdin=b"x")
    assert rows(kms.ok("disable-key", arn(key_id)).stdout) == {"KeyId": arn(key_id)}
    assert rows(kms.ok("enable-key", key_id).stdout) == {"KeyId": key_id}
    assert kms.json("EnableKey", "enable-key", key_id) == {}
    assert kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    kms.ok("encrypt", key_id, stdin=b"x")


def test_enable_and_disable_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/state", key_id)
    for command in ("enable-key", "disable-key"):
        kms.fails("NotFoundException", command, "no-such-key")
        # An alias where only a key id or key ARN may stand.
        assert "alias/state" in kms.fails("NotFoundException", command, "alias/state")
    kms.ok("schedule-deletion", key_id, "--days", "7")
    kms.fails("KMSInvalidStateException", "enable-key", key_id)
    kms.fails("KMSInvalidStateException", "disable-key", key_id)


# --- schedule-deletion, cancel-deletion ----------------------------------------------------


def test_schedule_and_cancel_deletion(kms: Kms) -> None:
    key_id = kms.new_key()
    before = time.time()
    scheduled = kms.json("ScheduleKeyDeletion", "schedule-deletion", key_id, "--days", "7")
    assert scheduled["KeyId"] == arn(key_id)
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    assert 7 * 86400 - 120 < scheduled["DeletionDate"] - before < 8 * 86400 + 120
    kms.fails("KMSInvalidStateException", "encrypt", key_id, stdin=b"x")
    assert kms.json("CancelKeyDeletion", "cancel-deletion", key_id) == {"KeyId": arn(key_id)}
    md = kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]
    assert md["KeyState"] == "Disabled" and "DeletionDate" not in md
    # For people; the default window is 30 days.
    shown = rows(kms.ok("schedule-deletion", key_id).stdout)
    assert shown["KeyId"] == arn(key_id) and shown["KeyState"] == "PendingDeletion"
    assert shown["PendingWindowInDays"] == "30" and shown["DeletionDate"]
    assert rows(kms.ok("cancel-deletion", key_id).stdout) == {"KeyId": arn(key_id)}


def test_deletion_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/doomed", key_id)
    for days in ("6", "31", "0", "-1"):
        message = kms.fails("ValidationException", "schedule-deletion", key_id, "--days", days)
        assert "pendingWindowInDays" in message
    kms.usage_error("schedule-deletion", key_id, "--days", "seven")
    kms.fails("NotFoundException", "schedule-deletion", "no-such-key")
    kms.fails("NotFoundException", "schedule-deletion", "alias/doomed")
    assert kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    # Nothing to cancel; unknown key; alias.
    assert "is not pending deletion." in kms.fails(
        "KMSInvalidStateException", "cancel-deletion", key_id
    )
    kms.fails("NotFoundException", "cancel-deletion", "no-such-key")
    kms.fails("NotFoundException", "cancel-deletion", "alias/doomed")


# --- alias create|update|list|delete -------------------------------------------------------


def test_aliases(kms: Kms) -> None:
    first, second = kms.new_key(), kms.new_key()
    assert kms.json("CreateAlias", "alias", "create", "alias/app", first) == {}
    shown = rows(kms.ok("alias", "create", "alias/other", arn(second)).stdout)
    assert shown == {"AliasName": "alias/other", "TargetKeyId": arn(second)}
    listed = kms.json("ListAliases", "alias", "list")
    by_name = {a["AliasName"]: a for a in listed["Aliases"]}
    assert listed["Truncated"] is False
    assert by_name["alias/app"]["TargetKeyId"] == first
    assert by_name["alias/app"]["AliasArn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/app"
    assert by_name["alias/other"]["TargetKeyId"] == second
    only = kms.json("ListAliases", "alias", "list", "--key", second)["Aliases"]
    assert [a["AliasName"] for a in only] == ["alias/other"]
    table = kms.ok("alias", "list").stdout
    for name, target in (("alias/app", first), ("alias/other", second)):
        line = next(x for x in table.splitlines() if name in x)
        assert target in line  # the whole key id, on the alias's line
    assert f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/other" in table

    assert kms.json("UpdateAlias", "alias", "update", "alias/app", second) == {}
    md = kms.json("DescribeKey", "describe-key", "alias/app")["KeyMetadata"]
    assert md["KeyId"] == second
    shown = rows(kms.ok("alias", "update", "alias/app", first).stdout)
    assert shown == {"AliasName": "alias/app", "TargetKeyId": first}

    assert kms.json("DeleteAlias", "alias", "delete", "alias/app") == {}
    assert rows(kms.ok("alias", "delete", "alias/other").stdout) == {"Deleted": "alias/other"}
    assert kms.json("ListAliases", "alias", "list")["Aliases"] == []


def test_alias_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/taken", key_id)
    kms.fails("AlreadyExistsException", "alias", "create", "alias/taken", key_id)
    # An alias cannot point at an alias, nor at a missing key.
    assert "alias/taken" in kms.fails(
        "NotFoundException", "alias", "create", "alias/chained", "alias/taken"
    )
    kms.fails("NotFoundException", "alias", "create", "alias/nothing", "no-such-key")
    kms.fails("ValidationException", "alias", "create", "no-prefix", key_id)
    kms.fails("NotFoundException", "alias", "update", "alias/missing", key_id)
    kms.fails("NotFoundException", "alias", "update", "alias/taken", "alias/taken")
    kms.fails("NotFoundException", "alias", "list", "--key", "no-such-key")
    kms.fails("NotFoundException", "alias", "delete", "alias/missing")
    kms.usage_error("alias", "create", "alias/only-a-name")
    names = [a["AliasName"] for a in kms.json("ListAliases", "alias", "list")["Aliases"]]
    assert names == ["alias/taken"]


# --- tag -----------------------------------------------------------------------------------


def test_tag(kms: Kms) -> None:
    key_id = kms.new_key()
    assert kms.json("ListResourceTags", "tag", key_id) == {"Tags": [], "Truncated": False}
    listed = kms.json("ListResourceTags", "tag", key_id, "env=prod", "team=db", "empty=")
    assert {t["TagKey"]: t["TagValue"] for t in listed["Tags"]} == {
        "empty": "",
        "env": "prod",
        "team": "db",
    }
    # Add and remove in one command; the listing shows the result.
    after = kms.json("ListResourceTags", "tag", arn(key_id), "env=dev", "--remove", "team")
    assert {t["TagKey"]: t["TagValue"] for t in after["Tags"]} == {"empty": "", "env": "dev"}
    table = kms.ok("tag", key_id, "--remove", "empty").stdout
    assert "TagKey" in table and "env" in table and "dev" in table and "empty" not in table


def test_tag_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/tagged", key_id)
    kms.fails("NotFoundException", "tag", "no-such-key", "a=b")
    kms.fails("NotFoundException", "tag", "alias/tagged", "a=b")
    kms.fails("NotFoundException", "tag", "no-such-key")
    kms.usage_error("tag", key_id, "novalue", says="PAIRS")
    kms.usage_error("tag", key_id, "=value", says="PAIRS")
    kms.fails("ValidationException", "tag", key_id, f"{'k' * 129}=v")
    kms.fails("TagException", "tag", key_id, "aws:reserved=v")
    assert kms.json("ListResourceTags", "tag", key_id)["Tags"] == []


# --- rotate, rotation status|enable|disable|list -------------------------------------------


def test_rotate_on_demand(kms: Kms) -> None:
    key_id = kms.new_key()
    first = kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert kms.json("RotateKeyOnDemand", "rotate", key_id) == {"KeyId": arn(key_id)}
    assert rows(kms.ok("rotate", arn(key_id)).stdout) == {"KeyId": arn(key_id)}
    listed = kms.json("ListKeyRotations", "rotation", "list", key_id)
    assert listed["Truncated"] is False and len(listed["Rotations"]) == 2
    assert all(r["RotationType"] == "ON_DEMAND" for r in listed["Rotations"])
    current = kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]
    assert current["CurrentKeyMaterialId"] != first
    assert [r["KeyMaterialState"] for r in listed["Rotations"]] == ["NON_CURRENT", "CURRENT"]
    assert listed["Rotations"][-1]["KeyMaterialId"] == current["CurrentKeyMaterialId"]
    table = kms.ok("rotation", "list", key_id).stdout
    for rotation_ in listed["Rotations"]:
        assert rotation_["KeyMaterialId"] in table  # 64 hex digits, whole
    assert "ON_DEMAND" in table and "CURRENT" in table


def test_rotate_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/rot", key_id)
    kms.fails("NotFoundException", "rotate", "no-such-key")
    kms.fails("NotFoundException", "rotate", "alias/rot")
    kms.ok("disable-key", key_id)
    kms.fails("DisabledException", "rotate", key_id)
    assert kms.json("ListKeyRotations", "rotation", "list", key_id)["Rotations"] == []


def test_automatic_rotation(kms: Kms) -> None:
    key_id = kms.new_key()
    status = kms.json("GetKeyRotationStatus", "rotation", "status", key_id)
    assert status == {"KeyRotationEnabled": False, "KeyId": arn(key_id)}
    shown = rows(kms.ok("rotation", "status", key_id).stdout)
    assert shown == {"KeyRotationEnabled": "False", "KeyId": arn(key_id)}

    before = time.time()
    enabled = kms.json("GetKeyRotationStatus", "rotation", "enable", key_id, "--days", "90")
    assert enabled["KeyRotationEnabled"] is True and enabled["RotationPeriodInDays"] == 90
    assert 89 * 86400 < enabled["NextRotationDate"] - before < 91 * 86400
    shown = rows(kms.ok("rotation", "enable", key_id).stdout)  # back to the 365-day default
    assert shown["KeyRotationEnabled"] == "True" and shown["RotationPeriodInDays"] == "365"
    assert kms.json("GetKeyRotationStatus", "rotation", "status", key_id)["KeyRotationEnabled"]

    assert kms.json("DisableKeyRotation", "rotation", "disable", key_id) == {}
    assert rows(kms.ok("rotation", "disable", key_id).stdout) == {"KeyId": key_id}
    status = kms.json("GetKeyRotationStatus", "rotation", "status", key_id)
    assert status["KeyRotationEnabled"] is False
    assert kms.json("ListKeyRotations", "rotation", "list", key_id) == {
        "Rotations": [],
        "Truncated": False,
    }
    assert "RotationDate" in kms.ok("rotation", "list", key_id).stdout  # an empty table


def test_automatic_rotation_failures(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("alias", "create", "alias/auto", key_id)
    for days in ("89", "2561"):
        message = kms.fails("ValidationException", "rotation", "enable", key_id, "--days", days)
        assert "rotationPeriodInDays" in message
    for sub in ("status", "enable", "disable", "list"):
        kms.fails("NotFoundException", "rotation", sub, "no-such-key")
    for sub in ("status", "enable", "disable"):
        kms.fails("NotFoundException", "rotation", sub, "alias/auto")
    kms.ok("disable-key", key_id)
    kms.fails("DisabledException", "rotation", "enable", key_id)
    kms.usage_error("rotation", "enable", key_id, "--days", "often")


# --- audit: without a daemon every command opened the data dir ------------------------------


def test_in_process_commands_are_audited_as_local(kms: Kms) -> None:
    key_id = kms.new_key()
    kms.ok("describe-key", key_id)
    kms.fails("NotFoundException", "describe-key", "no-such-key")
    events = kms.records()
    assert [e["eventName"] for e in events] == [
        "CreateKey", "DescribeKey", "DescribeKey", "DescribeKey",
    ]  # fmt: skip
    assert {e["sourceIPAddress"] for e in events} == {f"local:{os.getpid()}"}
    assert [e.get("errorCode") for e in events][-2:] == ["NotFoundException"] * 2


def test_a_stale_socket_file_is_not_a_daemon(kms: Kms) -> None:
    """A socket left by a killed daemon: nobody listens, so the data dir is opened."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(kms.data_dir / "kms.sock"))
    stale.close()
    key_id = kms.new_key()
    assert kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]["KeyId"] == key_id
    # So is --socket naming a path where nothing is.
    kms.ok("describe-key", key_id, "--socket", kms.data_dir / "elsewhere.sock")
    assert all(e["sourceIPAddress"].startswith("local:") for e in kms.records())


# --- through a real daemon ---------------------------------------------------------------


def kms_script() -> str | None:
    """The installed ``kms`` script (the one beside this Python, not a shim, when there)."""
    beside = Path(sys.executable).parent / "kms"
    return str(beside) if beside.exists() else shutil.which("kms")


KMS = kms_script()
needs_script = pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")


def run_kms(
    *args: str | os.PathLike[str], stdin: bytes | None = None, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """One ``kms`` command in its own process."""
    assert KMS is not None
    return subprocess.run(
        [KMS, *(str(a) for a in args)],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )


def kms_ok(*args: str | os.PathLike[str], stdin: bytes | None = None, env: dict[str, str]) -> bytes:
    done = run_kms(*args, stdin=stdin, env=env)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


class Daemon:
    """``kms serve`` in a subprocess, up once its "listening on" line is out."""

    def __init__(self, *args: str | os.PathLike[str], env: dict[str, str]) -> None:
        assert KMS is not None
        self.proc = subprocess.Popen(
            [KMS, "serve", *(str(a) for a in args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines = self._wait_ready()

    def _wait_ready(self, seconds: float = 30.0) -> list[str]:
        # The raw fd, not a buffered readline: select() must see what is unread.
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                seen += chunk
                if b"listening on" in seen and seen.endswith(b"\n"):
                    return seen.decode().splitlines()
            elif self.proc.poll() is not None:
                break
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        pytest.fail(f"kms serve did not start: {seen!r} {err!r}")

    def stop(self) -> None:
        """SIGTERM; it must exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@contextmanager
def daemon(*args: str | os.PathLike[str], env: dict[str, str]) -> Iterator[Daemon]:
    running = Daemon(*args, env=env)
    try:
        yield running
    except BaseException:
        running.kill()
        raise
    running.stop()


@pytest.fixture
def env(no_default_data_dir: Path) -> dict[str, str]:
    """The subprocesses' environment: no default data dir to fall back on."""
    return {**os.environ, "KMS_DATA_DIR": str(no_default_data_dir)}


def sources(records: list[dict[str, Any]]) -> list[str]:
    return [r["sourceIPAddress"].split(":")[0] for r in records]


@needs_script
def test_the_cli_uses_the_daemon_and_opens_the_data_dir_without_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data_dir = init_data_dir(tmp_path / "kms")
    dd = ("--data-dir", data_dir)

    def session(key_id: str) -> None:
        """The same commands with the daemon and without it."""
        described = json.loads(kms_ok("describe-key", "alias/app", "--json", *dd, env=env))
        assert described["KeyMetadata"]["KeyId"] == key_id
        sealed = kms_ok("encrypt", "alias/app", "--context", "doc=42", *dd, stdin=b"hi", env=env)
        opened = kms_ok("decrypt", "--context", "doc=42", *dd, stdin=sealed, env=env)
        assert opened == b"hi"
        dk = json.loads(kms_ok("generate-data-key", key_id, "--json", *dd, env=env))
        (tmp_path / "dk.bin").write_bytes(base64.b64decode(dk["CiphertextBlob"]))
        plain = kms_ok("decrypt", "--in", tmp_path / "dk.bin", *dd, env=env)
        assert plain == base64.b64decode(dk["Plaintext"])
        refused = run_kms("decrypt", "--context", "doc=43", *dd, stdin=sealed, env=env)
        assert refused.returncode == 1
        assert refused.stderr.startswith(b"InvalidCiphertextException: ")
        assert key_id in kms_ok("list-keys", *dd, env=env).decode()

    names = [
        "DescribeKey", "Encrypt", "Decrypt", "GenerateDataKey", "Decrypt", "Decrypt", "ListKeys",
    ]  # fmt: skip
    with daemon(*dd, env=env) as served:
        assert any(line.startswith("kmscore daemon (pid ") for line in served.lines)
        created = json.loads(kms_ok("create-key", "--json", *dd, env=env))
        key_id = created["KeyMetadata"]["KeyId"]
        kms_ok("alias", "create", "alias/app", key_id, *dd, env=env)
        session(key_id)
        through_daemon = list(query(data_dir))
        daemon_pid = served.proc.pid
    assert not (data_dir / "kms.sock").exists()
    assert [r["eventName"] for r in through_daemon] == ["CreateKey", "CreateAlias", *names]
    assert set(sources(through_daemon)) == {"unix"}, through_daemon
    peers = {r["sourceIPAddress"] for r in through_daemon}
    assert f"unix:{daemon_pid}" not in peers and len(peers) == len(through_daemon)
    assert {r["userAgent"] for r in through_daemon} == {"kmscore-rpc"}

    # The daemon is gone: the same commands open the data dir themselves.
    session(key_id)
    local = list(query(data_dir))[len(through_daemon) :]
    assert [r["eventName"] for r in local] == names
    assert set(sources(local)) == {"local"}, local


@needs_script
def test_socket_option_reaches_a_daemon_outside_the_data_dir(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data_dir = init_data_dir(tmp_path / "kms")
    # A short path: a Unix socket's name is limited to 107 bytes.
    sock_dir = Path(tempfile.mkdtemp(prefix="kms-", dir="/tmp"))
    sock = sock_dir / "kms.sock"
    try:
        with daemon("--data-dir", data_dir, "--socket", sock, env=env):
            assert not (data_dir / "kms.sock").exists()
            # The socket alone is enough: no --data-dir, and $KMS_DATA_DIR is nowhere.
            created = json.loads(kms_ok("create-key", "--json", "--socket", sock, env=env))
            key_id = created["KeyMetadata"]["KeyId"]
            sealed = kms_ok("encrypt", key_id, "--socket", sock, stdin=b"abc", env=env)
            both = ("--socket", sock, "--data-dir", data_dir)
            assert kms_ok("decrypt", *both, stdin=sealed, env=env) == b"abc"
            # Without --socket the CLI looks in the data dir, finds no daemon, opens it.
            kms_ok("describe-key", key_id, "--data-dir", data_dir, env=env)
        events = list(query(data_dir))
        names = ["CreateKey", "Encrypt", "Decrypt", "DescribeKey"]
        assert [r["eventName"] for r in events] == names
        assert sources(events) == ["unix", "unix", "unix", "local"]
        assert not sock.exists()
        # No daemon on the socket now, and no data dir to fall back on.
        gone = run_kms("describe-key", key_id, "--socket", sock, env=env)
        assert gone.returncode == 2 and b"kms init" in gone.stderr
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
