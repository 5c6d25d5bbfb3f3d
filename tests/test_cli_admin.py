"""The ``kms`` command: init and principal add|list|remove.

In-process runs use click's CliRunner on the same command group the console
script builds; one test runs the installed ``kms`` script in a subprocess.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from kmscore.client import LocalKMS
from kmscore.frontends.cli import admin, audit
from kmscore.frontends.cli.main import cli
from kmscore.service import open_service

ACCOUNT = "111122223333"
Runner = Callable[..., Result]


@pytest.fixture(scope="module")
def kms_cli() -> click.Group:
    """The ``kms`` group with every subcommand, as ``main()`` builds it."""
    admin.register(cli)
    audit.register(cli)
    return cli


@pytest.fixture
def run(kms_cli: click.Group, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.delenv("KMS_DATA_DIR", raising=False)
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)

    def invoke(*args: str | os.PathLike[str]) -> Result:
        return CliRunner().invoke(kms_cli, [str(a) for a in args])

    return invoke


@pytest.fixture
def data_dir(tmp_path: Path, run: Runner) -> Path:
    path = tmp_path / "kms"
    result = run("init", "--data-dir", path)
    assert result.exit_code == 0, result.output
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(text)
    return path


ENCRYPT_ONLY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}],
    }
)


# --- init --------------------------------------------------------------------------------


def test_init_makes_a_private_data_dir_and_credentials(
    tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new" / "kms"
    result = run("init", "--data-dir", path)
    assert result.exit_code == 0, result.output
    assert str(path) in result.output
    assert f"arn:aws:iam::{ACCOUNT}:user/" in result.output
    assert mode(path) == 0o700
    creds = path / "credentials"
    assert mode(creds) == 0o600
    for name in ("root.key", "kms.db"):
        assert mode(path / name) == 0o600, name
    # An AWS credentials file: profile "default" with the admin's access key.
    parser = configparser.ConfigParser()
    parser.read_string(creds.read_text())
    assert parser.sections() == ["default"]
    key_id = parser["default"]["aws_access_key_id"]
    secret = parser["default"]["aws_secret_access_key"]
    assert key_id.startswith("AKIA") and len(key_id) == 20
    assert len(secret) == 40
    # botocore's own config loader reads it the same way.
    from botocore.configloader import raw_config_parse

    assert raw_config_parse(str(creds))["default"] == {
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
    }
    # And a botocore session picks the key up from the file, as boto3 would.
    import botocore.session

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    found_creds = botocore.session.Session().get_credentials()
    assert found_creds is not None
    assert (found_creds.access_key, found_creds.secret_key) == (key_id, secret)
    # It is the access key of the admin mapped to this uid.
    svc = open_service(path)
    try:
        found = svc.principals.by_access_key(key_id)
        assert found is not None
        principal, stored_secret = found
        assert principal.uid == os.getuid()
        assert stored_secret == secret.encode()
    finally:
        svc.close()


def test_init_json_and_options(tmp_path: Path, run: Runner) -> None:
    path = tmp_path / "kms"
    result = run(
        "init", "--data-dir", path, "--region", "eu-west-3", "--account", "444455556666", "--json"
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["DataDir"] == str(path)
    assert info["Region"] == "eu-west-3" and info["Account"] == "444455556666"
    assert info["Admin"].startswith("arn:aws:iam::444455556666:user/")
    assert info["CredentialsFile"] == str(path / "credentials")
    # Running it again is harmless and says the same; another region is refused.
    again = run("init", "--data-dir", path, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout) == info
    other = run("init", "--data-dir", path, "--region", "us-west-2")
    assert other.exit_code != 0
    assert "eu-west-3" in other.output
    bad = run("init", "--data-dir", tmp_path / "bad", "--account", "12")
    assert bad.exit_code != 0


def test_init_refuses_an_empty_passphrase_variable(
    tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_PASSPHRASE", raising=False)
    path = tmp_path / "kms"
    result = run("init", "--data-dir", path, "--passphrase-env", "NO_SUCH_PASSPHRASE")
    assert result.exit_code != 0
    assert not path.exists()


# --- principal add ------------------------------------------------------------------------


def test_principal_add_json(tmp_path: Path, data_dir: Path, run: Runner) -> None:
    policy = write_policy(tmp_path, ENCRYPT_ONLY)
    result = run(
        "principal",
        "add",
        "bob",
        "--uid",
        "5000",
        "--policy",
        policy,
        "--json",
        "--data-dir",
        data_dir,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/bob"
    assert out["AccessKeyId"].startswith("AKIA") and len(out["SecretAccessKey"]) == 40
    assert out["Uid"] == 5000
    svc = open_service(data_dir)
    try:
        bob = svc.principals.by_uid(5000)
        assert bob is not None and bob.arn == out["Arn"]
        assert bob.identity_policy == ENCRYPT_ONLY
        found = svc.principals.by_access_key(out["AccessKeyId"])
        assert found is not None and found[0].name == "bob"
    finally:
        svc.close()
    # The identity policy is in force: Encrypt yes, DescribeKey no.
    with LocalKMS(data_dir, audit=False) as kms:
        key = kms.create_key()["KeyMetadata"]["KeyId"]
    with LocalKMS(data_dir, principal=out["Arn"], audit=False) as bob_kms:
        bob_kms.encrypt(KeyId=key, Plaintext=b"x")
        with pytest.raises(Exception) as info:
            bob_kms.describe_key(KeyId=key)
        assert getattr(info.value, "code", "") == "AccessDeniedException"


def test_principal_add_table_shows_the_secret_once(data_dir: Path, run: Runner) -> None:
    result = run("principal", "add", "carol", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert f"arn:aws:iam::{ACCOUNT}:user/carol" in result.output
    assert "AccessKeyId:" in result.output and "SecretAccessKey:" in result.output
    listed = run("principal", "list", "--json", "--data-dir", data_dir)
    secret = result.output.split("SecretAccessKey:")[1].split()[0]
    assert secret not in listed.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["bob"], "AlreadyExistsException"),
        (["bobby", "--uid", "5000"], "AlreadyExistsException"),
        (["bad name"], "ValidationException"),
    ],
)
def test_principal_add_refusals(data_dir: Path, run: Runner, args: list[str], code: str) -> None:
    assert run("principal", "add", "bob", "--uid", "5000", "--data-dir", data_dir).exit_code == 0
    before = run("principal", "list", "--json", "--data-dir", data_dir).stdout
    result = run("principal", "add", *args, "--data-dir", data_dir)
    assert result.exit_code != 0
    assert result.stderr.startswith(f"{code}:")
    assert isinstance(result.exception, SystemExit)  # an error message, not a traceback
    assert run("principal", "list", "--json", "--data-dir", data_dir).stdout == before


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*"}]}',
        # An identity policy has no Principal.
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}
                ],
            }
        ),
    ],
)
def test_principal_add_bad_policy_file(
    tmp_path: Path, data_dir: Path, run: Runner, text: str
) -> None:
    policy = write_policy(tmp_path, text)
    result = run("principal", "add", "dave", "--policy", policy, "--data-dir", data_dir)
    assert result.exit_code != 0
    assert result.stderr.startswith("MalformedPolicyDocumentException:")
    names = [
        p["Name"]
        for p in json.loads(run("principal", "list", "--json", "--data-dir", data_dir).stdout)[
            "Principals"
        ]
    ]
    assert "dave" not in names


def test_principal_add_missing_policy_file(tmp_path: Path, data_dir: Path, run: Runner) -> None:
    result = run(
        "principal", "add", "dave", "--policy", tmp_path / "nope.json", "--data-dir", data_dir
    )
    assert result.exit_code != 0


# --- principal list / remove -----------------------------------------------------------------


def test_principal_list_table_and_json(tmp_path: Path, data_dir: Path, run: Runner) -> None:
    policy = write_policy(tmp_path, ENCRYPT_ONLY)
    added = json.loads(
        run(
            "principal",
            "add",
            "bob",
            "--uid",
            "5001",
            "--policy",
            policy,
            "--json",
            "--data-dir",
            data_dir,
        ).stdout
    )
    run("principal", "add", "carol", "--data-dir", data_dir)
    result = run("principal", "list", "--json", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    rows = {p["Name"]: p for p in json.loads(result.stdout)["Principals"]}
    assert set(rows) >= {"bob", "carol"}
    assert len(rows) == 3  # and the admin
    bob = rows["bob"]
    assert bob["Arn"] == added["Arn"] and bob["Uid"] == 5001
    assert bob["AccessKeyIds"] == [added["AccessKeyId"]]
    assert bob["HasIdentityPolicy"] is True
    assert isinstance(bob["CreationDate"], float)
    assert rows["carol"]["Uid"] is None and rows["carol"]["HasIdentityPolicy"] is False
    (admin_row,) = [p for p in rows.values() if p["Uid"] == os.getuid()]
    assert admin_row["HasIdentityPolicy"] is True
    assert "SecretAccessKey" not in result.stdout
    table = run("principal", "list", "--data-dir", data_dir)
    assert table.exit_code == 0
    for name in ("bob", "carol", "5001"):
        assert name in table.output


def test_principal_tags(data_dir: Path, run: Runner) -> None:
    def tags() -> dict[str, str]:
        out = run("principal", "list", "--json", "--data-dir", data_dir).stdout
        (bob,) = [p for p in json.loads(out)["Principals"] if p["Name"] == "bob"]
        return dict(bob["Tags"])

    added = run("principal", "add", "bob", "--tag", "team=red", "--data-dir", data_dir)
    assert added.exit_code == 0, added.output
    assert tags() == {"team": "red"}
    # Keys fold case: Team replaces team.
    assert (
        run("principal", "tag", "bob", "Team=blue", "cost=7", "--data-dir", data_dir).exit_code == 0
    )
    assert tags() == {"Team": "blue", "cost": "7"}
    assert run("principal", "untag", "bob", "TEAM", "absent", "--data-dir", data_dir).exit_code == 0
    assert tags() == {"cost": "7"}
    bad = run("principal", "tag", "bob", "aws:x=1", "--data-dir", data_dir)
    assert bad.exit_code != 0 and bad.stderr.startswith("TagException:")
    assert tags() == {"cost": "7"}
    missing = run("principal", "tag", "nobody", "a=1", "--data-dir", data_dir)
    assert missing.exit_code != 0 and "nobody" in missing.output


def test_principal_remove(data_dir: Path, run: Runner) -> None:
    run("principal", "add", "bob", "--data-dir", data_dir)
    result = run("principal", "remove", "bob", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert f"arn:aws:iam::{ACCOUNT}:user/bob" in result.output
    names = [
        p["Name"]
        for p in json.loads(run("principal", "list", "--json", "--data-dir", data_dir).stdout)[
            "Principals"
        ]
    ]
    assert "bob" not in names
    missing = run("principal", "remove", "bob", "--data-dir", data_dir)
    assert missing.exit_code != 0
    assert missing.stderr.startswith("NotFoundException:")


def test_principal_changes_are_in_the_audit_trail(data_dir: Path, run: Runner) -> None:
    added = run("principal", "add", "carol", "--json", "--data-dir", data_dir)
    assert added.exit_code == 0, added.output
    secret = json.loads(added.stdout)["SecretAccessKey"]
    assert run("principal", "tag", "carol", "team=risk", "--data-dir", data_dir).exit_code == 0
    assert run("principal", "remove", "carol", "--data-dir", data_dir).exit_code == 0
    assert run("principal", "remove", "carol", "--data-dir", data_dir).exit_code != 0
    found = run("audit", "query", "--json", "--data-dir", data_dir)
    assert found.exit_code == 0, found.output
    lines = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    events = [e for e in lines if e["eventSource"] == "iam.amazonaws.com"]
    assert [(e["eventName"], e.get("errorCode")) for e in events] == [
        ("CreateUser", None),
        ("TagUser", None),
        ("DeleteUser", None),
        ("DeleteUser", "NotFoundException"),
    ]
    assert all(e["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:root" for e in events)
    trail = "".join(p.read_text() for p in (data_dir / "audit").glob("segment-*.jsonl"))
    assert secret not in trail
    assert run("audit", "verify", "--data-dir", data_dir).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["principal", "add", "bob"],
        ["principal", "list"],
        ["principal", "list", "--json"],
        ["principal", "remove", "bob"],
        ["audit", "verify"],
        ["audit", "query"],
        ["usage", "--json"],
    ],
)
def test_commands_on_a_missing_data_dir_fail_without_creating_it(
    tmp_path: Path, run: Runner, args: list[str]
) -> None:
    path = tmp_path / "missing"
    result = run(*args, "--data-dir", path)
    assert result.exit_code != 0
    assert "kms init" in result.output
    assert not path.exists()


def test_data_dir_from_the_environment(
    tmp_path: Path, data_dir: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMS_DATA_DIR", str(data_dir))
    result = run("principal", "add", "erin", "--json")
    assert result.exit_code == 0, result.output
    names = [p["Name"] for p in json.loads(run("principal", "list", "--json").stdout)["Principals"]]
    assert "erin" in names


# --- the installed console script -------------------------------------------------------------


def test_kms_console_script(tmp_path: Path) -> None:
    script = shutil.which("kms") or str(Path(sys.executable).parent / "kms")
    env = {k: v for k, v in os.environ.items() if k not in ("KMS_DATA_DIR", "KMS_PASSPHRASE")}
    path = tmp_path / "kms"

    def kms(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args, "--data-dir", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    init = kms("init", "--json")
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["DataDir"] == str(path)
    assert mode(path) == 0o700 and mode(path / "credentials") == 0o600
    added = kms("principal", "add", "bob", "--uid", "5002", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["Arn"].endswith(":user/bob")
    dup = kms("principal", "add", "bob")
    assert dup.returncode == 1
    assert dup.stderr.startswith("AlreadyExistsException:")
    assert "Traceback" not in dup.stderr
    listed = kms("principal", "list", "--json")
    assert listed.returncode == 0
    assert {p["Name"] for p in json.loads(listed.stdout)["Principals"]} >= {"bob"}
