"""CreateGrant refuses operations the key cannot perform, as AWS KMS does."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmscore import LocalKMS
from kmscore.errors import ValidationException

GRANTEE = "arn:aws:iam::111122223333:user/bob"


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> LocalKMS:
    client = LocalKMS(tmp_path_factory.mktemp("grants") / "kms", audit=False)
    yield client
    client.close()


def _key(kms: LocalKMS, **request: str) -> str:
    return kms.create_key(**request)["KeyMetadata"]["KeyId"]


@pytest.mark.parametrize(
    ("request_", "allowed", "refused"),
    [
        (
            {},
            ["Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyPair", "ReEncryptFrom",
             "DescribeKey", "CreateGrant", "RetireGrant"],
            ["Sign", "Verify", "GetPublicKey", "GenerateMac", "DeriveSharedSecret"],
        ),
        (
            {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"},
            ["GenerateMac", "VerifyMac", "DescribeKey"],
            ["Encrypt", "Decrypt", "Sign", "GetPublicKey"],
        ),
        (
            {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"},
            ["Sign", "Verify", "GetPublicKey", "RetireGrant"],
            ["Encrypt", "GenerateDataKey", "GenerateMac", "DeriveSharedSecret"],
        ),
        (
            {"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"},
            ["Encrypt", "Decrypt", "ReEncryptTo", "GetPublicKey"],
            ["GenerateDataKey", "GenerateDataKeyPair", "Sign"],
        ),
        (
            {"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"},
            ["DeriveSharedSecret", "GetPublicKey", "DescribeKey"],
            ["Sign", "Encrypt", "Decrypt"],
        ),
    ],
)  # fmt: skip
def test_grant_operations_follow_the_key_type(
    kms: LocalKMS, request_: dict[str, str], allowed: list[str], refused: list[str]
) -> None:
    key_id = _key(kms, **request_)
    made = kms.create_grant(KeyId=key_id, GranteePrincipal=GRANTEE, Operations=allowed)
    assert made["GrantId"]
    before = kms.list_grants(KeyId=key_id)["Grants"]
    for op in refused:
        with pytest.raises(ValidationException) as info:
            kms.create_grant(KeyId=key_id, GranteePrincipal=GRANTEE, Operations=["DescribeKey", op])
        assert op in info.value.message and "DescribeKey" not in info.value.message.split("for")[0]
    # A refused grant changes nothing.
    assert kms.list_grants(KeyId=key_id)["Grants"] == before


def test_data_dir_is_untouched_by_a_refused_grant(tmp_path: Path) -> None:
    with LocalKMS(tmp_path / "kms", audit=True) as kms:
        key_id = _key(kms)
        with pytest.raises(ValidationException):
            kms.create_grant(KeyId=key_id, GranteePrincipal=GRANTEE, Operations=["Sign"])
        assert kms.list_grants(KeyId=key_id)["Grants"] == []
