"""The key spec table against botocore's KMS model and AWS's documented rules."""

from __future__ import annotations

import enum

import botocore.session
import pytest

from kmscore.errors import (
    InvalidKeyUsageException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model import keyspecs as ks
from kmscore.model.keyspecs import KeySpec, KeyUsage, SigningAlgorithm


@pytest.fixture(scope="module")
def kms_model():
    return botocore.session.get_session().get_service_model("kms")


def model_enum(model, shape: str) -> set[str]:
    return set(model.shape_for(shape).enum)


@pytest.mark.parametrize(
    ("ours", "shape"),
    [
        (KeySpec, "KeySpec"),
        (KeyUsage, "KeyUsageType"),
        (ks.EncryptionAlgorithm, "EncryptionAlgorithmSpec"),
        (SigningAlgorithm, "SigningAlgorithmSpec"),
        (ks.MacAlgorithm, "MacAlgorithmSpec"),
        (ks.KeyAgreementAlgorithm, "KeyAgreementAlgorithmSpec"),
        (ks.MessageType, "MessageType"),
    ],
)
def test_enums_are_exactly_the_aws_model_enums(kms_model, ours: type[enum.StrEnum], shape: str):
    assert {m.value for m in ours} == model_enum(kms_model, shape)


def test_data_key_pair_specs_are_the_model_enum(kms_model):
    assert {str(s) for s in ks.DATA_KEY_PAIR_SPECS} == model_enum(kms_model, "DataKeyPairSpec")


def test_every_name_in_the_table_exists_in_the_model(kms_model):
    enums = {
        "KeyUsageType": model_enum(kms_model, "KeyUsageType"),
        "EncryptionAlgorithmSpec": model_enum(kms_model, "EncryptionAlgorithmSpec"),
        "SigningAlgorithmSpec": model_enum(kms_model, "SigningAlgorithmSpec"),
        "MacAlgorithmSpec": model_enum(kms_model, "MacAlgorithmSpec"),
        "KeyAgreementAlgorithmSpec": model_enum(kms_model, "KeyAgreementAlgorithmSpec"),
    }
    assert set(ks.KEY_SPECS) == model_enum(kms_model, "KeySpec")
    for spec, info in ks.KEY_SPECS.items():
        assert info.key_spec == spec
        for usage, algs in info.algorithms.items():
            assert usage in enums["KeyUsageType"]
            assert algs.key_usage == usage
            assert set(algs.encryption_algorithms) <= enums["EncryptionAlgorithmSpec"]
            assert set(algs.signing_algorithms) <= enums["SigningAlgorithmSpec"]
            assert set(algs.mac_algorithms) <= enums["MacAlgorithmSpec"]
            assert set(algs.key_agreement_algorithms) <= enums["KeyAgreementAlgorithmSpec"]
            # DescribeKey returns exactly one algorithm list per key.
            assert len(algs.describe_key_fields()) == 1


def test_describe_key_field_names_are_key_metadata_members(kms_model):
    members = set(kms_model.shape_for("KeyMetadata").members)
    for info in ks.KEY_SPECS.values():
        for algs in info.algorithms.values():
            assert set(algs.describe_key_fields()) <= members


RSA = (KeySpec.RSA_2048, KeySpec.RSA_3072, KeySpec.RSA_4096)
NIST = (KeySpec.ECC_NIST_P256, KeySpec.ECC_NIST_P384, KeySpec.ECC_NIST_P521)
HMAC = (KeySpec.HMAC_224, KeySpec.HMAC_256, KeySpec.HMAC_384, KeySpec.HMAC_512)
MLDSA = (KeySpec.ML_DSA_44, KeySpec.ML_DSA_65, KeySpec.ML_DSA_87)


def test_key_usages_as_create_key_documents_them():
    assert ks.spec_info("SYMMETRIC_DEFAULT").key_usages == (KeyUsage.ENCRYPT_DECRYPT,)
    for spec in RSA:
        assert ks.spec_info(spec).key_usages == (KeyUsage.ENCRYPT_DECRYPT, KeyUsage.SIGN_VERIFY)
    for spec in NIST:
        assert ks.spec_info(spec).key_usages == (KeyUsage.SIGN_VERIFY, KeyUsage.KEY_AGREEMENT)
    # secp256k1 and Ed25519 sign only.
    assert ks.spec_info("ECC_SECG_P256K1").key_usages == (KeyUsage.SIGN_VERIFY,)
    assert ks.spec_info("ECC_NIST_EDWARDS25519").key_usages == (KeyUsage.SIGN_VERIFY,)
    for spec in HMAC:
        assert ks.spec_info(spec).key_usages == (KeyUsage.GENERATE_VERIFY_MAC,)
    for spec in MLDSA:
        assert ks.spec_info(spec).key_usages == (KeyUsage.SIGN_VERIFY,)
    for spec in ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"):
        assert ks.spec_info(spec).key_usages == (KeyUsage.ENCAPSULATE_DECAPSULATE,)
    assert set(ks.spec_info("SM2").key_usages) == set(KeyUsage) - {
        KeyUsage.GENERATE_VERIFY_MAC,
        KeyUsage.ENCAPSULATE_DECAPSULATE,
    }


def test_algorithm_lists_as_describe_key_returns_them():
    assert ks.algorithms_for("RSA_3072", "SIGN_VERIFY").describe_key_fields() == {
        "SigningAlgorithms": [
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
        ]
    }
    assert ks.algorithms_for("RSA_2048", "ENCRYPT_DECRYPT").describe_key_fields() == {
        "EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    }
    assert ks.algorithms_for("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT").describe_key_fields() == {
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]
    }
    assert ks.algorithms_for("ECC_NIST_P384", "KEY_AGREEMENT").describe_key_fields() == {
        "KeyAgreementAlgorithms": ["ECDH"]
    }
    assert ks.algorithms_for("HMAC_384", "GENERATE_VERIFY_MAC").describe_key_fields() == {
        "MacAlgorithms": ["HMAC_SHA_384"]
    }
    assert ks.algorithms_for("ECC_NIST_EDWARDS25519", "SIGN_VERIFY").describe_key_fields() == {
        "SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"]
    }
    for spec in MLDSA:
        assert ks.spec_info(spec).signing_algorithms == (SigningAlgorithm.ML_DSA_SHAKE_256,)


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", "ECDSA_SHA_384"),
        ("ECC_NIST_P521", "ECDSA_SHA_512"),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
    ],
)
def test_each_curve_has_exactly_its_digest(spec, algorithm):
    assert ks.spec_info(spec).signing_algorithms == (algorithm,)


def test_flags_and_sizes():
    assert not ks.spec_info("SYMMETRIC_DEFAULT").asymmetric
    assert ks.spec_info("SYMMETRIC_DEFAULT").key_bits == 256
    for spec in HMAC:
        info = ks.spec_info(spec)
        assert not info.asymmetric
        assert info.key_bits == int(spec.removeprefix("HMAC_"))
        assert not info.data_key_pair
    for spec in (*RSA, *NIST, *MLDSA, "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519", "SM2"):
        assert ks.spec_info(spec).asymmetric
    for spec in RSA:
        assert ks.spec_info(spec).key_bits == int(spec.removeprefix("RSA_"))
    assert [s for s, i in ks.KEY_SPECS.items() if not i.supported] == [KeySpec.SM2]


def test_lookups_accept_plain_strings_and_enum_members():
    assert ks.spec_info("RSA_2048") is ks.spec_info(KeySpec.RSA_2048)
    assert KeySpec.RSA_2048 == "RSA_2048"
    assert ks.algorithms_for("HMAC_256", "GENERATE_VERIFY_MAC").allows("HMAC_SHA_256")


def test_unknown_names_are_validation_errors_in_aws_words():
    with pytest.raises(ValidationException, match=r"Value 'RSA_1024' at 'keySpec'"):
        ks.spec_info("RSA_1024")
    with pytest.raises(ValidationException, match=r"'keyUsage'.*enum value set"):
        ks.algorithms_for("RSA_2048", "SIGN")
    with pytest.raises(ValidationException, match="enum value set"):
        ks.parse_enum(SigningAlgorithm, "ECDSA_SHA_1", "signingAlgorithm")


@pytest.mark.parametrize(
    ("spec", "usage"),
    [
        ("SYMMETRIC_DEFAULT", "SIGN_VERIFY"),
        ("ECC_NIST_P256", "ENCRYPT_DECRYPT"),
        ("ECC_SECG_P256K1", "KEY_AGREEMENT"),
        ("ECC_NIST_EDWARDS25519", "KEY_AGREEMENT"),
        ("HMAC_256", "ENCRYPT_DECRYPT"),
        ("RSA_2048", "KEY_AGREEMENT"),
        ("ML_DSA_44", "ENCRYPT_DECRYPT"),
    ],
)
def test_incompatible_usage_is_a_validation_error(spec, usage):
    with pytest.raises(ValidationException, match=f"KeyUsage {usage} is not compatible"):
        ks.algorithms_for(spec, usage)


def test_check_algorithm():
    ks.check_algorithm("ECC_NIST_P256", "SIGN_VERIFY", "ECDSA_SHA_256")
    with pytest.raises(InvalidKeyUsageException, match=r"ECDSA_SHA_384.*ECC_NIST_P256"):
        ks.check_algorithm("ECC_NIST_P256", "SIGN_VERIFY", "ECDSA_SHA_384")
    with pytest.raises(InvalidKeyUsageException):
        ks.check_algorithm("RSA_2048", "ENCRYPT_DECRYPT", "RSASSA_PSS_SHA_256")
    with pytest.raises(InvalidKeyUsageException):
        ks.check_algorithm("RSA_2048", "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT")
    with pytest.raises(ValidationException, match="not the name"):
        ks.check_algorithm("RSA_2048", "ENCRYPT_DECRYPT", "RSA_OAEP")


def test_sm2_is_listed_but_unsupported():
    info = ks.spec_info("SM2")
    assert not info.supported
    assert info.encryption_algorithms == ("SM2PKE",)
    assert info.signing_algorithms == ("SM2DSA",)
    assert info.key_agreement_algorithms == ("ECDH",)
    with pytest.raises(UnsupportedOperationException, match="China"):
        ks.require_supported("SM2")
    assert ks.require_supported("RSA_2048").supported


def test_table_is_read_only():
    with pytest.raises(TypeError):
        ks.KEY_SPECS[KeySpec.RSA_2048] = ks.KEY_SPECS[KeySpec.RSA_3072]  # type: ignore[index]
    with pytest.raises(TypeError):
        ks.spec_info("RSA_2048").algorithms[KeyUsage.KEY_AGREEMENT] = None  # type: ignore[index]


def test_rows_are_hashable_values():
    rows = {ks.spec_info(s) for s in KeySpec}
    assert len(rows) == len(KeySpec)
    assert ks.spec_info("HMAC_256") == ks.KEY_SPECS[KeySpec.HMAC_256]
