"""``kms import``: the whole bring-your-own-key flow for a person."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_cli_keys import Kms, rows
from test_cli_keys import kms as kms
from test_cli_keys import no_default_data_dir as no_default_data_dir


def test_import_symmetric_material(kms: Kms, tmp_path: Path) -> None:
    key = kms.new_key("--origin", "EXTERNAL")
    assert rows(kms.ok("describe-key", key).stdout)["KeyState"] == "PendingImport"
    material = tmp_path / "material.bin"
    material.write_bytes(os.urandom(32))
    out = rows(kms.ok("import", key, material, "--wrapping-key-spec", "RSA_2048").stdout)
    assert out["KeyState"] == "Enabled" and len(out["KeyMaterialId"]) == 64
    assert material.read_bytes().hex() not in out.values()
    kms.ok("delete-imported-material", key)
    assert rows(kms.ok("describe-key", key).stdout)["KeyState"] == "PendingImport"
    again = kms.json(
        "ImportKeyMaterial",
        "import",
        key,
        material,
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--wrapping-key-spec",
        "RSA_2048",
        "--valid-days",
        "30",
    )
    assert again["KeyMaterialId"] == out["KeyMaterialId"]


def test_import_refusals(kms: Kms, tmp_path: Path) -> None:
    key = kms.new_key("--origin", "EXTERNAL")
    short = tmp_path / "short.bin"
    short.write_bytes(os.urandom(16))
    kms.fails(
        "IncorrectKeyMaterialException", "import", key, short, "--wrapping-key-spec", "RSA_2048"
    )
    aws_key = kms.new_key()
    good = tmp_path / "good.bin"
    good.write_bytes(os.urandom(32))
    kms.fails("UnsupportedOperationException", "import", aws_key, good)


@pytest.mark.parametrize("encoding", ["DER", "PEM"])
def test_import_an_ecc_private_key(kms: Kms, tmp_path: Path, encoding: str) -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        private.private_bytes(
            getattr(serialization.Encoding, encoding),
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = kms.new_key(
        "--origin", "EXTERNAL", "--key-spec", "ECC_NIST_P384", "--key-usage", "SIGN_VERIFY"
    )
    out = rows(kms.ok("import", key, path, "--wrapping-key-spec", "RSA_2048").stdout)
    assert out["KeyState"] == "Enabled"
