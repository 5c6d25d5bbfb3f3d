"""``kms seed FILE.yaml``: applied twice, and bad files that change nothing."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kmscore.client import LocalKMS
from kmscore.frontends.cli.ops_commands import seed as seed_command
from kmscore.frontends.ops.seed import SeedError, check_seed
from kmscore.service import open_service

KEY_A = "11111111-2222-3333-4444-555555555555"
KEY_B = "mrk-0123456789abcdef0123456789abcdef"
MATERIAL = bytes(range(32))
MISSING = "99999999-2222-3333-4444-555555555555"
GRANTEE = "arn:aws:iam::111122223333:user/app"


def seed_data() -> dict[str, Any]:
    return {
        "keys": [
            {
                "id": KEY_A,
                "description": "invoices",
                "material": base64.b64encode(MATERIAL).decode(),
                "tags": {"team": "billing"},
                "rotation": True,
                "aliases": ["alias/invoices"],
            },
            {"id": KEY_B, "description": "reports", "enabled": False},
        ],
        "aliases": [{"name": "alias/reports", "key": KEY_B}],
        "grants": [
            {"key": KEY_A, "name": "app-decrypt", "grantee": GRANTEE, "operations": ["Decrypt"]}
        ],
    }


def write(tmp_path: Path, data: Any, name: str = "seed.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_seed(path: Path, data_dir: Path) -> Any:
    return CliRunner().invoke(seed_command, [str(path), "--data-dir", str(data_dir)])


def snapshot(data_dir: Path) -> dict[str, Any]:
    """What a client sees of the store."""
    with LocalKMS(data_dir, audit=False) as kms:
        keys = sorted(k["KeyId"] for k in kms.list_keys()["Keys"])
        return {
            "keys": {k: kms.describe_key(KeyId=k)["KeyMetadata"] for k in keys},
            "aliases": sorted(
                (a["AliasName"], a.get("TargetKeyId")) for a in kms.list_aliases()["Aliases"]
            ),
            "tags": {k: kms.list_resource_tags(KeyId=k)["Tags"] for k in keys},
            "grants": {k: len(kms.list_grants(KeyId=k)["Grants"]) for k in keys},
        }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    open_service(path, audit=True).close()
    return path


def test_seed_twice_is_idempotent(tmp_path: Path, data_dir: Path) -> None:
    path = write(tmp_path, seed_data())
    first = run_seed(path, data_dir)
    assert first.exit_code == 0, first.output
    assert f"created {KEY_A}" in first.output
    state = snapshot(data_dir)
    assert set(state["keys"]) == {KEY_A, KEY_B}
    assert state["keys"][KEY_A]["Description"] == "invoices"
    assert state["keys"][KEY_B]["KeyState"] == "Disabled"
    assert ("alias/invoices", KEY_A) in state["aliases"]
    assert ("alias/reports", KEY_B) in state["aliases"]
    assert state["tags"][KEY_A] == [{"TagKey": "team", "TagValue": "billing"}]
    assert state["grants"][KEY_A] == 1
    second = run_seed(path, data_dir)
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output
    assert snapshot(data_dir) == state


def test_fixed_material_makes_the_same_ciphertexts_decrypt(tmp_path: Path, data_dir: Path) -> None:
    """Two data dirs seeded with the same material open each other's blobs."""
    other = tmp_path / "other"
    open_service(other, audit=False).close()
    path = write(tmp_path, seed_data())
    assert run_seed(path, data_dir).exit_code == 0
    assert run_seed(path, other).exit_code == 0
    with LocalKMS(data_dir, audit=False) as kms:
        blob = kms.encrypt(KeyId="alias/invoices", Plaintext=b"fixture")["CiphertextBlob"]
    with LocalKMS(other, audit=False) as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"fixture"
        assert kms.get_key_rotation_status(KeyId=KEY_A)["KeyRotationEnabled"] is True


def test_other_material_under_a_seeded_id_is_refused(tmp_path: Path, data_dir: Path) -> None:
    assert run_seed(write(tmp_path, seed_data()), data_dir).exit_code == 0
    changed = seed_data()
    changed["keys"][0]["material"] = base64.b64encode(b"\x07" * 32).decode()
    changed["keys"][0]["description"] = "would change"
    before = snapshot(data_dir)
    result = run_seed(write(tmp_path, changed, "changed.yaml"), data_dir)
    assert result.exit_code == 1
    assert f"keys[0] (id {KEY_A}): the store has this key id with other material" in result.output
    assert snapshot(data_dir) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda d: d["keys"][1].update(id="not-a-key-id"),
            "keys[1]: 'not-a-key-id' is not a key id",
        ),
        (
            lambda d: d["keys"][0].update(material="AAAA"),
            f"keys[0] (id {KEY_A}): material must be 32",
        ),
        (lambda d: d["keys"][1].update(colour="red"), "keys[1]: unknown field 'colour'"),
        (
            lambda d: d["aliases"].append({"name": "alias/aws/x", "key": KEY_B}),
            "aliases[1] (alias/aws/x)",
        ),
        (lambda d: d["aliases"].append({"name": "alias/invoices", "key": KEY_B}), "given twice"),
        (
            lambda d: d["keys"][1].update(policy={"Version": "2012-10-17"}),
            f"keys[1] (id {KEY_B}): policy",
        ),
        (lambda d: d["grants"][0].update(operations=[]), "grants[0] (app-decrypt): operations"),
        # Found only when applying: the last entry, after the keys were made.
        (
            lambda d: d["grants"][0].update(operations=["Fly"]),
            "grants[0] (app-decrypt): CreateGrant",
        ),
        (
            lambda d: d["aliases"].append({"name": "alias/x", "key": MISSING}),
            "aliases[1] (alias/x): key 99999999",
        ),
    ],
)
def test_a_bad_seed_changes_nothing_and_names_the_entry(
    tmp_path: Path, data_dir: Path, change: Any, named: str
) -> None:
    data = seed_data()
    change(data)
    before = snapshot(data_dir)
    result = run_seed(write(tmp_path, data), data_dir)
    assert result.exit_code == 1, result.output
    assert named in result.output
    assert snapshot(data_dir) == before
    # The store is as usable as before: the good file loads.
    assert run_seed(write(tmp_path, seed_data(), "good.yaml"), data_dir).exit_code == 0


def test_not_yaml(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("keys: [\n")
    result = run_seed(path, data_dir)
    assert result.exit_code == 1 and "not valid YAML" in result.output


def test_kms_seed_is_a_command_of_kms(tmp_path: Path, data_dir: Path) -> None:
    kms = shutil.which("kms")
    if kms is None:
        pytest.skip("the kms console script is not installed")
    path = write(tmp_path, seed_data())
    done = subprocess.run([kms, "seed", str(path), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"created {KEY_B}" in done.stdout


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "keys",
                        "aliases",
                        "grants",
                        "id",
                        "name",
                        "key",
                        "material",
                        "operations",
                        "tags",
                        "policy",
                        "grantee",
                        "x",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_the_checker_fails_only_with_a_seed_error(data: Any) -> None:
    try:
        check_seed(data)
    except SeedError as exc:
        assert str(exc)


def test_policy_text_is_taken_as_json(tmp_path: Path, data_dir: Path) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                       "Action": "kms:*", "Resource": "*"}],
    }  # fmt: skip
    data = {"keys": [{"id": KEY_A, "policy": json.dumps(policy)}]}
    assert run_seed(write(tmp_path, data), data_dir).exit_code == 0
    with LocalKMS(data_dir, audit=False) as kms:
        stored = kms.get_key_policy(KeyId=KEY_A, PolicyName="default")["Policy"]
    assert json.loads(stored) == policy
    again = run_seed(write(tmp_path, data, "again.yaml"), data_dir)
    assert "nothing changed" in again.output
