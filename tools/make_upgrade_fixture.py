"""Make the data dir fixture of tests/test_ops_upgrade.py with an earlier release's code.

Usage (from the repository root; COMMIT is the previous release, see the test)::

    git worktree add --detach /tmp/kms-prev COMMIT
    (cd /tmp/kms-prev && python setup.py build_ext --inplace)
    PYTHONPATH=/tmp/kms-prev python tools/make_upgrade_fixture.py tests/data/upgrade-prev

It runs against whichever kmscore ``PYTHONPATH`` imports: that commit's. It
makes a data dir with symmetric keys (one rotated), an HMAC key, aliases,
tags, a grant and an audit trail, and writes ``expected.json`` beside it with
the ciphertexts, MACs and what they must open to, for the test to check with
today's code. The fixture holds only throwaway test keys.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import kmscore
from kmscore.client import LocalKMS


def main(out: Path) -> None:
    """Write the fixture to ``out`` (replaced when it exists)."""
    if out.exists():
        shutil.rmtree(out)
    data_dir = out / "data"
    expected: dict[str, object] = {"ciphertexts": [], "macs": []}
    with LocalKMS(data_dir, audit=True) as kms:
        invoices = kms.create_key(Description="invoices")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/invoices", TargetKeyId=invoices)
        kms.tag_resource(KeyId=invoices, Tags=[{"TagKey": "team", "TagValue": "billing"}])
        kms.enable_key_rotation(KeyId=invoices)
        rotated = kms.create_key(Description="rotated")["KeyMetadata"]["KeyId"]
        before = kms.encrypt(KeyId=rotated, Plaintext=b"before rotation")["CiphertextBlob"]
        kms.rotate_key_on_demand(KeyId=rotated)
        after = kms.encrypt(KeyId=rotated, Plaintext=b"after rotation")["CiphertextBlob"]
        mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
        mac_id = mac_key["KeyMetadata"]["KeyId"]
        mac = kms.generate_mac(KeyId=mac_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        kms.create_grant(
            KeyId=invoices,
            GranteePrincipal="arn:aws:iam::111122223333:user/app",
            Operations=["Decrypt"],
            Name="app-decrypt",
        )
        sealed = kms.encrypt(
            KeyId="alias/invoices", Plaintext=b"invoice 42", EncryptionContext={"doc": "42"}
        )["CiphertextBlob"]
        expected["keys"] = {"invoices": invoices, "rotated": rotated, "mac": mac_id}
        expected["ciphertexts"] = [
            {"blob": base64.b64encode(b).decode(), "plaintext": p, "context": c}
            for b, p, c in (
                (before, "before rotation", {}),
                (after, "after rotation", {}),
                (sealed, "invoice 42", {"doc": "42"}),
            )
        ]
        expected["macs"] = [{"key": mac_id, "message": "m", "mac": base64.b64encode(mac).decode()}]
    commit = subprocess.run(  # noqa: S603 - git with fixed arguments
        ["git", "-C", str(Path(kmscore.__file__).parent), "rev-parse", "HEAD"],  # noqa: S607
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    expected["made_by"] = commit
    for path in data_dir.rglob("*"):
        if path.name in ("kms.sock", "CHAINER"):
            path.unlink()
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
