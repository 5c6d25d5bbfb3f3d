"""``kms policy get|put`` and ``kms grant create|list|revoke|retire``, in-process.

Helpers (the CliRunner wrapper, botocore shape checks) are in test_cli_keys.py.
The CLI acts as the admin user ``init`` maps to this process's uid; a second
user, bob, is made with ``kms principal add`` and acts through ``LocalKMS`` to
show that what the CLI changed really grants or denies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli_keys import ACCOUNT, Kms, arn, init_data_dir, rows

from kmscore.client import LocalKMS
from kmscore.errors import AccessDeniedException

ADMIN = f"arn:aws:iam::{ACCOUNT}:user/root"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


@pytest.fixture
def no_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    nowhere = tmp_path / "no-such-data-dir"
    monkeypatch.setenv("KMS_DATA_DIR", str(nowhere))
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)
    return nowhere


@pytest.fixture
def kms(tmp_path: Path, no_default_data_dir: Path) -> Kms:
    kms = Kms(init_data_dir(tmp_path / "kms"))
    kms.ok("principal", "add", "bob")
    return kms


@pytest.fixture
def key_id(kms: Kms) -> str:
    key = kms.new_key()
    kms.ok("alias", "create", "alias/shared", key)
    return key


def as_bob(kms: Kms) -> LocalKMS:
    return LocalKMS(kms.data_dir, principal=BOB)


def policy_file(tmp_path: Path, document: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def allow(principal: str, action: str = "kms:*") -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": action,
                "Resource": "*",
            }
        ],
    }


# --- policy get|put ------------------------------------------------------------------------


def test_policy_get(kms: Kms, key_id: str) -> None:
    got = kms.json("GetKeyPolicy", "policy", "get", key_id)
    assert got["PolicyName"] == "default"
    document = json.loads(got["Policy"])
    assert document["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # For people: the document itself, indented.
    shown = kms.ok("policy", "get", arn(key_id)).stdout
    assert json.loads(shown) == document and shown.startswith("{\n  ")


def test_policy_put(kms: Kms, key_id: str, tmp_path: Path) -> None:
    account = allow(f"arn:aws:iam::{ACCOUNT}:root")
    bob_encrypts = allow(BOB, "kms:Encrypt")
    both = {"Version": "2012-10-17", "Statement": account["Statement"] + bob_encrypts["Statement"]}
    path = policy_file(tmp_path, both)
    with as_bob(kms) as bob, pytest.raises(AccessDeniedException):
        bob.encrypt(KeyId=key_id, Plaintext=b"x")
    assert kms.json("PutKeyPolicy", "policy", "put", key_id, path) == {}
    assert json.loads(kms.json("GetKeyPolicy", "policy", "get", key_id)["Policy"]) == both
    with as_bob(kms) as bob:
        bob.encrypt(KeyId=key_id, Plaintext=b"x")  # the policy put took effect
    assert rows(kms.ok("policy", "put", arn(key_id), path).stdout) == {"Updated": arn(key_id)}


def test_policy_put_lockout_check_and_its_bypass(kms: Kms, key_id: str, tmp_path: Path) -> None:
    only_bob = policy_file(tmp_path, allow(BOB))
    message = kms.fails("MalformedPolicyDocumentException", "policy", "put", key_id, only_bob)
    assert "policy" in message
    assert "root" in kms.json("GetKeyPolicy", "policy", "get", key_id)["Policy"]  # unchanged
    # Bypassed, the admin locks itself out, as AWS would let it.
    shown = kms.ok("policy", "put", key_id, only_bob, "--bypass-lockout-check").stdout
    assert rows(shown) == {"Updated": key_id}
    assert "DescribeKey" in kms.fails("AccessDeniedException", "describe-key", key_id)
    kms.fails("AccessDeniedException", "policy", "get", key_id)
    with as_bob(kms) as bob:
        assert json.loads(bob.get_key_policy(KeyId=key_id)["Policy"]) == allow(BOB)


def test_policy_failures(kms: Kms, key_id: str, tmp_path: Path) -> None:
    for bad in (
        "{not json",
        "[]",
        json.dumps({"Version": "2012-10-17"}),
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}),
    ):
        path = policy_file(tmp_path, bad)
        kms.fails("MalformedPolicyDocumentException", "policy", "put", key_id, path)
    good = policy_file(tmp_path, allow(f"arn:aws:iam::{ACCOUNT}:root"), "good.json")
    for command in (("policy", "get"), ("policy", "put")):
        extra = (good,) if command[1] == "put" else ()
        kms.fails("NotFoundException", *command, "no-such-key", *extra)
        kms.fails("NotFoundException", *command, "alias/shared", *extra)  # key id or ARN only
    kms.usage_error("policy", "put", key_id, tmp_path / "missing.json", says="POLICY_FILE")
    kms.usage_error("policy", "put", key_id)
    assert json.loads(kms.json("GetKeyPolicy", "policy", "get", key_id)["Policy"])["Id"]


# --- grant create|list|revoke|retire -------------------------------------------------------


def test_grant_create_and_list(kms: Kms, key_id: str) -> None:
    made = kms.json(
        "CreateGrant", "grant", "create", arn(key_id), "--grantee", BOB,
        "--operations", "Encrypt, Decrypt", "--name", "app", "--retiring", ADMIN,
        "--context-subset", "tenant=t-1", "--context-subset", "env=prod",
    )  # fmt: skip
    assert len(made["GrantId"]) == 64 and made["GrantToken"]
    shown = rows(
        kms.ok(
            "grant", "create", key_id, "--grantee", BOB, "--operations", "GenerateDataKey",
            "--context-equals", "tenant=t-2",
        ).stdout
    )  # fmt: skip
    assert list(shown) == ["GrantToken", "GrantId"]

    listed = kms.json("ListGrants", "grant", "list", key_id)
    assert listed["Truncated"] is False
    by_id = {g["GrantId"]: g for g in listed["Grants"]}
    assert set(by_id) == {made["GrantId"], shown["GrantId"]}
    first = by_id[made["GrantId"]]
    assert first["KeyId"] == arn(key_id) and first["Name"] == "app"
    assert first["GranteePrincipal"] == BOB and first["RetiringPrincipal"] == ADMIN
    assert first["Operations"] == ["Encrypt", "Decrypt"]
    assert first["Constraints"] == {"EncryptionContextSubset": {"tenant": "t-1", "env": "prod"}}
    second = by_id[shown["GrantId"]]
    assert second["Constraints"] == {"EncryptionContextEquals": {"tenant": "t-2"}}
    # The same name again is the same grant (CreateGrant is idempotent by name).
    again = kms.json(
        "CreateGrant", "grant", "create", key_id, "--grantee", BOB,
        "--operations", "Encrypt,Decrypt", "--name", "app", "--retiring", ADMIN,
        "--context-subset", "tenant=t-1", "--context-subset", "env=prod",
    )  # fmt: skip
    assert again["GrantId"] == made["GrantId"]

    table = kms.ok("grant", "list", key_id).stdout
    line = next(x for x in table.splitlines() if made["GrantId"] in x)  # whole, not elided
    assert "app" in line and BOB in line and "Encrypt,Decrypt" in line
    assert shown["GrantId"] in table


def test_a_grant_lets_the_grantee_in_until_revoked(kms: Kms, key_id: str) -> None:
    with as_bob(kms) as bob, pytest.raises(AccessDeniedException):
        bob.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"t": "1"})
    grant = kms.json(
        "CreateGrant", "grant", "create", key_id, "--grantee", BOB, "--operations", "Encrypt",
        "--context-subset", "t=1",
    )  # fmt: skip
    with as_bob(kms) as bob:
        bob.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"t": "1"})
        with pytest.raises(AccessDeniedException):  # the constraint holds
            bob.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"t": "2"})
    assert kms.json("RevokeGrant", "grant", "revoke", key_id, grant["GrantId"]) == {}
    assert kms.json("ListGrants", "grant", "list", key_id)["Grants"] == []
    with as_bob(kms) as bob, pytest.raises(AccessDeniedException):
        bob.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"t": "1"})
    # For people.
    grant = kms.json(
        "CreateGrant", "grant", "create", key_id, "--grantee", BOB, "--operations", "Decrypt"
    )
    shown = rows(kms.ok("grant", "revoke", arn(key_id), grant["GrantId"]).stdout)
    assert shown == {"Revoked": grant["GrantId"]}


def test_grant_retire(kms: Kms, key_id: str) -> None:
    create = ("grant", "create", key_id, "--grantee", BOB, "--operations", "Encrypt")

    def new_grant() -> dict[str, str]:
        return dict(kms.json("CreateGrant", *create, "--retiring", ADMIN))

    by_token, by_id, for_people = new_grant(), new_grant(), new_grant()
    assert kms.json("RetireGrant", "grant", "retire", "--token", by_token["GrantToken"]) == {}
    retired = kms.json(
        "RetireGrant", "grant", "retire", "--key", arn(key_id), "--grant-id", by_id["GrantId"]
    )
    assert retired == {}
    shown = rows(kms.ok("grant", "retire", "--token", for_people["GrantToken"]).stdout)
    assert shown == {"Retired": "(by token)"}
    assert kms.json("ListGrants", "grant", "list", key_id)["Grants"] == []
    # Retiring again: the grant is gone.
    kms.fails("InvalidGrantTokenException", "grant", "retire", "--token", by_token["GrantToken"])


def test_grant_failures(kms: Kms, key_id: str) -> None:
    create = ("grant", "create", key_id, "--grantee", BOB)
    assert "operations" in kms.fails("ValidationException", *create, "--operations", "Bogus")
    kms.fails("ValidationException", *create, "--operations", ",")
    kms.fails("NotFoundException", "grant", "create", "alias/shared", "--grantee", BOB,
              "--operations", "Encrypt")  # fmt: skip
    kms.fails("NotFoundException", "grant", "create", "no-such-key", "--grantee", BOB,
              "--operations", "Encrypt")  # fmt: skip
    kms.usage_error(*create, "--operations", "Encrypt", "--context-subset", "x", says="subset")
    kms.usage_error(*create, "--operations", "Encrypt", "--context-equals", "=", says="equals")
    kms.usage_error("grant", "create", key_id, "--operations", "Encrypt", says="--grantee")
    kms.usage_error(*create, says="--operations")

    kms.fails("NotFoundException", "grant", "list", "no-such-key")
    kms.fails("NotFoundException", "grant", "revoke", "no-such-key", "0" * 64)
    kms.fails("InvalidGrantIdException", "grant", "revoke", key_id, "0" * 64)
    kms.usage_error("grant", "revoke", key_id)

    assert "GrantToken" in kms.fails("ValidationException", "grant", "retire")
    kms.fails("ValidationException", "grant", "retire", "--grant-id", "0" * 64)
    kms.fails("InvalidGrantTokenException", "grant", "retire", "--token", "not-a-token")
    kms.fails("InvalidGrantIdException", "grant", "retire", "--key", key_id, "--grant-id", "0" * 64)
    assert kms.json("ListGrants", "grant", "list", key_id)["Grants"] == []
