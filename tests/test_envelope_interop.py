"""Interoperability with the AWS Encryption SDK for Python.

Both sides use KMS keys of this service over its HTTP endpoint: the ESDK's
StrictAwsKmsMasterKeyProvider through a botocore session pointed there, and
kmscore's KmsKeyring through a boto3 client. Messages go both ways for both
committing suites, several sizes and frame layouts, multi-key messages, and the
legacy (version 1) suites, which kmscore reads only when allowed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk.identifiers import Algorithm
from cryptography.exceptions import InvalidTag
from test_awsjson_support import Endpoint, running_endpoint

from kmscore import envelope as E


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path_factory.mktemp("envelope-interop") / "kms") as ep:
        yield ep


@pytest.fixture(scope="module")
def setup(endpoint: Endpoint) -> Iterator[dict[str, Any]]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
    os.environ["AWS_ENDPOINT_URL_KMS"] = endpoint.url
    try:
        session = botocore.session.Session()
        session.set_credentials(endpoint.access_key_id, endpoint.secret)
        kms = endpoint.client()
        arns = [kms.create_key(Description=f"interop {i}")["KeyMetadata"]["Arn"] for i in (1, 2)]
        yield {
            "kms": kms,
            "arns": arns,
            "session": session,
            "strict": aws_encryption_sdk.EncryptionSDKClient(
                commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
            ),
            "provider": aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
                key_ids=arns, botocore_session=session
            ),
        }
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_KMS", None)
        os.environ.update(saved)


ESDK_ALG = {
    0x0478: Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    0x0578: Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}
SUITES = [E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384]
SIZES = [0, 1, 4095, 4096, 4097, 1024 * 1024 + 3]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.suite_id:04x}")
@pytest.mark.parametrize("size", SIZES)
def test_kmscore_to_esdk(setup: dict[str, Any], suite: E.AlgorithmSuite, size: int) -> None:
    data = os.urandom(size)
    ring = E.KmsKeyring(setup["kms"], setup["arns"][:1])
    ctx = {"tenant": "t-42", "purpose": "interop"}
    msg = E.encrypt(data, ring, encryption_context=ctx, suite=suite, frame_length=4096)
    plain, header = setup["strict"].decrypt(source=msg, key_provider=setup["provider"])
    assert plain == data
    assert header.algorithm.algorithm_id == suite.suite_id
    assert header.frame_length == 4096
    for k, v in ctx.items():
        assert header.encryption_context[k] == v


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.suite_id:04x}")
@pytest.mark.parametrize("size", SIZES)
def test_esdk_to_kmscore(setup: dict[str, Any], suite: E.AlgorithmSuite, size: int) -> None:
    data = os.urandom(size)
    ctx = {"tenant": "t-42"}
    msg, _ = setup["strict"].encrypt(
        source=data,
        key_provider=setup["provider"],
        encryption_context=ctx,
        algorithm=ESDK_ALG[suite.suite_id],
        frame_length=4096,
    )
    ring = E.KmsKeyring(setup["kms"], setup["arns"][1:])  # the second key alone
    plain, header = E.decrypt(msg, ring, encryption_context=ctx)
    assert plain == data
    assert header.suite is suite
    assert len(header.encrypted_data_keys) == 2


def test_multi_key_both_ways(setup: dict[str, Any]) -> None:
    kms, arns = setup["kms"], setup["arns"]
    msg = E.encrypt(b"two keys", E.KmsKeyring(kms, arns))
    for arn in arns:
        only = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
            key_ids=[arn], botocore_session=setup["session"]
        )
        assert setup["strict"].decrypt(source=msg, key_provider=only)[0] == b"two keys"


def test_esdk_stream_to_kmscore_stream(setup: dict[str, Any]) -> None:
    data = os.urandom(300_000)
    sealed = io.BytesIO()
    with setup["strict"].stream(
        mode="e", source=io.BytesIO(data), key_provider=setup["provider"], frame_length=1024
    ) as enc:
        for chunk in enc:
            sealed.write(chunk)
    out = io.BytesIO()
    ring = E.KmsKeyring(setup["kms"], setup["arns"])
    E.decrypt_stream(io.BytesIO(sealed.getvalue()), out, ring)
    assert out.getvalue() == data


def test_kmscore_stream_to_esdk_stream(setup: dict[str, Any]) -> None:
    data = os.urandom(300_000)
    sealed = io.BytesIO()
    ring = E.KmsKeyring(setup["kms"], setup["arns"])
    E.encrypt_stream(io.BytesIO(data), sealed, ring, frame_length=333)
    sealed.seek(0)
    with setup["strict"].stream(mode="d", source=sealed, key_provider=setup["provider"]) as dec:
        assert b"".join(dec) == data


@pytest.mark.parametrize(
    "alg",
    [
        Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
        Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA256,
        Algorithm.AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256,
        Algorithm.AES_256_GCM_IV12_TAG16,
    ],
    ids=lambda a: f"{a.algorithm_id:04x}",
)
def test_legacy_messages_read_only_when_allowed(setup: dict[str, Any], alg: Algorithm) -> None:
    legacy = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    data = os.urandom(10_000)
    msg, _ = legacy.encrypt(
        source=data, key_provider=setup["provider"], algorithm=alg, encryption_context={"v": "1"}
    )
    assert msg[0] == 1
    ring = E.KmsKeyring(setup["kms"], setup["arns"])
    with pytest.raises(E.PolicyError):
        E.decrypt(msg, ring)
    plain, header = E.decrypt(msg, ring, allow_legacy=True)
    assert plain == data
    assert header.version == 1 and header.suite.suite_id == alg.algorithm_id
    bad = bytearray(msg)
    bad[-1] ^= 1
    with pytest.raises(E.EnvelopeError):
        E.decrypt(bytes(bad), ring, allow_legacy=True)


def test_esdk_refuses_tampered_kmscore_message(setup: dict[str, Any]) -> None:
    msg = bytearray(E.encrypt(b"x" * 5000, E.KmsKeyring(setup["kms"], setup["arns"])))
    msg[len(msg) // 2] ^= 1
    # the ESDK lets cryptography's InvalidTag through unwrapped
    with pytest.raises((aws_encryption_sdk.exceptions.AWSEncryptionSDKClientError, InvalidTag)):
        setup["strict"].decrypt(source=bytes(msg), key_provider=setup["provider"])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.suite_id:04x}")
def test_esdk_non_framed_messages_are_read(setup: dict[str, Any], suite: E.AlgorithmSuite) -> None:
    data = os.urandom(50_000)
    msg, _ = setup["strict"].encrypt(
        source=data,
        key_provider=setup["provider"],
        algorithm=ESDK_ALG[suite.suite_id],
        frame_length=0,
        encryption_context={"shape": "single block"},
    )
    ring = E.KmsKeyring(setup["kms"], setup["arns"])
    plain, header = E.decrypt(msg, ring)
    assert plain == data
    assert header.content_type == 1 and header.frame_length == 0
    out = io.BytesIO()
    with pytest.raises(E.MessageFormatError, match="over the limit"):
        E.decrypt_stream(io.BytesIO(msg), out, ring, max_body_length=49_999)
    assert out.getvalue() == b""
    for pos in (len(msg) - 200, len(msg) // 2):
        bad = bytearray(msg)
        bad[pos] ^= 1
        out = io.BytesIO()
        with pytest.raises(E.AuthenticationError):
            E.decrypt_stream(io.BytesIO(bytes(bad)), out, ring)
        assert out.getvalue() == b""
    with pytest.raises(E.MessageFormatError, match="truncated"):
        E.decrypt(msg[:-1], ring)


def test_esdk_v1_non_framed_read_when_allowed(setup: dict[str, Any]) -> None:
    legacy = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    data = os.urandom(7_000)
    msg, _ = legacy.encrypt(
        source=data,
        key_provider=setup["provider"],
        algorithm=Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
        frame_length=0,
    )
    ring = E.KmsKeyring(setup["kms"], setup["arns"])
    assert E.decrypt(msg, ring, allow_legacy=True)[0] == data
