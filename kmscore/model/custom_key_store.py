"""Custom key stores: keys whose material lives in an HSM or an external key manager.

Two types, as AWS KMS has them:

- ``AWS_CLOUDHSM``: here, a PKCS#11 token (an HSM, or SoftHSM2). Key material
  is made inside the token and never leaves it; the token does the AES-GCM.
  The ``CloudHsmClusterId`` names a token registered with the data dir
  (:mod:`kmscore.service.hsm_clusters`), the ``KeyStorePassword`` is the
  token's user PIN.
- ``EXTERNAL_KEY_STORE``: a proxy that speaks AWS's XKS Proxy API.

A store's ``ConnectionState`` is kept in the key store, so every process of a
data dir (and every node of a fleet) sees the same one. While a store is not
``CONNECTED``, its keys are ``Unavailable`` (:func:`effective_state`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState

__all__ = [
    "CLOUDHSM",
    "EXTERNAL_KEY_STORE",
    "ConnectionState",
    "CustomKeyStoreRecord",
    "effective_state",
]

CLOUDHSM: Final = "AWS_CLOUDHSM"
EXTERNAL_KEY_STORE: Final = "EXTERNAL_KEY_STORE"


class ConnectionState(enum.StrEnum):
    """A custom key store's connection state, spelled as AWS spells it."""

    CONNECTED = "CONNECTED"
    CONNECTING = "CONNECTING"
    FAILED = "FAILED"
    DISCONNECTED = "DISCONNECTED"
    DISCONNECTING = "DISCONNECTING"


@dataclass(frozen=True, slots=True)
class CustomKeyStoreRecord:
    """One custom key store. Secrets are kept only wrapped under the root key.

    Attributes:
        custom_key_store_id: ``cks-`` and 17 hex digits, as AWS makes them.
        name: The unique name.
        store_type: ``AWS_CLOUDHSM`` or ``EXTERNAL_KEY_STORE``.
        connection_state: The connection state.
        connection_error_code: Why the last connection failed (AWS's codes).
        creation_date: When it was made.
        cluster_id: For an HSM store: the registered PKCS#11 token's id.
        trust_anchor: For an HSM store: the trust anchor certificate given.
        wrapped_password: For an HSM store: the token PIN, wrapped.
        xks_uri_endpoint: For an external store: ``https://host[:port]``.
        xks_uri_path: For an external store: ``[/prefix]/kms/xks/v1``.
        xks_connectivity: ``PUBLIC_ENDPOINT`` or ``VPC_ENDPOINT_SERVICE``.
        xks_vpc_service_name: The VPC endpoint service name, if any.
        xks_vpc_service_owner: The VPC endpoint service owner, if any.
        xks_access_key_id: The proxy credential's access key id.
        xks_wrapped_secret: The proxy credential's secret, wrapped.
        revision: Guards concurrent updates.
    """

    custom_key_store_id: str
    name: str
    store_type: str
    connection_state: ConnectionState
    creation_date: datetime
    connection_error_code: str | None = None
    cluster_id: str | None = None
    trust_anchor: str | None = None
    wrapped_password: bytes | None = None
    xks_uri_endpoint: str | None = None
    xks_uri_path: str | None = None
    xks_connectivity: str | None = None
    xks_vpc_service_name: str | None = None
    xks_vpc_service_owner: str | None = None
    xks_access_key_id: str | None = None
    xks_wrapped_secret: bytes | None = None
    revision: int = 0

    def replace(self, **changes: Any) -> CustomKeyStoreRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def connected(self) -> bool:
        """The store is CONNECTED."""
        return self.connection_state is ConnectionState.CONNECTED

    def describe(self) -> dict[str, Any]:
        """The ``CustomKeyStoresListEntry`` AWS returns for this store (no secrets)."""
        out: dict[str, Any] = {
            "CustomKeyStoreId": self.custom_key_store_id,
            "CustomKeyStoreName": self.name,
            "CustomKeyStoreType": self.store_type,
            "ConnectionState": self.connection_state.value,
            "CreationDate": self.creation_date,
        }
        if self.connection_state is ConnectionState.FAILED and self.connection_error_code:
            out["ConnectionErrorCode"] = self.connection_error_code
        if self.store_type == CLOUDHSM:
            out["CloudHsmClusterId"] = self.cluster_id
            if self.trust_anchor is not None:
                out["TrustAnchorCertificate"] = self.trust_anchor
        else:
            config: dict[str, Any] = {
                "Connectivity": self.xks_connectivity,
                "AccessKeyId": self.xks_access_key_id,
                "UriEndpoint": self.xks_uri_endpoint,
                "UriPath": self.xks_uri_path,
            }
            if self.xks_vpc_service_name is not None:
                config["VpcEndpointServiceName"] = self.xks_vpc_service_name
            if self.xks_vpc_service_owner is not None:
                config["VpcEndpointServiceOwner"] = self.xks_vpc_service_owner
            out["XksProxyConfiguration"] = config
        return out


def effective_state(key: KeyRecord, store: CustomKeyStoreRecord | None) -> KeyState:
    """The state a key shows: ``Unavailable`` while its custom key store is not connected.

    The stored state (Enabled or Disabled) is kept and comes back when the
    store connects again; a key pending deletion stays pending deletion.
    """
    if key.custom_key_store_id is None or key.state not in (KeyState.ENABLED, KeyState.DISABLED):
        return key.state
    if store is None or not store.connected:
        return KeyState.UNAVAILABLE
    return key.state
