"""Custom key stores in use: their records, connections and key material.

Each :class:`~kmscore.service.key_service.KeyService` has one
:class:`CustomKeyStores`. It caches the stores' records (dropped with the
other caches when another process changes the store), keeps this process's
open token sessions, and makes and uses the material of keys in HSM stores.

The connection state is the store's (``CONNECTED`` in the key store); the
session is this process's. A process that finds a store connected but has no
session of its own (it started later, or another process connected the
store) logs in on first use with the PIN kept wrapped under the root key.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Final

from kmscore.crypto.pkcs11_token import (
    TokenAead,
    TokenConnectError,
    TokenConnection,
    TokenUnavailableError,
    token_key_label,
)
from kmscore.engine import AesGcmKey
from kmscore.errors import (
    CloudHsmClusterNotFoundException,
    CustomKeyStoreNotFoundException,
    KMSInternalException,
)
from kmscore.model.custom_key_store import (
    CLOUDHSM,
    EXTERNAL_KEY_STORE,
    CustomKeyStoreRecord,
    effective_state,
)
from kmscore.model.key import KeyMaterialRecord, KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.service.hsm_clusters import get_cluster
from kmscore.service.xks_client import DEFAULT_TIMEOUT, ProxyConfig, XksAead, XksProxyClient

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = ["CustomKeyStores"]

_PIN_AAD: Final = b"kmscore/custom-key-store-password/v1\x00"
_XKS_SECRET_AAD: Final = b"kmscore/xks-proxy-secret/v1\x00"


class CustomKeyStores:
    """One service's custom key stores: records, sessions and material."""

    def __init__(self, service: KeyService) -> None:
        """Serve the custom key stores of ``service``'s store."""
        self._svc = service
        self._records: dict[str, CustomKeyStoreRecord | None] = {}
        self._conns: dict[str, TokenConnection] = {}
        self._lock = threading.Lock()
        #: External key stores: where to reach an endpoint's host instead of
        #: port 443 (a proxy on another port, tests), the CA bundle that
        #: proxies' certificates chain to (default: the system's, or
        #: ``$KMS_XKS_CA_FILE``), and how long a proxy may take.
        self.xks_addresses: dict[str, tuple[str, int]] = {}
        self.xks_ca_file: str | None = os.environ.get("KMS_XKS_CA_FILE") or None
        self.xks_timeout: float = DEFAULT_TIMEOUT

    # --- records -------------------------------------------------------------------

    def get(self, custom_key_store_id: str) -> CustomKeyStoreRecord | None:
        """A store's record, through the cache; None if there is no such store."""
        try:
            return self._records[custom_key_store_id]
        except KeyError:
            record = self._svc.store.get_custom_key_store(custom_key_store_id)
            self._records[custom_key_store_id] = record
            return record

    def require(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        """A store's record.

        Raises:
            CustomKeyStoreNotFoundException: there is no such store.
        """
        record = self.get(custom_key_store_id)
        if record is None:
            raise CustomKeyStoreNotFoundException(
                f"Custom key store {custom_key_store_id} does not exist."
            )
        return record

    def forget(self) -> None:
        """Drop the cached records (another process changed the store)."""
        self._records.clear()

    def stored(self, record: CustomKeyStoreRecord | None, custom_key_store_id: str) -> None:
        """Note that this process just wrote (or deleted) a store's record.

        The cached record is dropped rather than replaced, so a write whose
        transaction rolls back leaves nothing wrong in the cache.
        """
        del record
        self._records.pop(custom_key_store_id, None)
        # Keys' states follow their store's: cached versions and decisions go.
        self._svc.keyring.clear()

    def key_state(self, key: KeyRecord) -> KeyState:
        """The state ``key`` shows: Unavailable while its store is not connected."""
        if key.custom_key_store_id is None:
            return key.state
        return effective_state(key, self.get(key.custom_key_store_id))

    # --- secrets -------------------------------------------------------------------

    def wrap_password(self, custom_key_store_id: str, password: str) -> bytes:
        """The KeyStorePassword sealed under the root key, bound to its store."""
        return self._svc.root_key.wrap_secret(
            password.encode(), _PIN_AAD + custom_key_store_id.encode()
        )

    def wrap_xks_secret(self, custom_key_store_id: str, secret: str) -> bytes:
        """A proxy credential's secret sealed under the root key, bound to its store."""
        return self._svc.root_key.wrap_secret(
            secret.encode(), _XKS_SECRET_AAD + custom_key_store_id.encode()
        )

    def proxy_client(
        self,
        record: CustomKeyStoreRecord,
        *,
        uri_endpoint: str | None = None,
        uri_path: str | None = None,
        access_key_id: str | None = None,
        secret: str | None = None,
    ) -> XksProxyClient:
        """A client of an external key store's proxy (or of one a request proposes)."""
        endpoint = uri_endpoint or record.xks_uri_endpoint or ""
        if secret is None:
            if record.xks_wrapped_secret is None:
                raise KMSInternalException(f"{record.custom_key_store_id} has no credential.")
            secret = self._svc.root_key.unwrap_secret(
                record.xks_wrapped_secret,
                _XKS_SECRET_AAD + record.custom_key_store_id.encode(),
            ).decode()
        return XksProxyClient(
            ProxyConfig(
                uri_endpoint=endpoint,
                uri_path=uri_path or record.xks_uri_path or "",
                access_key_id=access_key_id or record.xks_access_key_id or "",
                secret=secret,
                region=self._svc.region,
                address=self.xks_addresses.get(endpoint.removeprefix("https://")),
                ca_file=self.xks_ca_file,
                timeout=self.xks_timeout,
            )
        )

    def _password(self, record: CustomKeyStoreRecord) -> str:
        if record.wrapped_password is None:
            raise KMSInternalException(f"{record.custom_key_store_id} has no password.")
        return self._svc.root_key.unwrap_secret(
            record.wrapped_password, _PIN_AAD + record.custom_key_store_id.encode()
        ).decode()

    # --- connections ---------------------------------------------------------------

    def open_connection(self, record: CustomKeyStoreRecord) -> TokenConnection:
        """Log in to the store's token now (replacing this process's session).

        Raises:
            TokenConnectError: the token refuses, with AWS's ConnectionErrorCode.
        """
        if record.store_type != CLOUDHSM or record.cluster_id is None:
            raise TokenConnectError("INTERNAL_ERROR", "Not an HSM key store.")
        try:
            cluster = get_cluster(self._svc.store, record.cluster_id)
        except CloudHsmClusterNotFoundException:
            raise TokenConnectError(
                "CLUSTER_NOT_FOUND", f"The cluster {record.cluster_id} is not registered."
            ) from None
        conn = TokenConnection(cluster.module, cluster.token_label, self._password(record))
        with self._lock:
            old = self._conns.pop(record.custom_key_store_id, None)
            self._conns[record.custom_key_store_id] = conn
        if old is not None:
            old.close()
        return conn

    def close_connection(self, custom_key_store_id: str) -> None:
        """Log out of the store's token in this process (if logged in)."""
        with self._lock:
            conn = self._conns.pop(custom_key_store_id, None)
        if conn is not None:
            conn.close()

    def connection(self, custom_key_store_id: str) -> TokenConnection:
        """This process's session on a connected store's token, opened on first use.

        Raises:
            TokenUnavailableError: the store is not connected, or its token
                refuses the session.
        """
        record = self.get(custom_key_store_id)
        if record is None or not record.connected:
            raise TokenUnavailableError(
                f"The custom key store {custom_key_store_id} is not connected."
            )
        conn = self._conns.get(custom_key_store_id)
        if conn is not None and not conn.closed:
            return conn
        try:
            return self.open_connection(record)
        except TokenConnectError as exc:
            raise TokenUnavailableError(
                f"The custom key store {custom_key_store_id} cannot reach its token ({exc.code})."
            ) from None

    def close(self) -> None:
        """Log out of every token (the service is closing)."""
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()

    # --- material ------------------------------------------------------------------

    def aead(self, key: KeyRecord, material: KeyMaterialRecord) -> TokenAead | XksAead:
        """The AEAD of a key version in a custom key store (the keyring's hook).

        An HSM store's token does the AES-GCM; an external key store's key
        has both layers, its own material and the proxy's external key.
        """
        store_id = key.custom_key_store_id
        assert store_id is not None
        record = self.get(store_id)
        if record is not None and record.store_type == EXTERNAL_KEY_STORE:
            raw = self._svc.root_key.unwrap(material.wrapped, key.arn, material.version)
            inner = AesGcmKey(raw)
            del raw
            return XksAead(inner, self.proxy_client(record), key.xks_key_id or "", key.arn)
        label = material.wrapped.decode()
        return TokenAead(lambda: self.connection(store_id), label)

    def new_material(
        self,
        custom_key_store_id: str,
        key_id: str,
        version: int,
        now: datetime,
        rotation_type: str | None = None,
    ) -> KeyMaterialRecord:
        """Make a key version's material inside the store's token.

        The material record holds the token key's label, not key material.

        Raises:
            TokenUnavailableError: the store is not connected or its token fails.
        """
        label = token_key_label(key_id, version)
        self.connection(custom_key_store_id).generate_key(label)
        return KeyMaterialRecord(
            key_id=key_id,
            version=version,
            wrapped=label.encode(),
            creation_date=now,
            material_id=os.urandom(32).hex(),
            rotation_type=rotation_type,
        )

    def destroy_material(self, key: KeyRecord, materials: list[KeyMaterialRecord]) -> None:
        """Destroy a deleted key's material in its token, when the token is reachable.

        A store that is not connected keeps the objects; ``kms hsm`` tools (or
        the token's own) can remove them later. AWS does the same.
        """
        if key.custom_key_store_id is None:
            return
        try:
            conn = self.connection(key.custom_key_store_id)
        except TokenUnavailableError:
            return
        for material in materials:
            conn.destroy_key(material.wrapped.decode())
