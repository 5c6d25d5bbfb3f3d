"""A multi-Region key as peered deployments exchange it: its view and its sealed material.

A view is a key's multi-Region configuration (primary, replicas, epoch) and
its shared properties (:func:`key_view`). Material travels only sealed to the
receiving deployment's transport key and bound to the destination key's ARN,
version and material id (:func:`seal_materials`, :func:`open_materials`), and
is wrapped under the receiver's own root key at once. :func:`apply_view` is the
one rule by which a related key's view changes a key: the newer configuration
wins, and only the primary's view brings material and shared properties.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kmscore.crypto.sealing import PeerIdentity, seal
from kmscore.model.key import KeyMaterialRecord, KeyRecord, from_epoch, to_epoch
from kmscore.model.keystate import KeyState
from kmscore.service.peer_channel import b64

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = ["apply_view", "key_view", "open_materials", "seal_materials", "shared_from_view"]


def key_view(key: KeyRecord) -> dict[str, Any]:
    """A multi-Region key's configuration and shared properties, as peers exchange them."""
    return {
        "KeyId": key.key_id,
        "Account": key.account,
        "Region": key.region,
        "PrimaryRegion": key.primary_region or key.region,
        "Replicas": list(key.replica_regions),
        "Epoch": key.multi_region_epoch,
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
        "Origin": key.origin,
        "CurrentVersion": key.current_version,
        "RotationEnabled": key.rotation_enabled,
        "RotationPeriodInDays": key.rotation_period_days,
        "NextRotationDate": None
        if key.next_rotation_date is None
        else to_epoch(key.next_rotation_date),
        "OnDemandRotationStart": None
        if key.on_demand_rotation_start is None
        else to_epoch(key.on_demand_rotation_start),
        "State": key.state.value,
    }


def shared_from_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """The shared (rotation) properties of a view, as :class:`KeyRecord` fields."""
    return {
        "rotation_enabled": bool(view["RotationEnabled"]),
        "rotation_period_days": view.get("RotationPeriodInDays"),
        "next_rotation_date": None
        if view.get("NextRotationDate") is None
        else from_epoch(float(view["NextRotationDate"])),
        "on_demand_rotation_start": None
        if view.get("OnDemandRotationStart") is None
        else from_epoch(float(view["OnDemandRotationStart"])),
    }


def _material_aad(arn: str, version: int, material_id: str) -> bytes:
    return f"{arn}\n{version}\n{material_id}".encode()


def seal_materials(
    svc: KeyService, key: KeyRecord, transport_pub: bytes, region: str
) -> list[dict[str, Any]]:
    """Every material version of ``key``, sealed to ``transport_pub`` for its key in ``region``."""
    dest_arn = key.related_arn(region)
    out = []
    for m in svc.store.list_materials(key.key_id):
        raw = svc.root_key.unwrap(m.wrapped, key.arn, m.version)
        try:
            sealed = seal(transport_pub, raw, _material_aad(dest_arn, m.version, m.material_id))
        finally:
            del raw
        out.append(
            {
                "Version": m.version,
                "MaterialId": m.material_id,
                "CreationDate": to_epoch(m.creation_date),
                "RotationType": m.rotation_type,
                "Sealed": b64(sealed),
            }
        )
    return out


def open_materials(
    identity: PeerIdentity, svc: KeyService, arn: str, items: list[Any]
) -> list[KeyMaterialRecord]:
    """Sealed material versions for ``arn``, opened and wrapped under ``svc``'s root key.

    Raises:
        InvalidCiphertextException: an item is not sealed to ``identity`` for ``arn``.
        KeyError, ValueError: a malformed item (the receiver answers ValidationException).
    """
    out = []
    for item in items:
        version = int(item["Version"])
        material_id = str(item["MaterialId"])
        raw = identity.open(
            base64.b64decode(item["Sealed"]), _material_aad(arn, version, material_id)
        )
        try:
            wrapped = svc.root_key.wrap(raw, arn, version)
        finally:
            del raw
        out.append(
            KeyMaterialRecord(
                key_id=arn.rsplit("/", 1)[1],
                version=version,
                wrapped=wrapped,
                creation_date=from_epoch(float(item["CreationDate"])),
                material_id=material_id,
                rotation_type=item.get("RotationType"),
            )
        )
    return sorted(out, key=lambda m: m.version)


def apply_view(
    identity: PeerIdentity,
    svc: KeyService,
    key: KeyRecord,
    view: Mapping[str, Any],
    materials: list[Any],
) -> list[str]:
    """Apply a peer's view of a related key to ``key`` where it is newer.

    The newer configuration (higher epoch) wins. When the view comes from the
    primary (by the winning configuration), its missing material versions and
    shared properties are taken, and a replica still Creating that the
    primary lists becomes Enabled.

    Returns:
        What was applied, in words.
    """
    applied: list[str] = []
    epoch = int(view["Epoch"])
    # A replica still Creating only proposes its configuration: it decides nothing.
    newer = epoch > key.multi_region_epoch and view.get("State") != KeyState.CREATING.value
    primary_region = str(view["PrimaryRegion"]) if newer else (key.primary_region or key.region)
    replicas = tuple(view["Replicas"]) if newer else key.replica_regions
    from_primary = str(view["Region"]) == primary_region and epoch >= key.multi_region_epoch
    if from_primary and materials:
        have = {m.version for m in svc.store.list_materials(key.key_id)}
        missing = [m for m in materials if int(m["Version"]) not in have]
        for material in open_materials(identity, svc, key.arn, missing):
            svc.store.put_material(svc.store.get_key(key.key_id) or key, material)
            applied.append(f"{svc.region}: key material version {material.version}")
        svc.forget(key.key_id)

    def change(k: KeyRecord) -> KeyRecord:
        out = k
        if newer:
            out = out.replace(
                primary_region=primary_region, replica_regions=replicas, multi_region_epoch=epoch
            )
        if from_primary:
            out = out.replace(current_version=int(view["CurrentVersion"]), **shared_from_view(view))
            if out.state is KeyState.CREATING and svc.region in replicas:
                out = out.replace(state=KeyState.ENABLED)
        return out

    fresh = svc.store.get_key(key.key_id) or key
    wanted = change(fresh)
    if wanted != fresh:
        if newer:
            role = "primary" if primary_region == svc.region else f"replica of {primary_region}"
            applied.append(f"{svc.region}: configuration epoch {epoch} ({role})")
        if fresh.state is KeyState.CREATING and wanted.state is KeyState.ENABLED:
            applied.append(f"{svc.region}: replica ready")
        if fresh.current_version != wanted.current_version:
            applied.append(f"{svc.region}: current version {wanted.current_version}")
        svc.update_key(fresh, change)
    return applied
