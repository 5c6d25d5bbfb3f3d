"""Importing key material: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial.

The flow, as AWS KMS has it: ``CreateKey`` with ``Origin=EXTERNAL`` makes a
key with no material (PendingImport); ``GetParametersForImport`` returns an
RSA wrapping public key and an import token, valid 24 hours and usable once;
the caller wraps its material under the public key and sends it with the token
to ``ImportKeyMaterial``. See :mod:`kmscore.crypto.importing` for the wrapping
and :mod:`kmscore.service.importing` for states and expiry.

Symmetric encryption keys may hold several imported materials (each new one
imported with ``ImportType=NEW_KEY_MATERIAL`` waits, PENDING_ROTATION, until
``RotateKeyOnDemand`` makes it current); HMAC and asymmetric keys hold one,
which may only be imported again, never replaced.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any, Final

from kmscore.crypto.asymmetric import LoadedKey
from kmscore.crypto.importing import (
    MAX_TOKEN,
    WRAPPING_ALGORITHMS,
    new_import_parameters,
    open_import_token,
    unwrap_key_material,
)
from kmscore.errors import (
    ExpiredImportTokenException,
    IncorrectKeyMaterialException,
    InvalidImportTokenException,
    KMSError,
    KMSInvalidStateException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.key import KeyMaterialRecord, KeyRecord
from kmscore.model.validation import Blob, String, Timestamp
from kmscore.operations.common import KEY_ID
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.importing import (
    DOES_NOT_EXPIRE,
    EXPIRES,
    IMPORTED,
    PENDING_IMPORT,
    delete_material,
    summarize,
)

#: A wrapping public key and import token are valid this long.
PARAMETERS_LIFETIME: Final = timedelta(hours=24)
#: ValidTo may be at most this far ahead.
MAX_VALID_TO: Final = timedelta(days=365)
#: The lengths AWS accepts for imported HMAC key material, in bytes.
HMAC_LENGTHS: Final = {
    "HMAC_224": (28, 64),
    "HMAC_256": (32, 64),
    "HMAC_384": (48, 128),
    "HMAC_512": (64, 128),
}
#: Key specs whose material kmscore imports (AWS's list, less SM2, which is
#: for its China Regions only, and the specs it documents no import for).
IMPORTABLE_SPECS: Final = frozenset(
    {
        "SYMMETRIC_DEFAULT",
        *HMAC_LENGTHS,
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
    }
)
_SYMMETRIC_LENGTH: Final = 32
_MATERIAL_ID: Final = String(min_len=64, max_len=64, pattern=r"^[a-f0-9]+$")
_NEW: Final = "NEW_KEY_MATERIAL"
_EXISTING: Final = "EXISTING_KEY_MATERIAL"


def _external(call: Call, ref: str) -> KeyRecord:
    key = call.key(ref, allow_alias=False)
    if key.origin != "EXTERNAL":
        raise UnsupportedOperationException(
            f"{key.arn} origin is {key.origin} which is not valid for this operation."
        )
    return key


def material_id(call: Call, key: KeyRecord, raw: bytes) -> str:
    """The KeyMaterialId of imported material: a keyed digest of key and material.

    Related multi-Region keys share it (their key id and account, not their
    ARNs, go in), so a replica recognises the material of its primary by the
    id alone; the Regions of one deployment share the digest key.
    """
    if key.multi_region:
        who = f"{key.account}/{key.key_id}".encode()
        return call.service.root_key.digest(
            b"KeyMaterialId/multi-Region", who + b"\x00" + raw
        ).hex()
    return _arn_material_id(call, key, raw)


def _arn_material_id(call: Call, key: KeyRecord, raw: bytes) -> str:
    return call.service.root_key.digest(b"KeyMaterialId", key.arn.encode() + b"\x00" + raw).hex()


def _primary_materials(call: Call, key: KeyRecord) -> list[KeyMaterialRecord]:
    """The material versions of the primary key of the replica ``key`` (ids, never material).

    Raises:
        UnsupportedOperationException: the primary is not in this deployment.
        KMSInvalidStateException: the primary has no key material yet.
    """
    region = key.primary_region or key.region
    there = call.service.related(region)
    if there is None:
        raise UnsupportedOperationException(
            f"The primary key of {key.arn} is not in a Region of this deployment; kmscore "
            "imports key material into replicas of primary keys in this deployment only."
        )
    materials = there.store.list_materials(key.key_id)
    if not materials:
        raise KMSInvalidStateException(
            f"The primary key {key.related_arn(region)} has no key material yet: "
            "import the key material into the primary key first."
        )
    return materials


@operation(
    "GetParametersForImport",
    {
        "KeyId": KEY_ID,
        "WrappingAlgorithm": String(
            required=True,
            enum=(
                "RSAES_PKCS1_V1_5",
                "RSAES_OAEP_SHA_1",
                "RSAES_OAEP_SHA_256",
                "RSA_AES_KEY_WRAP_SHA_1",
                "RSA_AES_KEY_WRAP_SHA_256",
                "SM2PKE",
            ),
        ),
        "WrappingKeySpec": String(required=True, enum=("RSA_2048", "RSA_3072", "RSA_4096", "SM2")),
    },
)
def get_parameters_for_import(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GetParametersForImport: a fresh RSA wrapping key and its one-use import token."""
    svc = call.service
    key = _external(call, req["KeyId"])
    algorithm, spec = req["WrappingAlgorithm"], req["WrappingKeySpec"]
    call.authorize(
        key, conditions={"kms:WrappingAlgorithm": algorithm, "kms:WrappingKeySpec": spec}
    )
    if algorithm not in WRAPPING_ALGORITHMS:
        raise UnsupportedOperationException(
            f"WrappingAlgorithm {algorithm} is not supported"
            + (
                " (deprecated by AWS KMS since October 2023)."
                if algorithm == "RSAES_PKCS1_V1_5"
                else "."
            )
        )
    valid_to = (svc.clock() + PARAMETERS_LIFETIME).replace(microsecond=0)
    public, token = new_import_parameters(
        svc.root_key, key.arn, spec, algorithm, int(valid_to.timestamp())
    )
    return {
        "KeyId": key.arn,
        "ImportToken": token,
        "PublicKey": public,
        "ParametersValidTo": valid_to,
    }


def _check_expiry(call: Call, req: dict[str, Any]) -> tuple[str, Any]:
    model = req.get("ExpirationModel", EXPIRES)
    valid_to = req.get("ValidTo")
    if model == EXPIRES:
        if valid_to is None:
            raise ValidationException(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
            )
        now = call.service.clock()
        if valid_to <= now:
            raise ValidationException("ValidTo must be in the future.")
        if valid_to > now + MAX_VALID_TO:
            raise ValidationException("ValidTo must be at most 365 days from now.")
    elif valid_to is not None:
        raise ValidationException(
            "ValidTo cannot be set when the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    return model, valid_to


def _check_material(key: KeyRecord, raw: bytes) -> None:
    """Refuse material that cannot be this key's.

    Raises:
        IncorrectKeyMaterialException: wrong length, or not a private key of
            the key's spec.
    """
    spec = key.key_spec
    if spec == "SYMMETRIC_DEFAULT":
        if len(raw) != _SYMMETRIC_LENGTH:
            raise IncorrectKeyMaterialException(
                "Symmetric key material must be 256 bits (32 bytes)."
            )
        return
    if spec in HMAC_LENGTHS:
        low, high = HMAC_LENGTHS[spec]
        if not low <= len(raw) <= high:
            raise IncorrectKeyMaterialException(
                f"{spec} key material must be {low} to {high} bytes."
            )
        return
    try:
        LoadedKey.load(spec, raw, check=True)
    except KMSError:
        raise IncorrectKeyMaterialException(
            f"The key material is not a DER PKCS#8 {spec} private key."
        ) from None


@operation(
    "ImportKeyMaterial",
    {
        "KeyId": KEY_ID,
        "ImportToken": Blob(required=True, min_len=1, max_len=MAX_TOKEN),
        "EncryptedKeyMaterial": Blob(required=True, min_len=1, max_len=6144),
        "ValidTo": Timestamp(),
        "ExpirationModel": String(enum=(EXPIRES, DOES_NOT_EXPIRE)),
        "ImportType": String(enum=(_NEW, _EXISTING)),
        "KeyMaterialDescription": String(min_len=0, max_len=256, pattern=r"^[a-zA-Z0-9:/_\s.-]+$"),
        "KeyMaterialId": _MATERIAL_ID,
    },
)
def import_key_material(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ImportKeyMaterial: unwrap material with a token's wrapping key and store it."""
    svc = call.service
    model, valid_to = _check_expiry(call, req)
    key = _external(call, req["KeyId"])
    call.authorize(key, conditions={"kms:ExpirationModel": model, "kms:ValidTo": valid_to})
    symmetric = key.key_spec == "SYMMETRIC_DEFAULT"
    if not symmetric and ("KeyMaterialId" in req or "KeyMaterialDescription" in req):
        raise ValidationException(
            "KeyMaterialId and KeyMaterialDescription are only usable with "
            "symmetric encryption keys."
        )
    params = open_import_token(svc.root_key, key.arn, req["ImportToken"])
    now = svc.clock()
    if params.valid_to <= now.timestamp():
        raise ExpiredImportTokenException("The import token has expired.")
    raw = unwrap_key_material(params, req["EncryptedKeyMaterial"])
    try:
        _check_material(key, raw)
        computed = material_id(call, key, raw)
        materials = svc.store.list_materials(key.key_id)
        import_type = req.get("ImportType", _EXISTING if materials else _NEW)
        given = req.get("KeyMaterialId")
        if import_type == _NEW and given is not None:
            raise ValidationException(
                "You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL."
            )
        # Material imported into a multi-Region key before related keys shared
        # ids has the id of the key's ARN; it stays.
        ids = [computed, _arn_material_id(call, key, raw)] if key.multi_region else [computed]
        if given is not None and not any(hmac.compare_digest(given, i) for i in ids):
            raise IncorrectKeyMaterialException(
                "The key material does not match the KeyMaterialId."
            )
        same = [m for i in ids for m in materials if hmac.compare_digest(m.material_id, i)]
        if key.is_replica and not same:
            # A replica holds only what its primary holds: the same material, by its id.
            primary = [
                m
                for m in _primary_materials(call, key)
                if hmac.compare_digest(m.material_id, computed)
            ]
            if not primary:
                raise IncorrectKeyMaterialException(
                    f"The key material is not the key material of the primary key "
                    f"{key.related_arn(key.primary_region or key.region)}."
                )
            if import_type == _NEW and materials:
                raise UnsupportedOperationException(
                    f"{key.arn} is a replica key: import new key material into its primary "
                    "key, then the same material here with ImportType EXISTING_KEY_MATERIAL."
                )
            import_type = _EXISTING
            same = primary
        if import_type == _EXISTING:
            if not same:
                raise IncorrectKeyMaterialException(
                    f"The key material is not the key material previously imported into {key.arn}."
                )
            old = same[0]
            computed = old.material_id  # the id it has (a legacy one stays)
            version, creation, rotation_type = old.version, old.creation_date, old.rotation_type
            description = req.get("KeyMaterialDescription", old.description)
        else:
            if same:
                raise IncorrectKeyMaterialException(
                    f"The key material is already associated with {key.arn}; "
                    "import it with ImportType EXISTING_KEY_MATERIAL."
                )
            if materials and not symmetric:
                raise UnsupportedOperationException(
                    f"{key.arn} is a {key.key_spec} key: its key material cannot be replaced."
                )
            if any(m.version > key.current_version for m in materials):
                raise KMSInvalidStateException(
                    f"{key.arn} already has key material pending rotation."
                )
            version = max((m.version for m in materials), default=0) + 1
            creation, rotation_type = now, None
            description = req.get("KeyMaterialDescription")
        if not svc.store.use_import_token(
            key.key_id, params.token_id, float(params.valid_to), now.timestamp()
        ):
            raise InvalidImportTokenException("The import token has already been used.")
        record = KeyMaterialRecord(
            key_id=key.key_id,
            version=version,
            wrapped=svc.root_key.wrap(raw, key.arn, version),
            creation_date=creation,
            material_id=computed,
            rotation_type=rotation_type,
            import_state=IMPORTED,
            expiration_model=model,
            valid_to=valid_to,
            description=description,
        )
    finally:
        del raw
    others = [m for m in materials if m.version != version]
    changed = summarize(key, [*others, record])
    svc.store.put_material(changed, record)
    svc.forget(key.key_id)
    return {"KeyId": key.arn, "KeyMaterialId": computed}


@operation("DeleteImportedKeyMaterial", {"KeyId": KEY_ID, "KeyMaterialId": _MATERIAL_ID})
def delete_imported_key_material(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DeleteImportedKeyMaterial: the material goes; the key waits for it again."""
    svc = call.service
    key = _external(call, req["KeyId"])
    call.authorize(key)
    materials = svc.store.list_materials(key.key_id)
    wanted = req.get("KeyMaterialId")
    if wanted is None:
        target = next((m for m in materials if m.version == key.current_version), None)
    else:
        target = next((m for m in materials if m.material_id == wanted), None)
        if target is None:
            raise NotFoundException(f"Key material {wanted} is not associated with {key.arn}.")
    if target is None or target.import_state == PENDING_IMPORT:
        # Nothing imported to delete: the key is already waiting for it.
        return {"KeyId": key.arn, "KeyMaterialId": target.material_id if target else ""}
    if key.is_primary and target.version > key.current_version:
        # As AWS: material of a primary pending rotation goes from its replicas too.
        _delete_from_replicas(call, key, target.version)
    delete_material(svc, key, materials, target)
    return {"KeyId": key.arn, "KeyMaterialId": target.material_id}


def _delete_from_replicas(call: Call, key: KeyRecord, version: int) -> None:
    """Delete material ``version`` of the replicas of ``key`` in this deployment."""
    for region in key.replica_regions:
        there = call.service.related(region)
        replica = there.store.get_key(key.key_id) if there is not None else None
        if there is None or replica is None:
            continue
        held = there.store.list_materials(key.key_id)
        target = next((m for m in held if m.version == version), None)
        if target is None or target.import_state != IMPORTED:
            continue
        delete_material(there, replica, held, target)
