"""Bring your own key through boto3 over HTTP, wrapped by cryptography and by openssl.

The whole flow a customer follows with AWS's developer guide: CreateKey with
Origin=EXTERNAL, GetParametersForImport, wrap the material (here with the
``cryptography`` library, and with the openssl CLI commands of the guide),
ImportKeyMaterial, use the key; and the refusals, with AWS's error codes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from import_helpers import wrap, wrap_with_openssl
from test_awsjson_support import Endpoint, running_endpoint

ALGORITHMS = (
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path_factory.mktemp("awsjson-import") / "kms") as ep:
        yield ep


@pytest.fixture(scope="module")
def kms(endpoint: Endpoint) -> Any:
    return endpoint.client()


def code_of(fn: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    return str(info.value.response["Error"]["Code"])


def _flow(kms: Any, algorithm: str, wrapper: Callable[[bytes, str, bytes], bytes]) -> None:
    key = kms.create_key(Origin="EXTERNAL", Description="byok over http")["KeyMetadata"]
    assert key["KeyState"] == "PendingImport" and key["Origin"] == "EXTERNAL"
    key_id = key["KeyId"]
    params = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_3072"
    )
    assert params["KeyId"] == key["Arn"]
    assert isinstance(params["ParametersValidTo"], datetime)
    material = os.urandom(32)
    valid_to = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    out = kms.import_key_material(
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrapper(params["PublicKey"], algorithm, material),
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=valid_to,
    )
    assert len(out["KeyMaterialId"]) == 64
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Enabled"
    assert md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert md["ValidTo"] == valid_to
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"over http")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over http"
    usage = kms.get_key_last_usage(KeyId=key_id)
    assert usage["KeyLastUsage"]["Operation"] == "Decrypt"
    # Deleted, then the same material again with a new token.
    kms.delete_imported_key_material(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    again = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048"
    )
    kms.import_key_material(
        KeyId=key_id,
        ImportToken=again["ImportToken"],
        EncryptedKeyMaterial=wrapper(again["PublicKey"], algorithm, material),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    )
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over http"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flow_wrapped_by_cryptography(kms: Any, algorithm: str) -> None:
    _flow(kms, algorithm, wrap)


@pytest.mark.skipif(
    shutil.which("openssl") is None and not os.environ.get("CI"),
    reason="needs the openssl CLI (.ci/run installs it)",
)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flow_wrapped_by_openssl(kms: Any, algorithm: str, tmp_path: Path) -> None:
    _flow(kms, algorithm, lambda pub, alg, m: wrap_with_openssl(pub, alg, m, tmp_path / "w"))


def test_refusals_over_http(kms: Any) -> None:
    key_id = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    other = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    p = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    q = kms.get_parameters_for_import(
        KeyId=other, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    never = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    good = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    assert (
        code_of(
            kms.import_key_material,
            KeyId=key_id,
            ImportToken=q["ImportToken"],
            EncryptedKeyMaterial=good,
            **never,
        )
        == "InvalidImportTokenException"
    )
    assert (
        code_of(
            kms.import_key_material,
            KeyId=key_id,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(16)),
            **never,
        )
        == "IncorrectKeyMaterialException"
    )
    assert (
        code_of(
            kms.import_key_material,
            KeyId=key_id,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=os.urandom(256),
            **never,
        )
        == "InvalidCiphertextException"
    )
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    kms.import_key_material(
        KeyId=key_id, ImportToken=p["ImportToken"], EncryptedKeyMaterial=good, **never
    )
    assert (
        code_of(
            kms.import_key_material,
            KeyId=key_id,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=good,
            **never,
        )
        == "InvalidImportTokenException"
    )
    aws_key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert (
        code_of(
            kms.get_parameters_for_import,
            KeyId=aws_key,
            WrappingAlgorithm="RSAES_OAEP_SHA_256",
            WrappingKeySpec="RSA_2048",
        )
        == "UnsupportedOperationException"
    )
