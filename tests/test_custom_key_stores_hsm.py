"""HSM key stores (AWS_CLOUDHSM over PKCS#11, SoftHSM2 here) through boto3 over HTTP.

The whole lifecycle: a token registered as a cluster, CreateCustomKeyStore,
Connect, CreateKey in the store, Encrypt/Decrypt/GenerateDataKey/ReEncrypt
done by the token, Disconnect (keys Unavailable) and Connect again (usable),
UpdateCustomKeyStore and DeleteCustomKeyStore; and the failures: a wrong PIN,
a missing token, requests in the wrong connection state, each with AWS's
error and no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hsm_support import PIN, REMOVED_TOKEN, new_token, softhsm_conf, softhsm_module
from test_awsjson_support import Endpoint, running_endpoint

from kmscore.crypto.pkcs11_token import token_key_label
from kmscore.service.hsm_clusters import register_cluster

MODEL = botocore.session.get_session().get_service_model("kms")
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIB...test...\n-----END CERTIFICATE-----"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    softhsm_module()
    softhsm_conf()
    with running_endpoint(tmp_path_factory.mktemp("hsm") / "kms") as ep:
        yield ep


@pytest.fixture(scope="module")
def kms(endpoint: Endpoint) -> Any:
    return endpoint.client()


def code(fn: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    return str(info.value.response["Error"]["Code"])


def cluster(endpoint: Endpoint, **options: Any) -> tuple[str, str]:
    """A new token registered as a cluster: (cluster id, token label)."""
    label = new_token()
    registered = register_cluster(endpoint.service.store, softhsm_module(), label, **options)
    return registered.cluster_id, label


def new_store(kms: Any, cluster_id: str, password: str = PIN, name: str | None = None) -> str:
    return str(
        kms.create_custom_key_store(
            CustomKeyStoreName=name or f"store-{cluster_id}",
            CloudHsmClusterId=cluster_id,
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword=password,
        )["CustomKeyStoreId"]
    )


def describe(kms: Any, store_id: str) -> dict[str, Any]:
    stores = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert len(stores) == 1
    return dict(stores[0])


def check_members(shape_name: str, value: dict[str, Any]) -> None:
    """Every member is one of the model's, with an enum value where it has one."""
    shape = MODEL.shape_for(shape_name)
    for name, item in value.items():
        assert name in shape.members, f"{name} is not a member of {shape_name}"
        enum = getattr(shape.members[name], "enum", None)
        if enum:
            assert item in enum, (name, item)


def test_whole_lifecycle(endpoint: Endpoint, kms: Any) -> None:
    cluster_id, label = cluster(endpoint)
    store_id = new_store(kms, cluster_id)
    assert store_id.startswith("cks-") and len(store_id) == 21
    entry = describe(kms, store_id)
    check_members("CustomKeyStoresListEntry", entry)
    assert entry["ConnectionState"] == "DISCONNECTED"
    assert entry["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert entry["CloudHsmClusterId"] == cluster_id
    assert "KeyStorePassword" not in entry

    # No keys while disconnected.
    assert (
        code(kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)
        == "CustomKeyStoreInvalidStateException"
    )
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"

    md = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"]
    check_members("KeyMetadata", md)
    key_id = md["KeyId"]
    assert md["Origin"] == "AWS_CLOUDHSM"
    assert md["CustomKeyStoreId"] == store_id
    assert md["CloudHsmClusterId"] == cluster_id
    assert md["KeyState"] == "Enabled"
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["CustomKeyStoreId"] == store_id

    # The material lives in the token, sensitive and not extractable; the
    # store keeps only the token object's label.
    material = endpoint.service.store.get_material(key_id, 1)
    assert material is not None and material.wrapped == token_key_label(key_id, 1).encode()
    probe = endpoint.service.custom_key_stores.connection(store_id)
    assert probe.token_label == label
    assert probe.attributes(token_key_label(key_id, 1)) == {
        "sensitive": True,
        "extractable": False,
        "token": True,
    }

    # Crypto by the token.
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"card 4111", EncryptionContext={"a": "b"})[
        "CiphertextBlob"
    ]
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert out["Plaintext"] == b"card 4111" and out["KeyId"].endswith(key_id)
    assert code(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "c"}) == (
        "InvalidCiphertextException"
    )
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    native = kms.create_key()["KeyMetadata"]["KeyId"]
    moved = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"a": "b"},
        DestinationKeyId=native,
    )["CiphertextBlob"]
    back = kms.re_encrypt(CiphertextBlob=moved, DestinationKeyId=key_id)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"card 4111"

    # Disconnected: Unavailable, nothing works but what AWS allows.
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is False
    assert code(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInvalidStateException"
    assert code(kms.decrypt, CiphertextBlob=back) == "KMSInvalidStateException"
    assert code(kms.generate_data_key, KeyId=key_id, KeySpec="AES_256") == (
        "KMSInvalidStateException"
    )
    assert code(kms.disable_key, KeyId=key_id) == "KMSInvalidStateException"
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])

    # Connected again: usable, with the same material.
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"card 4111"

    # Rotation is not for custom key store keys (as AWS).
    assert code(kms.enable_key_rotation, KeyId=key_id) == "UnsupportedOperationException"

    # Update and delete follow the connection state.
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="renamed")
    assert describe(kms, store_id)["CustomKeyStoreName"] == "renamed"
    assert (
        code(kms.update_custom_key_store, CustomKeyStoreId=store_id, KeyStorePassword="other-pin")
        == "CustomKeyStoreInvalidStateException"
    )
    assert code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreInvalidStateException"
    )
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreHasCMKsException"
    )
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreHasCMKsException"
    )


def test_delete_an_empty_store(endpoint: Endpoint, kms: Any) -> None:
    cluster_id, _ = cluster(endpoint)
    store_id = new_store(kms, cluster_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert code(kms.describe_custom_key_stores, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreNotFoundException"
    )
    assert code(kms.connect_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreNotFoundException"
    )


def test_wrong_pin_fails_the_connection_and_changes_nothing(endpoint: Endpoint, kms: Any) -> None:
    cluster_id, _ = cluster(endpoint)
    store_id = new_store(kms, cluster_id, password="not-the-pin")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    entry = describe(kms, store_id)
    assert entry["ConnectionState"] == "FAILED"
    assert entry["ConnectionErrorCode"] == "INVALID_CREDENTIALS"
    # FAILED must be disconnected before another attempt, as in AWS.
    assert code(kms.connect_custom_key_store, CustomKeyStoreId=store_id) == (
        "CustomKeyStoreInvalidStateException"
    )
    assert code(kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id) == (
        "CustomKeyStoreInvalidStateException"
    )
    assert describe(kms, store_id) == entry
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert "ConnectionErrorCode" not in describe(kms, store_id)


def test_removed_token(endpoint: Endpoint, kms: Any) -> None:
    # A store whose token is not in any slot (pulled, or deleted): the
    # connection fails with AWS's code, and its keys stay Unavailable.
    registered = register_cluster(endpoint.service.store, softhsm_module(), REMOVED_TOKEN)
    store_id = new_store(kms, registered.cluster_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    entry = describe(kms, store_id)
    assert entry["ConnectionState"] == "FAILED"
    assert entry["ConnectionErrorCode"] == "INSUFFICIENT_CLOUDHSM_HSMS"
    assert code(kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id) == (
        "CustomKeyStoreInvalidStateException"
    )


def test_session_lost_while_connected(endpoint: Endpoint, kms: Any) -> None:
    # The store says CONNECTED but this process's session is gone (the token
    # was pulled and put back): the next call logs in again and works.
    cluster_id, _ = cluster(endpoint)
    store_id = new_store(kms, cluster_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    key_id = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"][
        "KeyId"
    ]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
    endpoint.service.custom_key_stores.close_connection(store_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


def test_create_errors(endpoint: Endpoint, kms: Any) -> None:
    cluster_id, _ = cluster(endpoint, trust_anchor=TRUST_ANCHOR)
    before = kms.describe_custom_key_stores()["CustomKeyStores"]
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="x",
            CloudHsmClusterId="cluster-aaaaaaaaaaaaa",
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword=PIN,
        )
        == "CloudHsmClusterNotFoundException"
    )
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="x",
            CloudHsmClusterId=cluster_id,
            TrustAnchorCertificate="another certificate",
            KeyStorePassword=PIN,
        )
        == "IncorrectTrustAnchorException"
    )
    assert (
        code(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId=cluster_id)
        == "ValidationException"
    )
    raw = endpoint.client(
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )
    assert (
        code(
            raw.create_custom_key_store,
            CustomKeyStoreName="x",
            CloudHsmClusterId=cluster_id,
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword="short",
        )
        == "ValidationException"
    )
    assert (
        code(
            raw.create_custom_key_store,
            CustomKeyStoreName="x",
            CloudHsmClusterId="not-a-cluster-id",
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword=PIN,
        )
        == "ValidationException"
    )
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == before
    store_id = new_store(kms, cluster_id, name="unique-name")
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="unique-name",
            CloudHsmClusterId=cluster(endpoint)[0],
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword=PIN,
        )
        == "CustomKeyStoreNameInUseException"
    )
    assert (
        code(
            kms.create_custom_key_store,
            CustomKeyStoreName="other-name",
            CloudHsmClusterId=cluster_id,
            TrustAnchorCertificate=TRUST_ANCHOR,
            KeyStorePassword=PIN,
        )
        == "CloudHsmClusterInUseException"
    )
    by_name = kms.describe_custom_key_stores(CustomKeyStoreName="unique-name")["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in by_name] == [store_id]
    assert code(kms.describe_custom_key_stores, CustomKeyStoreName="nobody") == (
        "CustomKeyStoreNotFoundException"
    )


def test_create_key_errors(endpoint: Endpoint, kms: Any) -> None:
    cluster_id, _ = cluster(endpoint)
    store_id = new_store(kms, cluster_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert code(
        kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId="cks-00000000000000000"
    ) == ("CustomKeyStoreNotFoundException")
    assert code(kms.create_key, Origin="AWS_CLOUDHSM") == "UnsupportedOperationException"
    assert code(kms.create_key, CustomKeyStoreId=store_id) == "UnsupportedOperationException"
    assert code(
        kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, KeySpec="RSA_2048",
        KeyUsage="SIGN_VERIFY",
    ) == "UnsupportedOperationException"  # fmt: skip
    assert (
        code(kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, MultiRegion=True)
        == "UnsupportedOperationException"
    )


def test_paging(endpoint: Endpoint, kms: Any) -> None:
    for _ in range(2):
        new_store(kms, cluster(endpoint)[0])
    everything = kms.describe_custom_key_stores()["CustomKeyStores"]
    page = kms.describe_custom_key_stores(Limit=1)
    assert page["Truncated"] is True and len(page["CustomKeyStores"]) == 1
    seen = list(page["CustomKeyStores"])
    while page["Truncated"]:
        page = kms.describe_custom_key_stores(Limit=1, Marker=page["NextMarker"])
        seen += page["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in seen] == [s["CustomKeyStoreId"] for s in everything]
    assert code(kms.describe_custom_key_stores, Marker="garbage") == "InvalidMarkerException"


def test_audit_never_holds_the_pin(endpoint: Endpoint, kms: Any) -> None:
    from test_awsjson_support import audit_records, flush_audit

    cluster_id, _ = cluster(endpoint)
    new_store(kms, cluster_id, password="secret-pin-77")
    flush_audit(endpoint.service)
    text = repr(audit_records(endpoint.data_dir))
    assert "CreateCustomKeyStore" in text
    assert "secret-pin-77" not in text


def test_deleting_a_key_destroys_its_token_objects(endpoint: Endpoint, kms: Any) -> None:
    from kmscore.crypto.pkcs11_token import TokenUnavailableError

    cluster_id, _ = cluster(endpoint)
    store_id = new_store(kms, cluster_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    key_id = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"][
        "KeyId"
    ]
    conn = endpoint.service.custom_key_stores.connection(store_id)
    conn.key(token_key_label(key_id, 1))  # there
    key = endpoint.service.store.get_key(key_id)
    assert key is not None
    endpoint.service.delete_expired(key)  # what the end of the waiting period does
    conn._keys.clear()
    with pytest.raises(TokenUnavailableError):
        conn.key(token_key_label(key_id, 1))
    assert endpoint.service.store.count_custom_key_store_keys(store_id) == 0
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
