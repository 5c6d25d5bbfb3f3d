"""Rotation operations.

EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand
and ListKeyRotations.

Rotation appends a key material version; the old versions keep decrypting.
Automatic rotation happens when its date passes, checked at start-up and
periodically (:func:`kmscore.service.maintenance.run_maintenance`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from kmscore.errors import (
    InvalidMarkerException,
    KMSInvalidStateException,
    LimitExceededException,
    UnsupportedOperationException,
)
from kmscore.model.key import KeyRecord
from kmscore.model.validation import Integer, String
from kmscore.operations.common import KEY_ID, LIMIT, MARKER, page_args, page_result
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.rotation import ON_DEMAND, rotate, rotate_imported

DEFAULT_PERIOD: Final = 365
MIN_PERIOD: Final = 90
MAX_PERIOD: Final = 2560
#: AWS allows 25 on-demand rotations per key.
MAX_ON_DEMAND: Final = 25


def _rotatable(call: Call, ref: str, *, imported: bool = False, changes: bool = False) -> KeyRecord:
    """A symmetric encryption key that rotates.

    Automatic rotation is for AWS_KMS keys only; on-demand rotation (and its
    listing) also for EXTERNAL keys (``imported``), as AWS has it. A
    multi-Region replica rotates with its primary: it refuses ``changes``.
    """
    key = call.key(ref, allow_alias=False)
    if changes and key.is_replica:
        raise UnsupportedOperationException(
            f"{key.arn} is a multi-Region replica key: it rotates with its primary key "
            f"{key.related_arn(key.primary_region or key.region)}; change rotation there."
        )
    origins = ("AWS_KMS", "EXTERNAL") if imported else ("AWS_KMS",)
    if key.key_spec != "SYMMETRIC_DEFAULT" or key.origin not in origins:
        raise UnsupportedOperationException(
            f"{key.arn} cannot be rotated: only symmetric keys with "
            f"{' or '.join(origins)} origin rotate."
        )
    return key


@operation(
    "EnableKeyRotation",
    {"KeyId": KEY_ID, "RotationPeriodInDays": Integer(min_value=MIN_PERIOD, max_value=MAX_PERIOD)},
)
def enable_key_rotation(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """EnableKeyRotation: rotate every RotationPeriodInDays (90-2560, default 365)."""
    svc = call.service
    key = _rotatable(call, req["KeyId"], changes=True)
    period = req.get("RotationPeriodInDays", DEFAULT_PERIOD)
    call.authorize(key, conditions={"kms:RotationPeriodInDays": period})
    now = svc.clock()

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        return k.replace(
            rotation_enabled=True,
            rotation_period_days=period,
            next_rotation_date=now + timedelta(days=period),
        )

    svc.update_key(key, change)
    if key.multi_region:
        svc.note_replication(key.key_id)  # a shared property
    return {}


@operation("DisableKeyRotation", {"KeyId": KEY_ID})
def disable_key_rotation(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DisableKeyRotation."""
    svc = call.service
    key = _rotatable(call, req["KeyId"], changes=True)
    call.authorize(key)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        return k.replace(rotation_enabled=False, next_rotation_date=None)

    svc.update_key(key, change)
    if key.multi_region:
        svc.note_replication(key.key_id)
    return {}


@operation("GetKeyRotationStatus", {"KeyId": KEY_ID})
def get_key_rotation_status(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GetKeyRotationStatus."""
    key = _rotatable(call, req["KeyId"], imported=True)
    call.authorize(key)
    out: dict[str, Any] = {"KeyRotationEnabled": key.rotation_enabled, "KeyId": key.arn}
    if key.rotation_enabled:
        out["RotationPeriodInDays"] = key.rotation_period_days
        out["NextRotationDate"] = key.next_rotation_date
    if key.on_demand_rotation_start is not None:
        out["OnDemandRotationStartDate"] = key.on_demand_rotation_start
    return out


def _replicas_lacking(call: Call, key: KeyRecord, version: int) -> list[str]:
    """The Regions of replicas of ``key`` without imported key material ``version``."""
    lacking = []
    for region in key.replica_regions:
        there = call.service.related(region)
        held = there.store.get_material(key.key_id, version) if there is not None else None
        if held is None or held.import_state != "IMPORTED":
            lacking.append(region)
    return lacking


@operation("RotateKeyOnDemand", {"KeyId": KEY_ID})
def rotate_key_on_demand(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """RotateKeyOnDemand: a new material version now (at most 25 per key)."""
    svc = call.service
    key = _rotatable(call, req["KeyId"], imported=True, changes=True)
    call.authorize(key)
    materials = svc.store.list_materials(key.key_id)
    done = sum(1 for m in materials if m.rotation_type == ON_DEMAND)
    if done >= MAX_ON_DEMAND:
        raise LimitExceededException(
            f"{key.arn} has reached the limit of {MAX_ON_DEMAND} on-demand rotations."
        )
    if key.origin == "EXTERNAL":
        if key.multi_region:
            missing = _replicas_lacking(call, key, key.current_version + 1)
            if missing:
                raise KMSInvalidStateException(
                    f"The key material pending rotation of {key.arn} is not imported into "
                    f"its replica keys in {', '.join(missing)}: import the same key material "
                    "there (ImportType EXISTING_KEY_MATERIAL) before rotating."
                )
        rotate_imported(svc, key, materials)
        if key.multi_region:
            svc.note_replication(key.key_id)  # the replicas' current version follows
    else:
        rotate(svc, key, ON_DEMAND)
    return {"KeyId": key.arn}


@operation(
    "ListKeyRotations",
    {
        "KeyId": KEY_ID,
        "IncludeKeyMaterial": String(enum=("ALL_KEY_MATERIAL", "ROTATIONS_ONLY")),
        "Limit": LIMIT,
        "Marker": MARKER,
    },
)
def list_key_rotations(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListKeyRotations: completed rotations, oldest first, paged.

    With ``IncludeKeyMaterial=ALL_KEY_MATERIAL`` the initial material is
    listed too (without RotationDate/RotationType).
    """
    svc = call.service
    limit, after = page_args(req)
    # Our markers carry a material version; anything else is not ours (and
    # str.isdigit() alone admits digits such as '²' that int() refuses).
    if after is not None and not (after.isascii() and after.isdigit()):
        raise InvalidMarkerException("The marker is not valid.")
    key = _rotatable(call, req["KeyId"], imported=True)
    call.authorize(key)
    everything = req.get("IncludeKeyMaterial") == "ALL_KEY_MATERIAL"
    start = int(after) if after is not None else 0
    materials = [
        m
        for m in svc.store.list_materials(key.key_id)
        if m.version > start and (everything or m.rotation_type is not None)
    ]
    # New imported material of a primary waits for its replicas as well.
    waiting = (
        key.origin == "EXTERNAL"
        and key.is_primary
        and bool(_replicas_lacking(call, key, key.current_version + 1))
    )
    items = []
    for m in materials[: limit + 1]:
        item: dict[str, Any] = {
            "KeyId": key.key_id,
            "KeyMaterialId": m.material_id,
            "KeyMaterialState": (
                "CURRENT"
                if m.version == key.current_version
                else "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
                if m.version > key.current_version and waiting
                else "PENDING_ROTATION"
                if m.version > key.current_version
                else "NON_CURRENT"
            ),
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
        }
        if key.origin == "EXTERNAL":
            item["ImportState"] = m.import_state
            if m.description is not None:
                item["KeyMaterialDescription"] = m.description
            if m.expiration_model is not None:
                item["ExpirationModel"] = m.expiration_model
            else:
                del item["ExpirationModel"]
            if m.valid_to is not None:
                item["ValidTo"] = m.valid_to
        if m.rotation_type is not None:
            item["RotationDate"] = m.creation_date
            item["RotationType"] = m.rotation_type
        items.append(item)
    last = str(materials[limit - 1].version) if len(materials) > limit else None
    return page_result(items, limit, last, "Rotations")
