"""Fuzzing the parsers of custom key stores: XKS proxy requests, external-key blobs, URIs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmscore.crypto.pkcs11_root import parse_pkcs11_uri
from kmscore.crypto.rootkey import RootKeyError
from kmscore.engine import AesGcmKey
from kmscore.errors import InvalidCiphertextException, KMSError, KMSInvalidStateException
from kmscore.model.caller import Caller
from kmscore.operations import dispatch
from kmscore.service import KeyService, open_service
from kmscore.service.xks_client import ProxyConfig, XksAead, XksProxyClient
from kmscore.service.xks_proxy import new_call, run

ROOT = Caller(arn="arn:aws:iam::111122223333:root", account="111122223333", principal_id="x")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
b64ish = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
)
FIELDS = ("plaintext", "ciphertext", "initializationVector", "authenticationTag",
          "additionalAuthenticatedData", "ciphertextMetadata", "encryptionAlgorithm",
          "ciphertextDataIntegrityValueAlgorithm")  # fmt: skip
requests = st.fixed_dictionaries(
    {},
    optional={
        "requestMetadata": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "kmsRequestId": st.text(max_size=10),
                    "kmsOperation": st.text(max_size=10),
                    "awsPrincipalArn": st.text(max_size=10),
                    "kmsKeyArn": st.text(max_size=10),
                }
            ),
        ),
        **{name: st.one_of(b64ish, json_values, st.just("AES_GCM"), st.just("SHA_256"))
           for name in FIELDS},
    },
)  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KeyService, str]]:
    svc = open_service(Path(tmp_path_factory.mktemp("fuzz")) / "kms", audit=False)
    key_id = dispatch(svc, "CreateKey", {}, ROOT)["KeyMetadata"]["KeyId"]
    yield svc, key_id
    svc.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    operation=st.sampled_from(
        ["XksGetKeyMetadata", "XksEncrypt", "XksDecrypt", "XksGetHealthStatus"]
    ),
    data=requests,
    use_key=st.booleans(),
)
def test_proxy_requests_answer_or_refuse(
    service: tuple[KeyService, str], operation: str, data: dict[str, Any], use_key: bool
) -> None:
    svc, key_id = service
    call = new_call(svc, operation, ROOT, "fuzz")
    key = key_id if use_key else "not-a-key"
    try:
        out = run(call, None if operation == "XksGetHealthStatus" else key, data)
    except KMSError:
        return
    assert isinstance(out, dict)


class _NoProxy(XksProxyClient):
    def decrypt(self, *args: Any, **kwargs: Any) -> bytes:
        from kmscore.service.xks_client import XksFailure

        raise XksFailure("InvalidCiphertextException")


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120), offset=st.integers(min_value=0, max_value=40))
def test_external_key_blobs_parse_or_refuse(data: bytes, offset: int) -> None:
    aead = XksAead(
        AesGcmKey(bytes(32)),
        _NoProxy(ProxyConfig("https://localhost", "/kms/xks/v1", "A" * 20, "s" * 44, "r")),
        "ext",
        "arn",
    )
    with pytest.raises((InvalidCiphertextException, KMSInvalidStateException)):
        aead.decrypt(data, b"", offset)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_pkcs11_uris_parse_or_refuse(text: str) -> None:
    for candidate in (text, "pkcs11:" + text):
        try:
            parsed = parse_pkcs11_uri(candidate)
        except RootKeyError:
            continue
        assert parsed.token and parsed.object and parsed.module
