"""External key stores: kmscore as XKS client against kmscore as XKS proxy, through boto3.

The client (a data dir served over HTTP, driven by boto3) keeps an
EXTERNAL_KEY_STORE whose proxy is a second data dir served by
``kms serve --xks`` (over TLS, SigV4-signed). The whole lifecycle, double
encryption (neither side alone can decrypt), disconnect and reconnect, and
the failures: wrong credentials, a proxy that answers errors, one that
never answers, each with AWS's error and nothing changed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_awsjson_support import Endpoint, running_endpoint
from xks_support import ACCOUNT, REGION, Proxy, running_proxy

from kmscore.model.caller import Caller
from kmscore.operations import dispatch

PROXY_ROOT = Caller(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, principal_id=ACCOUNT)
ENDPOINT = "https://localhost"
PATH = "/kms/xks/v1"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tenants = ("main", "double", "bad", "revoked", "errors", "slow", "timeout")
    paths = [PATH] + [f"/{name}/kms/xks/v1" for name in tenants]
    with running_proxy(tmp_path_factory.mktemp("xks-proxy") / "kms", uri_path=paths) as p:
        yield p


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, proxy: Proxy) -> Iterator[Endpoint]:
    # AWS KMS signs for its own Region; here the client's is the proxy's.
    with running_endpoint(tmp_path_factory.mktemp("xks-client") / "kms", region=REGION) as ep:
        stores = ep.service.custom_key_stores
        stores.xks_addresses["localhost"] = ("127.0.0.1", proxy.port)
        stores.xks_ca_file = str(proxy.cert)
        stores.xks_timeout = 5.0
        yield ep


@pytest.fixture(scope="module")
def kms(endpoint: Endpoint) -> Any:
    return endpoint.client(region=REGION)


def code(fn: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    return str(info.value.response["Error"]["Code"])


def external_key(proxy: Proxy) -> str:
    return str(dispatch(proxy.service, "CreateKey", {}, PROXY_ROOT)["KeyMetadata"]["KeyId"])


def new_store(kms: Any, proxy: Proxy, name: str, *, secret: str | None = None,
              path: str = PATH) -> str:  # fmt: skip
    return str(
        kms.create_custom_key_store(
            CustomKeyStoreName=name,
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT,
            XksProxyUriPath=path,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": proxy.access_key_id,
                "RawSecretAccessKey": secret or proxy.secret,
            },
        )["CustomKeyStoreId"]
    )


def describe(kms: Any, store_id: str) -> dict[str, Any]:
    return dict(kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0])


def proxy_events(proxy: Proxy) -> list[str]:
    from test_awsjson_support import audit_records, flush_audit

    flush_audit(proxy.service)
    return [
        r["eventName"]
        for r in audit_records(proxy.service.data_dir)
        if str(r.get("eventName")).startswith("Xks")
    ]


def test_whole_lifecycle(endpoint: Endpoint, kms: Any, proxy: Proxy) -> None:
    store_id = new_store(kms, proxy, "xks-main", path="/main/kms/xks/v1")
    entry = describe(kms, store_id)
    assert entry["CustomKeyStoreType"] == "EXTERNAL_KEY_STORE"
    assert entry["ConnectionState"] == "DISCONNECTED"
    assert entry["XksProxyConfiguration"] == {
        "Connectivity": "PUBLIC_ENDPOINT",
        "AccessKeyId": proxy.access_key_id,
        "UriEndpoint": ENDPOINT,
        "UriPath": "/main/kms/xks/v1",
    }
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"

    ext = external_key(proxy)
    md = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=ext)[
        "KeyMetadata"
    ]
    key_id = md["KeyId"]
    assert md["Origin"] == "EXTERNAL_KEY_STORE" and md["CustomKeyStoreId"] == store_id
    assert md["XksKeyConfiguration"] == {"Id": ext}
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["XksKeyConfiguration"] == {"Id": ext}
    assert (
        code(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=ext)
        == "XksKeyAlreadyInUseException"
    )

    before = proxy_events(proxy).count("XksEncrypt")
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"on premises", EncryptionContext={"k": "v"})[
        "CiphertextBlob"
    ]
    assert proxy_events(proxy).count("XksEncrypt") == before + 1  # the external layer
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == (
        b"on premises"
    )
    assert code(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"k": "x"}) == (
        "KMSInvalidStateException"
    )
    dk = kms.generate_data_key(KeyId=key_id, NumberOfBytes=32)
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    native = kms.create_key()["KeyMetadata"]["KeyId"]
    moved = kms.re_encrypt(
        CiphertextBlob=blob, SourceEncryptionContext={"k": "v"}, DestinationKeyId=native
    )["CiphertextBlob"]
    back = kms.re_encrypt(CiphertextBlob=moved, DestinationKeyId=key_id)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"on premises"

    # The external key disabled at the proxy: the KMS key cannot be used.
    dispatch(proxy.service, "DisableKey", {"KeyId": ext}, PROXY_ROOT)
    assert code(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInvalidStateException"
    assert code(kms.decrypt, CiphertextBlob=back) == "KMSInvalidStateException"
    dispatch(proxy.service, "EnableKey", {"KeyId": ext}, PROXY_ROOT)
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"on premises"

    # Disconnected: Unavailable; connected again: usable.
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert code(kms.decrypt, CiphertextBlob=back) == "KMSInvalidStateException"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"on premises"

    # Update (disconnected only) and delete (no keys).
    assert (
        code(
            kms.update_custom_key_store, CustomKeyStoreId=store_id, XksProxyUriPath="/x/kms/xks/v1"
        )
        == "CustomKeyStoreInvalidStateException"
    )
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="renamed")
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreHasCMKsException"
    )


def test_double_encryption_needs_both_layers(endpoint: Endpoint, kms: Any, proxy: Proxy) -> None:
    store_id = new_store(kms, proxy, "xks-double", path="/double/kms/xks/v1")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    ext = external_key(proxy)
    key_id = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=ext)[
        "KeyMetadata"
    ]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    assert b"secret" not in blob
    # The KMS layer alone: the key's own material cannot open the blob (the
    # proxy's layer is around it).
    kv = endpoint.service.keyring.load(endpoint.service.store.get_key(key_id), 1)
    inner = kv.aead._inner  # type: ignore[union-attr]
    from kmscore.errors import InvalidCiphertextException
    from kmscore.model import blob as blobs
    from kmscore.model.context import prepare

    header = blob[: blobs.HEADER_LENGTH]
    with pytest.raises(InvalidCiphertextException):
        inner.decrypt(blob, blobs.aad(header, prepare(None)[1]), blobs.HEADER_LENGTH)


def test_wrong_credentials(endpoint: Endpoint, kms: Any, proxy: Proxy) -> None:
    before = kms.describe_custom_key_stores()["CustomKeyStores"]
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="bad-secret",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT,
            XksProxyUriPath="/bad/kms/xks/v1",
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": proxy.access_key_id,
                "RawSecretAccessKey": "B" * 44,
            },
        )
        == "XksProxyIncorrectAuthenticationCredentialException"
    )
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == before
    # A store made with good credentials, then given bad ones at the proxy side.
    store_id = new_store(kms, proxy, "xks-revoked", path="/revoked/kms/xks/v1")
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="xks-revoked-2")
    endpoint.service.store.update_custom_key_store(
        endpoint.service.store.get_custom_key_store(store_id).replace(  # type: ignore[union-attr]
            xks_wrapped_secret=endpoint.service.custom_key_stores.wrap_xks_secret(
                store_id, "C" * 44
            )
        )
    )
    endpoint.service.custom_key_stores.forget()
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    entry = describe(kms, store_id)
    assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == (
        "FAILED",
        "INVALID_CREDENTIALS",
    )


def test_proxy_errors_map_to_aws_errors(endpoint: Endpoint, kms: Any, proxy: Proxy) -> None:
    store_id = new_store(kms, proxy, "xks-errors", path="/errors/kms/xks/v1")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert (
        code(
            kms.create_key,
            Origin="EXTERNAL_KEY_STORE",
            CustomKeyStoreId=store_id,
            XksKeyId="no-such-external-key",
        )
        == "XksKeyNotFoundException"
    )
    disabled = external_key(proxy)
    dispatch(proxy.service, "DisableKey", {"KeyId": disabled}, PROXY_ROOT)
    assert (
        code(
            kms.create_key,
            Origin="EXTERNAL_KEY_STORE",
            CustomKeyStoreId=store_id,
            XksKeyId=disabled,
        )
        == "XksKeyInvalidConfigurationException"
    )
    assert code(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id) == (
        "ValidationException"
    )
    # A path the proxy does not serve.
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="xks-bad-path",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT,
            XksProxyUriPath="/kms/xks/v2",
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": proxy.access_key_id,
                "RawSecretAccessKey": proxy.secret,
            },
        )
        == "XksProxyInvalidConfigurationException"
    )
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="xks-vpc",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT,
            XksProxyUriPath="/vpc/kms/xks/v1",
            XksProxyConnectivity="VPC_ENDPOINT_SERVICE",
            XksProxyVpcEndpointServiceName="com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
            XksProxyAuthenticationCredential={
                "AccessKeyId": proxy.access_key_id,
                "RawSecretAccessKey": proxy.secret,
            },
        )
        == "XksProxyVpcEndpointServiceNotFoundException"
    )
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="xks-same-uri",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT,
            XksProxyUriPath="/errors/kms/xks/v1",
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": proxy.access_key_id,
                "RawSecretAccessKey": proxy.secret,
            },
        )
        == "XksProxyUriInUseException"
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for s in held:
        s.close()
    listener.close()


def test_a_proxy_that_times_out(
    endpoint: Endpoint, kms: Any, proxy: Proxy, silent_server: int
) -> None:
    stores = endpoint.service.custom_key_stores
    store_id = new_store(kms, proxy, "xks-slow", path="/slow/kms/xks/v1")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    key_id = kms.create_key(
        Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=external_key(proxy)
    )["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
    good = stores.xks_addresses["localhost"]
    stores.xks_addresses["localhost"] = ("127.0.0.1", silent_server)
    stores.xks_timeout = 0.3
    endpoint.service.keyring.clear()
    try:
        assert code(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"
        assert code(kms.encrypt, KeyId=key_id, Plaintext=b"p") == "KMSInvalidStateException"
        assert (
            code(
                kms.create_custom_key_store,
                CustomKeyStoreName="xks-timeout",
                CustomKeyStoreType="EXTERNAL_KEY_STORE",
                XksProxyUriEndpoint=ENDPOINT,
                XksProxyUriPath="/timeout/kms/xks/v1",
                XksProxyConnectivity="PUBLIC_ENDPOINT",
                XksProxyAuthenticationCredential={
                    "AccessKeyId": proxy.access_key_id,
                    "RawSecretAccessKey": proxy.secret,
                },
            )
            == "XksProxyUriUnreachableException"
        )
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        entry = describe(kms, store_id)
        assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == (
            "FAILED",
            "XKS_PROXY_TIMED_OUT",
        )
    finally:
        stores.xks_addresses["localhost"] = good
        stores.xks_timeout = 5.0
        endpoint.service.keyring.clear()
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
