"""Batch extensions: GenerateDataKeys and DecryptMany.

Not AWS operations: extensions with their own names, on the engine's batch
path, each authorized per key and audited as one call.
"""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import InvalidCiphertextException, KMSError, ValidationException
from kmscore.model import context as ec
from kmscore.model.key import KeyRecord
from kmscore.model.validation import Blob, Boolean, Integer, List
from kmscore.operations.common import (
    CONTEXT,
    DATA_KEY_SPEC,
    DRY_RUN,
    GRANT_TOKENS,
    KEY_ID,
    NUMBER_OF_BYTES,
    OPTIONAL_KEY_ID,
    data_key_length,
    dry_run,
)
from kmscore.operations.crypto import conditions, decryption_key, encryption_key
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.symmetric import generate_data_keys, known_version, open_blobs

MAX_BATCH: Final = 10_000


@operation(
    "GenerateDataKeys",
    {
        "KeyId": KEY_ID,
        "Count": Integer(required=True, min_value=1, max_value=MAX_BATCH),
        "EncryptionContext": CONTEXT,
        "NumberOfBytes": NUMBER_OF_BYTES,
        "KeySpec": DATA_KEY_SPEC,
        "WithoutPlaintext": Boolean(),
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def generate_data_keys_op(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateDataKeys: ``Count`` data keys under one KMS key and context.

    Authorized as ``kms:GenerateDataKey`` (``kms:GenerateDataKeyWithoutPlaintext``
    with ``WithoutPlaintext``), once for the batch.

    Response: ``KeyId`` (ARN), ``KeyMaterialId``, ``CiphertextBlobs`` and,
    unless ``WithoutPlaintext``, ``Plaintexts`` (parallel lists).
    """
    length = data_key_length(req)
    key = encryption_key(call, req["KeyId"], None)
    context, aad = ec.prepare(req.get("EncryptionContext"))
    # Authorized as the AWS action it batches, so existing policies and grants
    # (kms:GenerateDataKey*) cover it.
    without = bool(req.get("WithoutPlaintext"))
    action = "kms:GenerateDataKeyWithoutPlaintext" if without else "kms:GenerateDataKey"
    call.authorize(key, action=action, conditions=conditions(context), context_key=aad)
    dry_run(req)
    keys, blobs, kv = generate_data_keys(call.service, key, req["Count"], length, aad)
    out: dict[str, Any] = {
        "KeyId": key.arn,
        "KeyMaterialId": kv.material_id,
        "CiphertextBlobs": blobs,
    }
    if not req.get("WithoutPlaintext"):
        out["Plaintexts"] = keys
    return out


@operation(
    "DecryptMany",
    {
        "CiphertextBlobs": List(
            item=Blob(min_len=1, max_len=6144), required=True, min_len=1, max_len=MAX_BATCH
        ),
        "EncryptionContext": CONTEXT,
        "EncryptionContexts": List(item=CONTEXT, max_len=MAX_BATCH),
        "KeyId": OPTIONAL_KEY_ID,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def decrypt_many(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DecryptMany: many blobs in one call; each item succeeds or fails alone.

    ``EncryptionContext`` applies to every blob; ``EncryptionContexts`` gives
    one per blob (not both). Response ``Results``: per blob, either
    ``{"KeyId", "Plaintext"}`` or ``{"Error": {"Code", "Message"}}``. The
    caller must be allowed ``kms:Decrypt`` on every key named, with each
    context; a denial fails the whole call, as it reveals nothing per item.
    """
    blobs: list[bytes] = req["CiphertextBlobs"]
    if "EncryptionContext" in req and "EncryptionContexts" in req:
        raise ValidationException("Give EncryptionContext or EncryptionContexts, not both.")
    if "EncryptionContexts" in req:
        if len(req["EncryptionContexts"]) != len(blobs):
            raise ValidationException("EncryptionContexts must have one entry per ciphertext.")
        prepared = [ec.prepare(c, "EncryptionContexts") for c in req["EncryptionContexts"]]
    else:
        prepared = [ec.prepare(req.get("EncryptionContext"))] * len(blobs)
    results: list[dict[str, Any] | None] = [None] * len(blobs)
    # (key_id, version) -> indexes of its blobs; one engine call per group.
    groups: dict[tuple[str, int], list[int]] = {}
    keys: dict[str, KeyRecord] = {}
    # One decision per (key, context object): a shared context is one object.
    authorized: set[tuple[str, int]] = set()
    for i, data in enumerate(blobs):
        try:
            key, version = decryption_key(call, data, req.get("KeyId"), None)
        except KMSError as exc:
            results[i] = {"Error": exc.to_dict()}
            continue
        decision = (key.key_id, id(prepared[i]))
        if decision not in authorized:
            call.authorize(
                key,
                action="kms:Decrypt",
                conditions=conditions(prepared[i][0]),
                context_key=prepared[i][1],
            )
            authorized.add(decision)
        keys[key.key_id] = key
        groups.setdefault((key.key_id, version), []).append(i)
    if not authorized:
        call.authorize(None, action="kms:Decrypt")
    dry_run(req)
    svc = call.service
    for (key_id, version), indexes in groups.items():
        try:
            key = keys[key_id] = known_version(svc, keys[key_id], version)
        except InvalidCiphertextException as exc:
            for i in indexes:
                results[i] = {"Error": exc.to_dict()}
            continue
        kv = svc.keyring.load(key, version)
        opened = open_blobs(kv, [blobs[i] for i in indexes], [prepared[i][1] for i in indexes])
        for i, plaintext in zip(indexes, opened, strict=True):
            if plaintext is None:
                results[i] = {"Error": InvalidCiphertextException().to_dict()}
            else:
                results[i] = {"KeyId": key.arn, "Plaintext": plaintext}
    return {"Results": results}
