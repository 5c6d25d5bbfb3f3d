"""Custom key store operations.

CreateCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore,
DescribeCustomKeyStores, UpdateCustomKeyStore and DeleteCustomKeyStore, with
AWS's shapes, connection states and errors, and the checks CreateKey makes of
a ``CustomKeyStoreId`` (:func:`store_for_new_key`).

Type ``AWS_CLOUDHSM`` is served by a PKCS#11 token (the cluster id names a
registered token, :mod:`kmscore.service.hsm_clusters`; the password is its
user PIN). Connecting is synchronous here: the call returns once the token
has accepted or refused the login, and a refusal leaves the store ``FAILED``
with AWS's ``ConnectionErrorCode``, as AWS shows it after its asynchronous
attempt.
"""

from __future__ import annotations

import os
from typing import Any, Final

from kmscore.crypto.pkcs11_token import TokenConnectError
from kmscore.errors import (
    CloudHsmClusterInUseException,
    CloudHsmClusterNotRelatedException,
    CustomKeyStoreHasCMKsException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNotFoundException,
    IncorrectTrustAnchorException,
    KMSError,
    LimitExceededException,
    UnsupportedOperationException,
    ValidationException,
    XksKeyAlreadyInUseException,
    XksKeyInvalidConfigurationException,
    XksKeyNotFoundException,
    XksProxyIncorrectAuthenticationCredentialException,
    XksProxyInvalidConfigurationException,
    XksProxyInvalidResponseException,
    XksProxyUriInUseException,
    XksProxyUriUnreachableException,
    XksProxyVpcEndpointServiceNotFoundException,
)
from kmscore.model.custom_key_store import (
    CLOUDHSM,
    EXTERNAL_KEY_STORE,
    ConnectionState,
    CustomKeyStoreRecord,
)
from kmscore.model.validation import String, Structure
from kmscore.operations.common import LIMIT, MARKER, page_args, page_result
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.hsm_clusters import get_cluster
from kmscore.service.xks_client import XksFailure

__all__ = ["store_for_new_key"]

#: AWS's quota of custom key stores per account and Region.
MAX_STORES: Final = 10

STORE_ID: Final = String(required=True, min_len=1, max_len=64)
STORE_NAME: Final = String(min_len=1, max_len=256)
CLUSTER_ID: Final = String(min_len=19, max_len=24, pattern=r"cluster-[2-7a-zA-Z]{11,16}")
PASSWORD: Final = String(min_len=7, max_len=32)
_XKS_MEMBERS: Final = {
    "XksProxyUriEndpoint": String(min_len=10, max_len=128, pattern=r"^https://[a-zA-Z0-9.-]+$"),
    "XksProxyUriPath": String(
        min_len=10,
        max_len=128,
        pattern=r"^(/[a-zA-Z0-9\/_-]+/kms/xks/v\d{1,2})$|^(/kms/xks/v\d{1,2})$",
    ),
    "XksProxyVpcEndpointServiceName": String(
        min_len=20,
        max_len=64,
        pattern=r"^(com|eu)\.amazonaws\.vpce\.([a-z]+-){2,3}\d+\.vpce-svc-[0-9a-z]+$",
    ),
    "XksProxyVpcEndpointServiceOwner": String(min_len=12, max_len=12, pattern=r"[0-9]{12}"),
    "XksProxyAuthenticationCredential": Structure(
        members={
            "AccessKeyId": String(required=True, min_len=20, max_len=30, pattern=r"^[A-Z2-7]+$"),
            "RawSecretAccessKey": String(
                required=True, min_len=43, max_len=64, pattern=r"^[a-zA-Z0-9\/+=]+$"
            ),
        }
    ),
    "XksProxyConnectivity": String(enum=("PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE")),
}


def _new_store_id() -> str:
    """``cks-`` and 17 hex digits, as AWS's ids look."""
    return "cks-" + os.urandom(9).hex()[:17]


def _refuse_xks(req: dict[str, Any]) -> None:
    """XKS members have no meaning for an HSM store.

    Raises:
        ValidationException: one was given.
    """
    given = sorted(name for name in _XKS_MEMBERS if name in req)
    if given:
        raise ValidationException(
            f"{', '.join(given)} apply only to custom key stores of type EXTERNAL_KEY_STORE."
        )


@operation(
    "CreateCustomKeyStore",
    {
        "CustomKeyStoreName": String(required=True, min_len=1, max_len=256),
        "CloudHsmClusterId": CLUSTER_ID,
        "TrustAnchorCertificate": String(min_len=1, max_len=5000),
        "KeyStorePassword": PASSWORD,
        "CustomKeyStoreType": String(enum=(CLOUDHSM, EXTERNAL_KEY_STORE)),
        **_XKS_MEMBERS,
    },
)
def create_custom_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateCustomKeyStore: a new store, DISCONNECTED until ConnectCustomKeyStore."""
    svc = call.service
    store_type = req.get("CustomKeyStoreType", CLOUDHSM)
    if store_type == EXTERNAL_KEY_STORE:
        return _create_external_key_store(call, req)
    _refuse_xks(req)
    missing = [
        name
        for name in ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword")
        if name not in req
    ]
    if missing:
        raise ValidationException(
            f"A custom key store of type AWS_CLOUDHSM needs {', '.join(missing)}."
        )
    call.authorize(None)
    cluster = get_cluster(svc.store, req["CloudHsmClusterId"])
    if cluster.trust_anchor is not None and (
        cluster.trust_anchor.strip() != req["TrustAnchorCertificate"].strip()
    ):
        raise IncorrectTrustAnchorException(
            f"The trust anchor certificate does not match cluster {cluster.cluster_id}'s."
        )
    stores = svc.store.list_custom_key_stores()
    if any(s.cluster_id == cluster.cluster_id for s in stores):
        raise CloudHsmClusterInUseException(
            f"Cluster {cluster.cluster_id} is the cluster of another custom key store."
        )
    if len(stores) >= MAX_STORES:
        raise LimitExceededException(f"An account has at most {MAX_STORES} custom key stores.")
    store_id = _new_store_id()
    record = CustomKeyStoreRecord(
        custom_key_store_id=store_id,
        name=req["CustomKeyStoreName"],
        store_type=CLOUDHSM,
        connection_state=ConnectionState.DISCONNECTED,
        creation_date=svc.clock(),
        cluster_id=cluster.cluster_id,
        trust_anchor=req["TrustAnchorCertificate"],
        wrapped_password=svc.custom_key_stores.wrap_password(store_id, req["KeyStorePassword"]),
    )
    svc.store.create_custom_key_store(record)
    svc.custom_key_stores.stored(record.replace(revision=1), store_id)
    return {"CustomKeyStoreId": store_id}


@operation("ConnectCustomKeyStore", {"CustomKeyStoreId": STORE_ID})
def connect_custom_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ConnectCustomKeyStore: log in to the token; CONNECTED, or FAILED with the reason."""
    stores = call.service.custom_key_stores
    call.authorize(None)
    record = _fresh(call, req["CustomKeyStoreId"])
    if record.connection_state in (ConnectionState.FAILED, ConnectionState.DISCONNECTING):
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {record.custom_key_store_id} is "
            f"{record.connection_state.value}; disconnect it before connecting it again."
        )
    if record.connected:
        return {}
    if record.store_type == EXTERNAL_KEY_STORE:
        try:
            stores.proxy_client(record).health()
        except XksFailure as exc:
            _store(
                call,
                record.replace(
                    connection_state=ConnectionState.FAILED,
                    connection_error_code=exc.connection_error,
                ),
            )
            return {}
        _store(
            call,
            record.replace(connection_state=ConnectionState.CONNECTED, connection_error_code=None),
        )
        return {}
    try:
        stores.open_connection(record)
    except TokenConnectError as exc:
        changed = record.replace(
            connection_state=ConnectionState.FAILED, connection_error_code=exc.code
        )
    else:
        changed = record.replace(
            connection_state=ConnectionState.CONNECTED, connection_error_code=None
        )
    _store(call, changed)
    return {}


@operation("DisconnectCustomKeyStore", {"CustomKeyStoreId": STORE_ID})
def disconnect_custom_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DisconnectCustomKeyStore: log out; the store's keys become Unavailable."""
    call.authorize(None)
    record = _fresh(call, req["CustomKeyStoreId"])
    call.service.custom_key_stores.close_connection(record.custom_key_store_id)
    if record.connection_state is not ConnectionState.DISCONNECTED:
        _store(
            call,
            record.replace(
                connection_state=ConnectionState.DISCONNECTED, connection_error_code=None
            ),
        )
    return {}


@operation(
    "DescribeCustomKeyStores",
    {
        "CustomKeyStoreId": String(min_len=1, max_len=64),
        "CustomKeyStoreName": STORE_NAME,
        "Limit": LIMIT,
        "Marker": MARKER,
    },
)
def describe_custom_key_stores(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DescribeCustomKeyStores: one store by id or name, or all of them, paged."""
    svc = call.service
    limit, after = page_args(req)
    call.authorize(None)
    records = svc.store.list_custom_key_stores()
    if "CustomKeyStoreId" in req:
        records = [r for r in records if r.custom_key_store_id == req["CustomKeyStoreId"]]
        if not records:
            raise CustomKeyStoreNotFoundException(
                f"Custom key store {req['CustomKeyStoreId']} does not exist."
            )
    if "CustomKeyStoreName" in req:
        records = [r for r in records if r.name == req["CustomKeyStoreName"]]
        if not records:
            raise CustomKeyStoreNotFoundException(
                f"No custom key store is named {req['CustomKeyStoreName']!r}."
            )
    page = [r for r in records if after is None or r.custom_key_store_id > after][: limit + 1]
    last = page[limit - 1].custom_key_store_id if len(page) > limit else None
    return page_result([r.describe() for r in page], limit, last, "CustomKeyStores")


@operation(
    "UpdateCustomKeyStore",
    {
        "CustomKeyStoreId": STORE_ID,
        "NewCustomKeyStoreName": STORE_NAME,
        "KeyStorePassword": PASSWORD,
        "CloudHsmClusterId": CLUSTER_ID,
        **{k: v for k, v in _XKS_MEMBERS.items()},
    },
)
def update_custom_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UpdateCustomKeyStore: a new name (any state); a new PIN or cluster (disconnected)."""
    svc = call.service
    call.authorize(None)
    record = _fresh(call, req["CustomKeyStoreId"])
    if record.store_type == EXTERNAL_KEY_STORE:
        return _update_external_key_store(call, record, req)
    _refuse_xks(req)
    changes: dict[str, Any] = {}
    if "NewCustomKeyStoreName" in req:
        changes["name"] = req["NewCustomKeyStoreName"]
    if ("KeyStorePassword" in req or "CloudHsmClusterId" in req) and (
        record.connection_state is not ConnectionState.DISCONNECTED
    ):
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {record.custom_key_store_id} is "
            f"{record.connection_state.value}; KeyStorePassword and CloudHsmClusterId "
            "change only while it is DISCONNECTED."
        )
    if "KeyStorePassword" in req:
        changes["wrapped_password"] = svc.custom_key_stores.wrap_password(
            record.custom_key_store_id, req["KeyStorePassword"]
        )
    if "CloudHsmClusterId" in req and req["CloudHsmClusterId"] != record.cluster_id:
        new = get_cluster(svc.store, req["CloudHsmClusterId"])
        old = get_cluster(svc.store, record.cluster_id or "")
        # The same token under another registration (say, the module moved):
        # it holds the store's keys. Any other token does not.
        if new.token_label != old.token_label:
            raise CloudHsmClusterNotRelatedException(
                f"Cluster {new.cluster_id} is another token than the store's "
                f"({old.cluster_id}); it does not hold the store's keys."
            )
        changes["cluster_id"] = new.cluster_id
    if changes:
        _store(call, record.replace(**changes))
    return {}


@operation("DeleteCustomKeyStore", {"CustomKeyStoreId": STORE_ID})
def delete_custom_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DeleteCustomKeyStore: only a disconnected store that holds no keys."""
    svc = call.service
    call.authorize(None)
    record = _fresh(call, req["CustomKeyStoreId"])
    if record.connection_state is not ConnectionState.DISCONNECTED:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {record.custom_key_store_id} is "
            f"{record.connection_state.value}; disconnect it before deleting it."
        )
    held = svc.store.count_custom_key_store_keys(record.custom_key_store_id)
    if held:
        raise CustomKeyStoreHasCMKsException(
            f"Custom key store {record.custom_key_store_id} holds {held} KMS keys; "
            "delete them first."
        )
    svc.store.delete_custom_key_store(record.custom_key_store_id)
    svc.custom_key_stores.stored(None, record.custom_key_store_id)
    return {}


def store_for_new_key(call: Call, req: dict[str, Any], spec: str, usage: str) -> str | None:
    """The custom key store a CreateKey request names, checked; None for a KMS key.

    Raises:
        CustomKeyStoreNotFoundException: no such store.
        UnsupportedOperationException: the origin does not match the store's
            type, or the key is not a single-Region SYMMETRIC_DEFAULT
            ENCRYPT_DECRYPT key (the only kind custom key stores hold).
        CustomKeyStoreInvalidStateException: the store is not connected.
    """
    origin = req.get("Origin", "AWS_KMS")
    store_id = req.get("CustomKeyStoreId")
    if store_id is None:
        if origin == CLOUDHSM:
            raise UnsupportedOperationException(
                "Origin AWS_CLOUDHSM needs the CustomKeyStoreId of an AWS_CLOUDHSM key store."
            )
        return None
    record = call.service.custom_key_stores.require(store_id)
    if origin != record.store_type:
        raise UnsupportedOperationException(
            f"A key in custom key store {store_id} (type {record.store_type}) needs "
            f"Origin {record.store_type}, not {origin}."
        )
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT" or req.get("MultiRegion"):
        raise UnsupportedOperationException(
            "A custom key store holds only single-Region SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys."
        )
    if not record.connected:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {store_id} is {record.connection_state.value}; "
            "connect it before creating keys in it."
        )
    if record.store_type == EXTERNAL_KEY_STORE:
        _check_external_key(call, record, req.get("XksKeyId"))
    elif "XksKeyId" in req:
        raise ValidationException("XksKeyId applies only to keys in external key stores.")
    return str(store_id)


def _fresh(call: Call, store_id: str) -> CustomKeyStoreRecord:
    """The store's record as stored now (not the cache), for a change.

    Raises:
        CustomKeyStoreNotFoundException: no such store.
    """
    record = call.service.store.get_custom_key_store(store_id)
    if record is None:
        raise CustomKeyStoreNotFoundException(f"Custom key store {store_id} does not exist.")
    return record


def _store(call: Call, record: CustomKeyStoreRecord) -> None:
    stored = call.service.store.update_custom_key_store(record)
    call.service.custom_key_stores.stored(stored, record.custom_key_store_id)


# --- external key stores --------------------------------------------------------------

_PROXY_ERRORS_ON_STORE: Final = {
    # The spec's table: what Create/UpdateCustomKeyStore answer for each failure.
    "AuthenticationFailedException": XksProxyIncorrectAuthenticationCredentialException,
    "InvalidUriPathException": XksProxyInvalidConfigurationException,
    "DependencyTimeoutException": XksProxyUriUnreachableException,
    "ThrottlingException": XksProxyUriUnreachableException,
    "Unreachable": XksProxyUriUnreachableException,
    "Tls": XksProxyUriUnreachableException,
    "Timeout": XksProxyUriUnreachableException,
}


def _store_error(exc: XksFailure) -> KMSError:
    cls = _PROXY_ERRORS_ON_STORE.get(exc.scenario, XksProxyInvalidResponseException)
    return cls(exc.message)


def _xks_settings(req: dict[str, Any], record: CustomKeyStoreRecord | None) -> dict[str, Any]:
    """The proxy settings of a request, over the record's.

    Raises:
        ValidationException: a member is missing, or an HSM store's member given.
        XksProxyVpcEndpointServiceNotFoundException: VPC_ENDPOINT_SERVICE
            connectivity (kmscore has no VPC endpoint services).
    """
    hsm = sorted(n for n in ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword")
                 if n in req)  # fmt: skip
    if hsm:
        raise ValidationException(
            f"{', '.join(hsm)} apply only to custom key stores of type AWS_CLOUDHSM."
        )
    credential = req.get("XksProxyAuthenticationCredential")
    out = {
        "xks_uri_endpoint": req.get("XksProxyUriEndpoint", record and record.xks_uri_endpoint),
        "xks_uri_path": req.get("XksProxyUriPath", record and record.xks_uri_path),
        "xks_connectivity": req.get("XksProxyConnectivity", record and record.xks_connectivity),
        "xks_access_key_id": credential["AccessKeyId"]
        if credential
        else (record and record.xks_access_key_id),
        "secret": credential["RawSecretAccessKey"] if credential else None,
    }
    missing = [
        name
        for name, value in (
            ("XksProxyUriEndpoint", out["xks_uri_endpoint"]),
            ("XksProxyUriPath", out["xks_uri_path"]),
            ("XksProxyConnectivity", out["xks_connectivity"]),
            ("XksProxyAuthenticationCredential", out["xks_access_key_id"]),
        )
        if value is None
    ]
    if missing:
        raise ValidationException(
            f"A custom key store of type EXTERNAL_KEY_STORE needs {', '.join(missing)}."
        )
    if out["xks_connectivity"] == "VPC_ENDPOINT_SERVICE" or "XksProxyVpcEndpointServiceName" in req:
        raise XksProxyVpcEndpointServiceNotFoundException(
            "This KMS has no VPC endpoint services; use XksProxyConnectivity PUBLIC_ENDPOINT."
        )
    return out


def _check_uri_free(call: Call, endpoint: str, path: str, store_id: str | None) -> None:
    for other in call.service.store.list_custom_key_stores():
        if other.custom_key_store_id == store_id or other.store_type != EXTERNAL_KEY_STORE:
            continue
        if other.xks_uri_endpoint == endpoint and other.xks_uri_path == path:
            raise XksProxyUriInUseException(
                f"{endpoint}{path} is the proxy of custom key store {other.custom_key_store_id}."
            )


def _create_external_key_store(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateCustomKeyStore of type EXTERNAL_KEY_STORE: the proxy is checked first."""
    svc = call.service
    settings = _xks_settings(req, None)
    call.authorize(None)
    _check_uri_free(call, settings["xks_uri_endpoint"], settings["xks_uri_path"], None)
    if len(svc.store.list_custom_key_stores()) >= MAX_STORES:
        raise LimitExceededException(f"An account has at most {MAX_STORES} custom key stores.")
    store_id = _new_store_id()
    record = CustomKeyStoreRecord(
        custom_key_store_id=store_id,
        name=req["CustomKeyStoreName"],
        store_type=EXTERNAL_KEY_STORE,
        connection_state=ConnectionState.DISCONNECTED,
        creation_date=svc.clock(),
        xks_uri_endpoint=settings["xks_uri_endpoint"],
        xks_uri_path=settings["xks_uri_path"],
        xks_connectivity=settings["xks_connectivity"],
        xks_access_key_id=settings["xks_access_key_id"],
        xks_wrapped_secret=svc.custom_key_stores.wrap_xks_secret(store_id, settings["secret"]),
    )
    try:
        svc.custom_key_stores.proxy_client(record, secret=settings["secret"]).health()
    except XksFailure as exc:
        raise _store_error(exc) from None
    svc.store.create_custom_key_store(record)
    svc.custom_key_stores.stored(record, store_id)
    return {"CustomKeyStoreId": store_id}


def _update_external_key_store(
    call: Call, record: CustomKeyStoreRecord, req: dict[str, Any]
) -> dict[str, Any]:
    """UpdateCustomKeyStore of an external key store: proxy settings only while disconnected."""
    svc = call.service
    settings = _xks_settings(req, record)
    proxy_changes = [n for n in _XKS_MEMBERS if n in req]
    if proxy_changes and record.connection_state is not ConnectionState.DISCONNECTED:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {record.custom_key_store_id} is "
            f"{record.connection_state.value}; its proxy settings change only while it is "
            "DISCONNECTED."
        )
    changes: dict[str, Any] = {}
    if "NewCustomKeyStoreName" in req:
        changes["name"] = req["NewCustomKeyStoreName"]
    if proxy_changes:
        _check_uri_free(
            call, settings["xks_uri_endpoint"], settings["xks_uri_path"], record.custom_key_store_id
        )
        changes.update({k: v for k, v in settings.items() if k != "secret"})
        if settings["secret"] is not None:
            changes["xks_wrapped_secret"] = svc.custom_key_stores.wrap_xks_secret(
                record.custom_key_store_id, settings["secret"]
            )
        changed = record.replace(**changes)
        try:
            svc.custom_key_stores.proxy_client(changed, secret=settings["secret"]).health()
        except XksFailure as exc:
            raise _store_error(exc) from None
    if changes:
        _store(call, record.replace(**changes))
    return {}


def _check_external_key(call: Call, record: CustomKeyStoreRecord, xks_key_id: Any) -> None:
    """CreateKey's checks of an external key: unused here, found, AES-256, enabled.

    Raises:
        ValidationException: no XksKeyId.
        XksKeyAlreadyInUseException: another key of the store uses it.
        XksKeyNotFoundException: the proxy does not know it.
        XksKeyInvalidConfigurationException: not an enabled AES-256
            encrypt/decrypt key.
        CustomKeyStoreInvalidStateException: the proxy failed otherwise.
    """
    if not isinstance(xks_key_id, str):
        raise ValidationException("A key in an external key store needs XksKeyId.")
    used = call.service.store.find_xks_key(record.custom_key_store_id, xks_key_id)
    if used is not None:
        raise XksKeyAlreadyInUseException(
            f"External key {xks_key_id} is the external key of {call.service.key_arn(used)}."
        )
    try:
        meta = call.service.custom_key_stores.proxy_client(record).metadata(xks_key_id, None)
    except XksFailure as exc:
        if exc.scenario == "KeyNotFoundException":
            raise XksKeyNotFoundException(exc.message) from None
        if exc.scenario in ("InvalidStateException", "InvalidKeyUsageException"):
            raise XksKeyInvalidConfigurationException(exc.message) from None
        raise CustomKeyStoreInvalidStateException(exc.message) from None
    usage = meta.get("keyUsage")
    if (
        meta.get("keySpec") != "AES_256"
        or not isinstance(usage, list)
        or not {"ENCRYPT", "DECRYPT"} <= set(usage)
        or meta.get("keyStatus") != "ENABLED"
    ):
        raise XksKeyInvalidConfigurationException(
            f"External key {xks_key_id} is not an enabled AES_256 key for ENCRYPT and DECRYPT "
            f"(the proxy says {meta.get('keySpec')}, {usage}, {meta.get('keyStatus')})."
        )
