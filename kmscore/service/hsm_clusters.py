"""PKCS#11 tokens registered as "clusters" an HSM key store can name.

AWS's ``CreateCustomKeyStore`` names a CloudHSM cluster by its id
(``cluster-`` and 11-16 base32 characters). kmscore's local form names a
PKCS#11 token instead: ``kms hsm register --module PATH --token-label LABEL``
(or :func:`register_cluster`) keeps the module path and token label in the
data dir's settings under a new id of AWS's shape, and that id is the
``CloudHsmClusterId`` of ``CreateCustomKeyStore``. Nothing secret is kept
here: the token's PIN is the store's ``KeyStorePassword``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Final

from kmscore.errors import CloudHsmClusterNotFoundException, ValidationException
from kmscore.store import KeyStore

__all__ = ["HsmCluster", "get_cluster", "register_cluster"]

_SETTING: Final = "pkcs11-cluster/"


@dataclass(frozen=True, slots=True)
class HsmCluster:
    """A registered PKCS#11 token.

    Attributes:
        cluster_id: Its id, of AWS's CloudHsmClusterId shape.
        module: The path of the PKCS#11 module (the vendor's ``.so``).
        token_label: The label of the token in that module.
        trust_anchor: The certificate CreateCustomKeyStore must be given, if
            one was registered.
    """

    cluster_id: str
    module: str
    token_label: str
    trust_anchor: str | None = None


def register_cluster(
    store: KeyStore, module: str, token_label: str, trust_anchor: str | None = None
) -> HsmCluster:
    """Register a PKCS#11 token under a new cluster id.

    Raises:
        ValidationException: the module path is not absolute or the label is
            empty or longer than PKCS#11's 32 bytes.
    """
    if not os.path.isabs(module):
        raise ValidationException(f"The PKCS#11 module path {module!r} must be absolute.")
    if not token_label or len(token_label.encode()) > 32:
        raise ValidationException("A token label is 1 to 32 bytes.")
    cluster_id = "cluster-" + base64.b32encode(os.urandom(10)).decode("ascii").lower()
    cluster = HsmCluster(cluster_id, module, token_label, trust_anchor)
    value = {"module": module, "token_label": token_label, "trust_anchor": trust_anchor}
    store.init_settings({_SETTING + cluster_id: json.dumps(value).encode()})
    return cluster


def get_cluster(store: KeyStore, cluster_id: str) -> HsmCluster:
    """The registered token a cluster id names.

    Raises:
        CloudHsmClusterNotFoundException: no token is registered under it.
    """
    raw = store.get_setting(_SETTING + cluster_id)
    if raw is None:
        raise CloudHsmClusterNotFoundException(
            f"No PKCS#11 token is registered as cluster {cluster_id} (kms hsm register)."
        )
    value = json.loads(raw)
    return HsmCluster(cluster_id, value["module"], value["token_label"], value.get("trust_anchor"))
