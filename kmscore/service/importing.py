"""Imported key material in the service: its state, expiry and removal.

A key of ``EXTERNAL`` origin starts with no material (``PendingImport``). Each
import stores a material version (wrapped under the root key, like all
material) with its import state, expiration model and ``ValidTo``. The key is
usable only while every material version up to its current one is imported;
deleting or expiring any of them returns it to ``PendingImport`` (a key
pending deletion stays so). A version above the current one is new material
imported for on-demand rotation (``PENDING_ROTATION``).

Expiry is checked whenever the service reads a key (as the deletion window
is, :meth:`KeyService.get_key`) and by periodic maintenance, against the
service's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from kmscore.errors import ConflictException, NotFoundException
from kmscore.model.key import KeyMaterialRecord, KeyRecord
from kmscore.model.keystate import KeyState

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = [
    "DOES_NOT_EXPIRE",
    "EXPIRES",
    "IMPORTED",
    "PENDING_IMPORT",
    "delete_material",
    "expire_imported",
    "remove_material",
    "summarize",
]

IMPORTED: Final = "IMPORTED"
PENDING_IMPORT: Final = "PENDING_IMPORT"
EXPIRES: Final = "KEY_MATERIAL_EXPIRES"
DOES_NOT_EXPIRE: Final = "KEY_MATERIAL_DOES_NOT_EXPIRE"


def summarize(key: KeyRecord, materials: Sequence[KeyMaterialRecord]) -> KeyRecord:
    """The key with its import facts recomputed from its materials.

    ``ValidTo`` is the first expiry among its imported versions, the
    expiration model that of its current version, and the state Enabled or
    PendingImport by whether every version up to the current one is imported
    (a Disabled key stays Disabled while usable, a key pending deletion stays
    pending deletion).
    """
    imported = [m for m in materials if m.import_state == IMPORTED]
    expiries = [m.valid_to for m in imported if m.valid_to is not None]
    current = next((m for m in materials if m.version == key.current_version), None)
    complete = current is not None and all(
        m.import_state == IMPORTED for m in materials if m.version <= key.current_version
    )
    state = key.state
    if state is not KeyState.PENDING_DELETION:
        if not complete:
            state = KeyState.PENDING_IMPORT
        elif state is KeyState.PENDING_IMPORT:
            state = KeyState.ENABLED
    return key.replace(
        state=state,
        valid_to=min(expiries) if expiries else None,
        expiration_model=(
            current.expiration_model
            if current is not None and current.import_state == IMPORTED
            else None
        ),
    )


def remove_material(material: KeyMaterialRecord) -> KeyMaterialRecord:
    """The version with its material gone: PENDING_IMPORT, nothing wrapped."""
    return KeyMaterialRecord(
        key_id=material.key_id,
        version=material.version,
        wrapped=b"",
        creation_date=material.creation_date,
        material_id=material.material_id,
        rotation_type=material.rotation_type,
        reserved=material.reserved,
        import_state=PENDING_IMPORT,
        expiration_model=None,
        valid_to=None,
        description=material.description,
    )


def delete_material(
    service: KeyService,
    key: KeyRecord,
    materials: Sequence[KeyMaterialRecord],
    target: KeyMaterialRecord,
) -> KeyRecord:
    """Wipe one imported material version of ``key`` (its id stays) and store the key.

    Returns:
        The stored key (PendingImport when it lost material it needs).

    Raises:
        ConflictException: the key changed meanwhile.
    """
    removed = remove_material(target)
    changed = summarize(key, [removed if m.version == target.version else m for m in materials])
    stored = service.store.put_material(changed, removed)
    service.forget(key.key_id)
    return stored


def _record_expiry(
    service: KeyService, key: KeyRecord, expired: Sequence[KeyMaterialRecord], now: datetime
) -> None:
    """One ``DeleteExpiredKeyMaterial`` service event per expired material, as AWS writes."""
    record = getattr(service.auditor, "record_service_event", None)
    if record is None:  # an auditor that records nothing (tests, NullAuditor)
        return
    for m in expired:
        record(
            "DeleteExpiredKeyMaterial",
            region=service.region,
            account=service.account,
            key_arn=key.arn,
            when=now,
            additional_event_data={"keyMaterialId": m.material_id},
        )


def expire_imported(service: KeyService, key: KeyRecord, now: datetime) -> KeyRecord:
    """Delete the imported material of ``key`` whose ``ValidTo`` has passed.

    Returns:
        The stored key (PendingImport when it lost material it needs).
    """
    for _ in range(20):
        materials = service.store.list_materials(key.key_id)
        expired = [
            m
            for m in materials
            if m.import_state == IMPORTED and m.valid_to is not None and m.valid_to <= now
        ]
        if not expired:
            return key
        kept = [remove_material(m) if m in expired else m for m in materials]
        changed = summarize(key, kept)
        try:
            with service.store.transaction():
                for m in expired:
                    changed = service.store.put_material(changed, remove_material(m))
                # Inside the transaction: a record that cannot be written undoes
                # the deletion (fail closed), as for every call.
                _record_expiry(service, key, expired, now)
        except ConflictException:
            fresh = service.store.get_key(key.key_id)
            if fresh is None:
                raise NotFoundException(f"Key '{key.arn}' does not exist") from None
            key = fresh
            continue
        finally:
            service.forget(key.key_id)
        return changed
    raise ConflictException(f"Key {key.arn} is changing too fast; retry.")
