"""Key lifecycle operations.

CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, UpdateKeyDescription,
ScheduleKeyDeletion and CancelKeyDeletion.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from kmscore.crypto.asymmetric import generate_private_key
from kmscore.crypto.pkcs11_token import TokenUnavailableError
from kmscore.errors import (
    CustomKeyStoreInvalidStateException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.arn import new_key_id
from kmscore.model.key import KeyRecord
from kmscore.model.keyspecs import algorithms_for, require_supported
from kmscore.model.keystate import KeyState, require_transition
from kmscore.model.validation import Boolean, Integer, List, String
from kmscore.operations.common import GRANT_TOKENS, KEY_ID, LIMIT, MARKER, page_args, page_result
from kmscore.operations.custom_key_stores import store_for_new_key
from kmscore.operations.importing import IMPORTABLE_SPECS
from kmscore.operations.registry import operation
from kmscore.operations.tags import TAG_LIST, check_new_tags, request_tag_conditions
from kmscore.service import Call
from kmscore.service.importing import summarize
from kmscore.service.rotation import new_material

KEY_USAGES: Final = (
    "SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT",
    "ENCAPSULATE_DECAPSULATE",
)  # fmt: skip
KEY_SPECS: Final = (
    "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
    "ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512",
    "SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519", "ML_KEM_512",
    "ML_KEM_768", "ML_KEM_1024",
)  # fmt: skip
CMK_SPECS: Final = tuple(
    s for s in KEY_SPECS if not s.startswith(("ML_DSA", "ML_KEM", "ECC_NIST_ED"))
)
ORIGINS: Final = ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
MIN_WINDOW: Final = 7
MAX_WINDOW: Final = 30
DEFAULT_WINDOW: Final = 30


_CREATE_KEY_SHAPE: Final = {
    "Policy": String(min_len=1, max_len=131072, pattern=r"[\u0009\u000A\u000D\u0020-\u00FF]+"),
    "Description": String(min_len=0, max_len=8192),
    "KeyUsage": String(enum=KEY_USAGES),
    "CustomerMasterKeySpec": String(enum=CMK_SPECS),
    "KeySpec": String(enum=KEY_SPECS),
    "Origin": String(enum=ORIGINS),
    "CustomKeyStoreId": String(min_len=1, max_len=64),
    "BypassPolicyLockoutSafetyCheck": Boolean(),
    "Tags": TAG_LIST,
    "MultiRegion": Boolean(),
    "XksKeyId": String(min_len=1, max_len=128, pattern=r"^[a-zA-Z0-9-_.]+$"),
}


def _create_key_checks(call: Call, req: dict[str, Any]) -> tuple[str, str, str, Any]:
    """Every check of a CreateKey request, authorization included.

    Returns:
        The key spec, key usage, origin and checked tags.
    """
    if "KeySpec" in req and "CustomerMasterKeySpec" in req:
        raise ValidationException(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request."
        )
    spec = req.get("KeySpec") or req.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    usage = req.get("KeyUsage", "ENCRYPT_DECRYPT")
    origin = req.get("Origin", "AWS_KMS")
    if "XksKeyId" in req and "CustomKeyStoreId" not in req:
        raise UnsupportedOperationException(
            "XksKeyId needs the CustomKeyStoreId of an external key store."
        )
    if origin == "EXTERNAL_KEY_STORE" and "CustomKeyStoreId" not in req:
        raise UnsupportedOperationException(
            "Origin EXTERNAL_KEY_STORE needs the CustomKeyStoreId of an external key store."
        )
    store_for_new_key(call, req, spec, usage)
    if origin == "EXTERNAL" and spec not in IMPORTABLE_SPECS:
        raise UnsupportedOperationException(
            f"KeySpec {spec} does not support imported key material (Origin EXTERNAL)."
        )
    # SM2 (AWS China Regions only) is UnsupportedOperationException; a key usage
    # the key spec does not allow is ValidationException, as AWS answers.
    require_supported(spec)
    algorithms_for(spec, usage)
    tags = check_new_tags(req.get("Tags", []))
    call.authorize(
        None,
        conditions={
            "kms:KeySpec": spec,
            "kms:KeyUsage": usage,
            "kms:KeyOrigin": origin,
            "kms:MultiRegion": bool(req.get("MultiRegion")),
            "kms:MultiRegionKeyType": "PRIMARY" if req.get("MultiRegion") else None,
            "kms:BypassPolicyLockoutSafetyCheck": bool(req.get("BypassPolicyLockoutSafetyCheck")),
            **request_tag_conditions(tags),
        },
    )
    return spec, usage, origin, tags


def _prepare_create_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Make an asymmetric or HMAC key's material before the store transaction.

    RSA_4096 takes a second or more; inside the transaction it would hold the
    store's lock, and so every other caller of the process, that long. The
    request is checked and authorized first, so only a caller allowed to
    create the key makes the service spend the time.
    """
    if (req.get("KeySpec") or req.get("CustomerMasterKeySpec")) in (
        None,
        "SYMMETRIC_DEFAULT",
    ) or req.get("Origin") == "EXTERNAL":
        return req
    spec, _, _, _ = _create_key_checks(call, req)
    return {**req, _PREPARED_MATERIAL: generate_private_key(spec)}


#: Where the prepared material travels in the request (no wire member has this name).
_PREPARED_MATERIAL: Final = "_PreparedMaterial"


@operation("CreateKey", _CREATE_KEY_SHAPE, prepare=_prepare_create_key)
def create_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateKey: a new key of any supported key spec, with fresh material."""
    svc = call.service
    spec, usage, origin, tags = _create_key_checks(call, req)
    now = svc.clock()
    key_id = new_key_id(bool(req.get("MultiRegion")))
    key = KeyRecord(
        key_id=key_id,
        arn=svc.key_arn(key_id),
        account=svc.account,
        creation_date=now,
        description=req.get("Description", ""),
        key_usage=usage,
        key_spec=spec,
        origin=origin,
        state=KeyState.PENDING_IMPORT if origin == "EXTERNAL" else KeyState.ENABLED,
        current_version=1,
        multi_region=bool(req.get("MultiRegion")),
        policy=req.get("Policy"),
        primary_region=svc.region if req.get("MultiRegion") else None,
    )
    call.resources.append(key.arn)
    if "Policy" in req:
        from kmscore.operations.policies import checked_policy

        checked_policy(
            call, req["Policy"], key.arn, bool(req.get("BypassPolicyLockoutSafetyCheck"))
        )
    else:
        key = key.replace(policy=svc.default_key_policy)
    if origin == "EXTERNAL":
        # No material until ImportKeyMaterial brings it.
        svc.store.create_key(key, None, tags)
        return {"KeyMetadata": key.metadata()}
    store_id = req.get("CustomKeyStoreId")
    if store_id is not None:
        return _create_custom_store_key(call, key, store_id, tags, req.get("XksKeyId"))
    material = new_material(svc, key_id, 1, now, key_spec=spec, raw=req.get(_PREPARED_MATERIAL))
    svc.store.create_key(key, material, tags)
    return {"KeyMetadata": key.metadata(material.material_id)}


def _create_custom_store_key(
    call: Call, key: KeyRecord, store_id: str, tags: Any, xks_key_id: str | None
) -> dict[str, Any]:
    """A key whose material the custom key store's token makes and keeps.

    Raises:
        CustomKeyStoreInvalidStateException: the token stopped answering.
    """
    svc = call.service
    record = svc.custom_key_stores.require(store_id)
    if record.store_type == "EXTERNAL_KEY_STORE":
        # Double encryption: the key's own material (the KMS layer), and the
        # external key (the proxy's layer).
        key = key.replace(custom_key_store_id=store_id, xks_key_id=xks_key_id)
        material = new_material(svc, key.key_id, 1, key.creation_date)
        svc.store.create_key(key, material, tags)
        return {"KeyMetadata": key.metadata(material.material_id)}
    key = key.replace(custom_key_store_id=store_id, cloud_hsm_cluster_id=record.cluster_id)
    try:
        material = svc.custom_key_stores.new_material(store_id, key.key_id, 1, key.creation_date)
    except TokenUnavailableError as exc:
        raise CustomKeyStoreInvalidStateException(exc.message) from None
    svc.store.create_key(key, material, tags)
    return {"KeyMetadata": key.metadata(material.material_id)}


@operation("DescribeKey", {"KeyId": KEY_ID, "GrantTokens": GRANT_TOKENS})
def describe_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DescribeKey: the key's metadata, in any state (aliases accepted)."""
    key = call.key(req["KeyId"])
    call.authorize(key)
    if key.origin == "EXTERNAL":
        # Imported material may be missing (PendingImport): no current id then.
        current = call.service.store.get_material(key.key_id, key.current_version)
        material_id = current.material_id if current and current.import_state else None
    else:
        material_id = call.service.keyring.material_id(key, key.current_version)
    shown = call.service.key_state(key)
    if shown is not key.state:
        key = key.replace(state=shown)  # Unavailable: its custom key store is not connected
    return {"KeyMetadata": key.metadata(material_id)}


_RESOURCE_OWNERS: Final = List(
    item=String(enum=("SELF", "OTHER_ACCOUNTS_VIA_RAM")), min_len=1, max_len=2
)


@operation("ListKeys", {"Limit": LIMIT, "Marker": MARKER, "ResourceOwners": _RESOURCE_OWNERS})
def list_keys(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListKeys: key ids and ARNs, paged.

    ``ResourceOwners``: no account shares keys with another through RAM in
    kmscore, so OTHER_ACCOUNTS_VIA_RAM adds no keys, and alone lists none.
    """
    svc = call.service
    limit, after = page_args(req)
    call.authorize(None)
    if "SELF" not in req.get("ResourceOwners", ["SELF"]):
        return {"Keys": [], "Truncated": False}
    while True:
        keys = svc.store.list_keys(after, limit + 1)
        # A key past its deletion window is gone, even before maintenance has
        # deleted it: delete it now (as DescribeKey would) and read again.
        now = svc.clock()
        expired = [
            k
            for k in keys
            if k.state is KeyState.PENDING_DELETION
            and k.deletion_date is not None
            and k.deletion_date <= now
        ]
        if not expired:
            break
        for k in expired:
            svc.delete_expired(k)
    items = [{"KeyId": k.key_id, "KeyArn": k.arn} for k in keys]
    last = keys[limit - 1].key_id if len(keys) > limit else None
    return page_result(items, limit, last, "Keys")


def _set_state(call: Call, key_ref: str, target: KeyState) -> None:
    svc = call.service
    key = call.key(key_ref, allow_alias=False)
    call.authorize(key)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        require_transition(k.arn, k.state, target)
        return k.replace(state=target)

    if key.state is not target:
        svc.update_key(key, change)


@operation("EnableKey", {"KeyId": KEY_ID})
def enable_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """EnableKey: Disabled to Enabled (Enabled stays Enabled)."""
    _set_state(call, req["KeyId"], KeyState.ENABLED)
    return {}


@operation("DisableKey", {"KeyId": KEY_ID})
def disable_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DisableKey: Enabled to Disabled; the key then refuses all crypto."""
    _set_state(call, req["KeyId"], KeyState.DISABLED)
    return {}


@operation(
    "UpdateKeyDescription",
    {"KeyId": KEY_ID, "Description": String(required=True, min_len=0, max_len=8192)},
)
def update_key_description(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UpdateKeyDescription."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    svc.update_key(key, lambda k: k.replace(description=req["Description"]))
    return {}


@operation(
    "ScheduleKeyDeletion",
    {"KeyId": KEY_ID, "PendingWindowInDays": Integer(min_value=1, max_value=365)},
)
def schedule_key_deletion(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ScheduleKeyDeletion: PendingDeletion for 7-30 days, then deleted for good."""
    svc = call.service
    window = req.get("PendingWindowInDays", DEFAULT_WINDOW)
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValidationException(
            f"1 validation error detected: Value '{window}' at 'pendingWindowInDays' "
            f"failed to satisfy constraint: Member must have value between {MIN_WINDOW} "
            f"and {MAX_WINDOW}"
        )
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key, conditions={"kms:ScheduleKeyDeletionPendingWindowInDays": window})
    deletion = svc.clock() + timedelta(days=window)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        if k.is_primary and k.replica_regions:
            # AWS: the primary waits for its replicas; its own waiting period
            # starts when the last is deleted.
            require_transition(k.arn, k.state, KeyState.PENDING_REPLICA_DELETION)
            return k.replace(
                state=KeyState.PENDING_REPLICA_DELETION,
                deletion_date=None,
                pending_window_days=window,
            )
        require_transition(k.arn, k.state, KeyState.PENDING_DELETION)
        return k.replace(
            state=KeyState.PENDING_DELETION, deletion_date=deletion, pending_window_days=window
        )

    stored = svc.update_key(key, change)
    out: dict[str, Any] = {
        "KeyId": stored.arn,
        "KeyState": stored.state.value,
        "PendingWindowInDays": window,
    }
    if stored.deletion_date is not None:
        out["DeletionDate"] = stored.deletion_date
    return out


@operation("CancelKeyDeletion", {"KeyId": KEY_ID})
def cancel_key_deletion(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CancelKeyDeletion: back to Disabled (PendingImport if imported material is gone)."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        back = k.replace(state=KeyState.DISABLED, deletion_date=None, pending_window_days=None)
        if k.origin == "EXTERNAL":
            # A key that lost imported material waits for it (PendingImport).
            back = summarize(back, svc.store.list_materials(k.key_id))
        return back

    stored = svc.update_key(key, change)
    return {"KeyId": stored.arn}
