"""Making key material versions and rotating keys.

Rotation appends a material version and points the key at it; older versions
stay to decrypt what they encrypted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from kmscore.crypto.asymmetric import generate_private_key
from kmscore.errors import ConflictException, KMSInvalidStateException, NotFoundException
from kmscore.model.key import KeyMaterialRecord, KeyRecord

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = ["AUTOMATIC", "ON_DEMAND", "new_material", "rotate", "rotate_imported"]

AUTOMATIC: Final = "AUTOMATIC"
ON_DEMAND: Final = "ON_DEMAND"
_MATERIAL_LENGTH: Final = 32


def new_material(
    service: KeyService,
    key_id: str,
    version: int,
    now: datetime,
    rotation_type: str | None = None,
    key_spec: str = "SYMMETRIC_DEFAULT",
    raw: bytes | None = None,
) -> KeyMaterialRecord:
    """Fresh material for one version, wrapped under the root key.

    Random AES-256 material for SYMMETRIC_DEFAULT; for other key specs what
    :func:`kmscore.crypto.asymmetric.generate_private_key` makes (PKCS#8 DER private
    keys, raw HMAC keys). RSA_4096 can take a second, so a caller inside a
    store transaction passes ``raw``, made beforehand with that function.
    """
    if raw is None:
        if key_spec == "SYMMETRIC_DEFAULT":
            raw = os.urandom(_MATERIAL_LENGTH)
        else:
            raw = generate_private_key(key_spec)
    wrapped = service.root_key.wrap(raw, service.key_arn(key_id), version)
    del raw
    return KeyMaterialRecord(
        key_id=key_id,
        version=version,
        wrapped=wrapped,
        creation_date=now,
        material_id=os.urandom(32).hex(),
        rotation_type=rotation_type,
    )


def rotate(
    service: KeyService, key: KeyRecord, rotation_type: str, *, after_version: int | None = None
) -> KeyRecord:
    """Add a material version to ``key`` and make it current.

    Args:
        service: The key service.
        key: The key (any recent revision).
        rotation_type: ``AUTOMATIC`` or ``ON_DEMAND``.
        after_version: Rotate only if the current version is still this one
            (so processes racing to retire an exhausted version rotate once).

    Returns:
        The stored key.

    Raises:
        NotFoundException: the key was deleted meanwhile.
    """
    if key.is_replica:
        raise KMSInvalidStateException(
            f"{key.arn} is a multi-Region replica key; it rotates with its primary key."
        )
    for _ in range(20):
        if after_version is not None and key.current_version > after_version:
            return key
        now = service.clock()
        version = key.current_version + 1
        if key.custom_key_store_id is not None:
            # Material of an HSM store's key is made inside its token.
            material = service.custom_key_stores.new_material(
                key.custom_key_store_id, key.key_id, version, now, rotation_type
            )
        else:
            material = new_material(
                service, key.key_id, version, now, rotation_type, key_spec=key.key_spec
            )
        changes: dict[str, object] = {"current_version": version}
        if rotation_type == AUTOMATIC and key.rotation_enabled and key.rotation_period_days:
            changes["next_rotation_date"] = now + timedelta(days=key.rotation_period_days)
        try:
            stored = service.store.add_material(key.replace(**changes), material)
        except ConflictException:
            fresh = service.store.get_key(key.key_id)
            if fresh is None:
                raise NotFoundException(f"Key '{key.arn}' does not exist") from None
            key = fresh
            continue
        service.forget(key.key_id)
        if stored.multi_region:
            service.note_replication(stored.key_id)  # rotating the primary rotates replicas
        return stored
    raise ConflictException(f"Key {key.arn} is being rotated concurrently; retry.")


def rotate_imported(
    service: KeyService, key: KeyRecord, materials: Sequence[KeyMaterialRecord]
) -> KeyRecord:
    """Make the imported material pending rotation the current material of ``key``.

    Args:
        service: The key service.
        key: A symmetric key of EXTERNAL origin.
        materials: Its material versions.

    Returns:
        The stored key.

    Raises:
        KMSInvalidStateException: no new material has been imported
            (``ImportKeyMaterial`` with ``ImportType=NEW_KEY_MATERIAL``).
        ConflictException: the key changed meanwhile.
    """
    pending = next((m for m in materials if m.version == key.current_version + 1), None)
    if pending is None or pending.import_state != "IMPORTED":
        raise KMSInvalidStateException(
            f"{key.arn} has no imported key material pending rotation: import new key "
            "material (ImportType NEW_KEY_MATERIAL) before rotating on demand."
        )
    now = service.clock()
    rotated = dataclasses.replace(pending, rotation_type=ON_DEMAND, creation_date=now)
    changed = key.replace(
        current_version=pending.version, expiration_model=pending.expiration_model
    )
    stored = service.store.put_material(changed, rotated)
    service.forget(key.key_id)
    return stored
