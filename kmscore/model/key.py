"""KMS keys and their key material versions, as the service keeps them.

A key has versions of key material: rotation appends a version, encryption
uses the newest (``current_version``), decryption uses the version named in
the blob. Versions are never deleted while the key exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kmscore.model.keyspecs import algorithms_for
from kmscore.model.keystate import KeyState

__all__ = [
    "AliasRecord",
    "KeyMaterialRecord",
    "KeyRecord",
    "from_epoch",
    "to_epoch",
    "utcnow",
]

#: Algorithms DescribeKey lists for a SYMMETRIC_DEFAULT key.
SYMMETRIC_ALGORITHMS = ("SYMMETRIC_DEFAULT",)

#: Key specs newer than the deprecated CustomerMasterKeySpec: AWS leaves that
#: member out for them (its enum does not name them).
_NO_CMK_SPEC = frozenset(
    {
        "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519",
        "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024",
    }
)  # fmt: skip


def algorithm_fields(key_spec: str, key_usage: str) -> dict[str, list[str]]:
    """The algorithm lists of ``DescribeKey`` and ``GetPublicKey`` for a key."""
    if key_spec == "SYMMETRIC_DEFAULT":
        return {"EncryptionAlgorithms": list(SYMMETRIC_ALGORITHMS)}
    return algorithms_for(key_spec, key_usage).describe_key_fields()


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_epoch(when: datetime) -> float:
    """Seconds since the epoch, as the store and the wire keep times."""
    return when.timestamp()


def from_epoch(seconds: float) -> datetime:
    """A timezone-aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The metadata of one KMS key. ``revision`` guards concurrent updates."""

    key_id: str
    arn: str
    account: str
    creation_date: datetime
    description: str
    key_usage: str
    key_spec: str
    origin: str
    state: KeyState
    current_version: int
    multi_region: bool = False
    deletion_date: datetime | None = None
    pending_window_days: int | None = None
    rotation_enabled: bool = False
    rotation_period_days: int | None = None
    next_rotation_date: datetime | None = None
    on_demand_rotation_start: datetime | None = None
    policy: str | None = None
    revision: int = 0
    #: For an EXTERNAL key: the ``ExpirationModel`` of its current material.
    expiration_model: str | None = None
    #: For an EXTERNAL key: when the first of its imported materials expires.
    valid_to: datetime | None = None
    #: For a multi-Region key: the Region of its primary key (this key's own
    #: Region when it is the primary), and the Regions of the replicas.
    primary_region: str | None = None
    replica_regions: tuple[str, ...] = ()
    #: Moves with every change of the primary or the replicas: of two views
    #: of one multi-Region key's configuration, the higher epoch is newer.
    multi_region_epoch: int = 0
    #: For a key in a custom key store: the store's id.
    custom_key_store_id: str | None = None
    #: For a key in an external key store: the external key's id at the proxy.
    xks_key_id: str | None = None
    #: For a key in an HSM store: the store's cluster id (DescribeKey shows it).
    cloud_hsm_cluster_id: str | None = None

    @property
    def region(self) -> str:
        """The Region this key's ARN names."""
        return self.arn.split(":", 5)[3]

    @property
    def is_primary(self) -> bool:
        """A multi-Region primary key (False for a replica or a single-Region key)."""
        return self.multi_region and self.primary_region == self.region

    @property
    def is_replica(self) -> bool:
        """A multi-Region replica key."""
        return self.multi_region and self.primary_region not in (None, self.region)

    def related_arn(self, region: str) -> str:
        """The ARN of the related multi-Region key in ``region``."""
        parts = self.arn.split(":", 5)
        parts[3] = region
        return ":".join(parts)

    def multi_region_configuration(self) -> dict[str, Any]:
        """DescribeKey's ``MultiRegionConfiguration`` of a multi-Region key."""
        primary = self.primary_region or self.region
        return {
            "MultiRegionKeyType": "PRIMARY" if primary == self.region else "REPLICA",
            "PrimaryKey": {"Arn": self.related_arn(primary), "Region": primary},
            "ReplicaKeys": [
                {"Arn": self.related_arn(r), "Region": r} for r in self.replica_regions
            ],
        }

    def replace(self, **changes: Any) -> KeyRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def metadata(self, current_material_id: str | None = None) -> dict[str, Any]:
        """The ``KeyMetadata`` structure AWS returns for this key."""
        md: dict[str, Any] = {
            "AWSAccountId": self.account,
            "KeyId": self.key_id,
            "Arn": self.arn,
            "CreationDate": self.creation_date,
            "Enabled": self.state is KeyState.ENABLED,
            "Description": self.description,
            "KeyUsage": self.key_usage,
            "KeyState": self.state.value,
            "Origin": self.origin,
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": self.key_spec,
            "KeySpec": self.key_spec,
            "MultiRegion": self.multi_region,
        }
        if self.key_spec in _NO_CMK_SPEC:
            del md["CustomerMasterKeySpec"]
        md.update(algorithm_fields(self.key_spec, self.key_usage))
        if self.deletion_date is not None:
            md["DeletionDate"] = self.deletion_date
        if self.state is KeyState.PENDING_DELETION and self.pending_window_days is not None:
            md["PendingDeletionWindowInDays"] = self.pending_window_days
        if self.multi_region:
            md["MultiRegionConfiguration"] = self.multi_region_configuration()
        if current_material_id is not None:
            md["CurrentKeyMaterialId"] = current_material_id
        if self.expiration_model is not None:
            md["ExpirationModel"] = self.expiration_model
        if self.valid_to is not None:
            md["ValidTo"] = self.valid_to
        if self.custom_key_store_id is not None:
            md["CustomKeyStoreId"] = self.custom_key_store_id
        if self.cloud_hsm_cluster_id is not None:
            md["CloudHsmClusterId"] = self.cloud_hsm_cluster_id
        if self.xks_key_id is not None:
            md["XksKeyConfiguration"] = {"Id": self.xks_key_id}
        return md


@dataclass(frozen=True, slots=True)
class KeyMaterialRecord:
    """One version of a key's material, wrapped under the root key.

    ``reserved`` counts the AES-GCM invocations reserved for this version so
    far; it only grows, so a crash can never reuse a count.

    Imported material (a key of EXTERNAL origin) also has an ``import_state``
    (``IMPORTED``, or ``PENDING_IMPORT`` once deleted or expired, when
    ``wrapped`` is empty), an expiration model, a ``valid_to`` and the
    caller's description. For imported material ``material_id`` is a keyed
    digest of the key and the material, so the same material can be
    recognised when it is imported again.
    """

    key_id: str
    version: int
    wrapped: bytes
    creation_date: datetime
    material_id: str
    rotation_type: str | None = None
    reserved: int = 0
    import_state: str | None = None
    expiration_model: str | None = None
    valid_to: datetime | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """An alias name and the key it points to."""

    alias_name: str
    key_id: str
    creation_date: datetime
    last_updated_date: datetime
