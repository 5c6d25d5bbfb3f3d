"""Symmetric cryptography operations.

Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext
and GenerateRandom.

Each handler: validate the request (done by the dispatcher against the
shape), resolve the key, check its state and usage, authorize with the
request's condition values, honour DryRun, then do the work.
"""

from __future__ import annotations

import os
from typing import Any

from kmscore.crypto.asymmetric import rsa_decrypt, rsa_encrypt
from kmscore.errors import (
    CustomKeyStoreNotFoundException,
    IncorrectKeyException,
    KMSError,
    NotFoundException,
    ValidationException,
)
from kmscore.model import context as ec
from kmscore.model.key import KeyRecord
from kmscore.model.keyspecs import check_algorithm
from kmscore.model.validation import Blob, String
from kmscore.operations.common import (
    CIPHERTEXT,
    CONTEXT,
    DATA_KEY_SPEC,
    DRY_RUN,
    DRY_RUN_MODIFIERS,
    ENCRYPTION_ALGORITHM,
    GRANT_TOKENS,
    KEY_ID,
    NUMBER_OF_BYTES,
    OPTIONAL_KEY_ID,
    RECIPIENT,
    data_key_length,
    dry_run,
    refuse_recipient,
    require_symmetric_encryption,
)
from kmscore.operations.registry import operation
from kmscore.service import Call, symmetric
from kmscore.service.symmetric import blob_key_id, open_blob, seal

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"


def conditions(context: dict[str, str]) -> dict[str, Any]:
    """Condition values of a symmetric request (the authorizer expands the context)."""
    return {"kms:EncryptionAlgorithm": SYMMETRIC_DEFAULT, "kms:EncryptionContext": context}


def encryption_key(call: Call, ref: str, algorithm: str | None) -> KeyRecord:
    """Resolve a key for encryption and check its state and usage."""
    key = call.key(ref)
    require_symmetric_encryption(key, algorithm)
    return key


def decryption_key(
    call: Call, data: bytes, key_ref: str | None, algorithm: str | None
) -> tuple[KeyRecord, int]:
    """The key and version that made a blob, checked against an expected key.

    Raises:
        InvalidCiphertextException: the blob is malformed.
        NotFoundException: the blob's key does not exist (any more).
        IncorrectKeyException: ``key_ref`` names another key.
    """
    svc = call.service
    key_id, version = blob_key_id(svc, data)
    key = svc.get_key(key_id)
    if key is not None and key.arn not in call.resources:
        call.resources.append(key.arn)
    if key_ref is not None:
        expected = call.resolve(key_ref)
        if key is None or expected.key_id != key_id:
            raise IncorrectKeyException()
    if key is None:
        raise NotFoundException(f"Key '{svc.key_arn(key_id)}' does not exist")
    call.check_state(key)
    if (
        algorithm is not None
        or key.key_usage != ENCRYPT_DECRYPT
        or key.key_spec != SYMMETRIC_DEFAULT
    ):
        require_symmetric_encryption(key, algorithm)
    return key, version


def _named_key(call: Call, ref: str | None) -> KeyRecord | None:
    """The key a Decrypt names, if it names one that exists (not noted in the call yet)."""
    if ref is None:
        return None
    try:
        return call.service.resolve(ref)
    except KMSError:
        # The symmetric path answers for bad references, in its own order.
        return None


def _rsa_checks(call: Call, key: KeyRecord, req: dict[str, Any]) -> str:
    """State, algorithm, context and authorization of an RSA Encrypt or Decrypt.

    Returns:
        The encryption algorithm.

    Raises:
        ValidationException: an encryption context was given (asymmetric keys
            take none, as in AWS).
        InvalidKeyUsageException: no algorithm (SYMMETRIC_DEFAULT) or one the
            key spec does not allow.
    """
    call.check_state(key)
    algorithm = _rsa_algorithm(key, req, "EncryptionAlgorithm", "EncryptionContext")
    call.authorize(key, conditions={"kms:EncryptionAlgorithm": algorithm})
    return algorithm


def is_rsa_encryption(key: KeyRecord) -> bool:
    """An asymmetric ENCRYPT_DECRYPT key (RSA; SM2 keys are never made)."""
    return key.key_spec != SYMMETRIC_DEFAULT and key.key_usage == ENCRYPT_DECRYPT


def _rsa_algorithm(key: KeyRecord, req: dict[str, Any], algorithm_member: str, context: str) -> str:
    """The request's algorithm for an RSA key; no encryption context allowed.

    Raises:
        InvalidKeyUsageException: no algorithm (so SYMMETRIC_DEFAULT) or one the
            key spec does not allow.
        ValidationException: an encryption context was given.
    """
    algorithm = req.get(algorithm_member, SYMMETRIC_DEFAULT)
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    if req.get(context):
        raise ValidationException(
            f"{context} is not supported with asymmetric KMS keys ({key.arn} is {key.key_spec})."
        )
    return str(algorithm)


def _rsa_encrypt(call: Call, key: KeyRecord, req: dict[str, Any]) -> dict[str, Any]:
    """Encrypt with the public key of an RSA key: the raw RSAES-OAEP ciphertext."""
    algorithm = _rsa_checks(call, key, req)
    dry_run(req)
    loaded = call.service.keyring.asymmetric(key, key.current_version)
    return {
        "CiphertextBlob": rsa_encrypt(loaded.key, algorithm, req["Plaintext"]),
        "KeyId": key.arn,
        "EncryptionAlgorithm": algorithm,
    }


def _rsa_decrypt(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Decrypt RSAES-OAEP ciphertext with the private key of the named RSA key."""
    key = call.resolve(req["KeyId"])
    algorithm = _rsa_checks(call, key, req)
    dry_run(req)
    loaded = call.service.keyring.asymmetric(key, key.current_version)
    return {
        "KeyId": key.arn,
        "Plaintext": rsa_decrypt(loaded.key, algorithm, req["CiphertextBlob"]),
        "EncryptionAlgorithm": algorithm,
        "KeyMaterialId": loaded.material_id,
    }


@operation(
    "Encrypt",
    {
        "KeyId": KEY_ID,
        "Plaintext": Blob(required=True, min_len=1, max_len=4096),
        "EncryptionContext": CONTEXT,
        "GrantTokens": GRANT_TOKENS,
        "EncryptionAlgorithm": ENCRYPTION_ALGORITHM,
        "DryRun": DRY_RUN,
    },
)
def encrypt(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Encrypt: up to 4096 bytes under a symmetric key, or RSAES-OAEP with an RSA key."""
    key = call.resolve(req["KeyId"])
    if is_rsa_encryption(key):
        return _rsa_encrypt(call, key, req)
    call.check_state(key)
    require_symmetric_encryption(key, req.get("EncryptionAlgorithm"))
    context, aad = ec.prepare(req.get("EncryptionContext"))
    call.authorize(key, conditions=conditions(context), context_key=aad)
    dry_run(req)
    ciphertext, _ = seal(call.service, key, req["Plaintext"], aad)
    return {
        "CiphertextBlob": ciphertext,
        "KeyId": key.arn,
        "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
    }


@operation(
    "Decrypt",
    {
        "CiphertextBlob": CIPHERTEXT,
        "EncryptionContext": CONTEXT,
        "GrantTokens": GRANT_TOKENS,
        "KeyId": OPTIONAL_KEY_ID,
        "EncryptionAlgorithm": ENCRYPTION_ALGORITHM,
        "Recipient": RECIPIENT,
        "DryRun": DRY_RUN,
        "DryRunModifiers": DRY_RUN_MODIFIERS,
    },
)
def decrypt(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Decrypt: a blob made by Encrypt or GenerateDataKey; KeyId is optional."""
    if "Recipient" in req:
        refuse_recipient(req)
    data = req["CiphertextBlob"]
    ref = req.get("KeyId")
    if ref is not None:
        named = _named_key(call, ref)
        if named is not None and is_rsa_encryption(named):
            return _rsa_decrypt(call, req)
    key, version = decryption_key(call, data, ref, req.get("EncryptionAlgorithm"))
    context, aad = ec.prepare(req.get("EncryptionContext"))
    call.authorize(key, conditions=conditions(context), context_key=aad)
    dry = req.get("DryRun")
    if dry and "IGNORE_CIPHERTEXT" in req.get("DryRunModifiers", ()):
        dry_run(req)
    plaintext, kv = open_blob(call.service, key, version, data, aad)
    if dry:
        dry_run(req)
    return {
        "KeyId": key.arn,
        "Plaintext": plaintext,
        "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
        "KeyMaterialId": kv.material_id,
    }


@operation(
    "ReEncrypt",
    {
        "CiphertextBlob": CIPHERTEXT,
        "SourceEncryptionContext": CONTEXT,
        "SourceKeyId": OPTIONAL_KEY_ID,
        "DestinationKeyId": KEY_ID,
        "DestinationEncryptionContext": CONTEXT,
        "SourceEncryptionAlgorithm": ENCRYPTION_ALGORITHM,
        "DestinationEncryptionAlgorithm": ENCRYPTION_ALGORITHM,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
        "DryRunModifiers": DRY_RUN_MODIFIERS,
    },
)
def re_encrypt(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ReEncrypt: decrypt under one key and context, encrypt under another."""
    named = _named_key(call, req.get("SourceKeyId"))
    destination = _named_key(call, req["DestinationKeyId"])
    if (named is not None and is_rsa_encryption(named)) or (
        destination is not None and is_rsa_encryption(destination)
    ):
        return _re_encrypt_rsa(call, req, named is not None and is_rsa_encryption(named))
    data = req["CiphertextBlob"]
    source, version = decryption_key(
        call, data, req.get("SourceKeyId"), req.get("SourceEncryptionAlgorithm")
    )
    dest = encryption_key(call, req["DestinationKeyId"], req.get("DestinationEncryptionAlgorithm"))
    src_ctx, src_aad = ec.prepare(req.get("SourceEncryptionContext"), "SourceEncryptionContext")
    dst_ctx, dst_aad = ec.prepare(
        req.get("DestinationEncryptionContext"), "DestinationEncryptionContext"
    )
    # kms:ReEncryptOnSameKey joins the conditions, so the decision cache keys
    # on all of them (no context_key shortcut).
    same = {"kms:ReEncryptOnSameKey": source.key_id == dest.key_id}
    call.authorize(source, action="kms:ReEncryptFrom", conditions={**conditions(src_ctx), **same})
    call.authorize(dest, action="kms:ReEncryptTo", conditions={**conditions(dst_ctx), **same})
    if req.get("DryRun") and "IGNORE_CIPHERTEXT" in req.get("DryRunModifiers", ()):
        dry_run(req)
    plaintext, src_kv = open_blob(call.service, source, version, data, src_aad)
    dry_run(req)
    ciphertext, dst_kv = seal(call.service, dest, plaintext, dst_aad)
    return {
        "CiphertextBlob": ciphertext,
        "SourceKeyId": source.arn,
        "KeyId": dest.arn,
        "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
        "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
        "SourceKeyMaterialId": src_kv.material_id,
        "DestinationKeyMaterialId": dst_kv.material_id,
    }


def _re_encrypt_rsa(call: Call, req: dict[str, Any], rsa_source: bool) -> dict[str, Any]:
    """ReEncrypt where the source key, the destination key or both are RSA keys.

    An RSA source needs SourceKeyId and SourceEncryptionAlgorithm (its
    ciphertext names no key); an RSA destination needs
    DestinationEncryptionAlgorithm. Neither takes an encryption context.
    """
    svc = call.service
    data = req["CiphertextBlob"]
    version: int | None = None
    src_aad: bytes | None = None
    if rsa_source:
        source = call.key(req["SourceKeyId"])
        src_alg = _rsa_algorithm(
            source, req, "SourceEncryptionAlgorithm", "SourceEncryptionContext"
        )
        src_conditions: dict[str, Any] = {"kms:EncryptionAlgorithm": src_alg}
    else:
        source, version = decryption_key(
            call, data, req.get("SourceKeyId"), req.get("SourceEncryptionAlgorithm")
        )
        src_ctx, src_aad = ec.prepare(req.get("SourceEncryptionContext"), "SourceEncryptionContext")
        src_alg, src_conditions = SYMMETRIC_DEFAULT, conditions(src_ctx)
    dest = call.key(req["DestinationKeyId"])
    dst_aad: bytes | None = None
    if is_rsa_encryption(dest):
        dst_alg = _rsa_algorithm(
            dest, req, "DestinationEncryptionAlgorithm", "DestinationEncryptionContext"
        )
        dst_conditions: dict[str, Any] = {"kms:EncryptionAlgorithm": dst_alg}
    else:
        require_symmetric_encryption(dest, req.get("DestinationEncryptionAlgorithm"))
        dst_ctx, dst_aad = ec.prepare(
            req.get("DestinationEncryptionContext"), "DestinationEncryptionContext"
        )
        dst_alg, dst_conditions = SYMMETRIC_DEFAULT, conditions(dst_ctx)
    same = {"kms:ReEncryptOnSameKey": source.key_id == dest.key_id}
    call.authorize(source, action="kms:ReEncryptFrom", conditions={**src_conditions, **same})
    call.authorize(dest, action="kms:ReEncryptTo", conditions={**dst_conditions, **same})
    if req.get("DryRun") and "IGNORE_CIPHERTEXT" in req.get("DryRunModifiers", ()):
        dry_run(req)
    if version is None or src_aad is None:
        loaded = svc.keyring.asymmetric(source, source.current_version)
        plaintext = rsa_decrypt(loaded.key, src_alg, data)
        src_material_id = loaded.material_id
    else:
        plaintext, src_kv = open_blob(svc, source, version, data, src_aad)
        src_material_id = src_kv.material_id
    dry_run(req)
    if dst_aad is None:
        loaded = svc.keyring.asymmetric(dest, dest.current_version)
        ciphertext = rsa_encrypt(loaded.key, dst_alg, plaintext)
        dst_material_id = loaded.material_id
    else:
        ciphertext, dst_kv = seal(svc, dest, plaintext, dst_aad)
        dst_material_id = dst_kv.material_id
    return {
        "CiphertextBlob": ciphertext,
        "SourceKeyId": source.arn,
        "KeyId": dest.arn,
        "SourceEncryptionAlgorithm": src_alg,
        "DestinationEncryptionAlgorithm": dst_alg,
        "SourceKeyMaterialId": src_material_id,
        "DestinationKeyMaterialId": dst_material_id,
    }


_DATA_KEY_SHAPE = {
    "KeyId": KEY_ID,
    "EncryptionContext": CONTEXT,
    "NumberOfBytes": NUMBER_OF_BYTES,
    "KeySpec": DATA_KEY_SPEC,
    "GrantTokens": GRANT_TOKENS,
    "DryRun": DRY_RUN,
}


def _data_key(call: Call, req: dict[str, Any]) -> tuple[KeyRecord, bytes, bytes, str]:
    # The hot path of envelope encryption: the common checks are inline.
    spec = req.get("KeySpec")
    length = 32 if spec == "AES_256" and "NumberOfBytes" not in req else data_key_length(req)
    key = call.key(req["KeyId"])
    if key.key_usage != ENCRYPT_DECRYPT or key.key_spec != SYMMETRIC_DEFAULT:
        require_symmetric_encryption(key)
    context, aad = ec.prepare(req.get("EncryptionContext"))
    call.authorize(key, conditions=conditions(context), context_key=aad)
    if req.get("DryRun"):
        dry_run(req)
    plaintext, ciphertext, kv = symmetric.generate_data_key(call.service, key, length, aad)
    return key, plaintext, ciphertext, kv.material_id


@operation("GenerateDataKey", {**_DATA_KEY_SHAPE, "Recipient": RECIPIENT})
def generate_data_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateDataKey: a random data key, in plaintext and under the KMS key."""
    if "Recipient" in req:
        refuse_recipient(req)
    key, plaintext, ciphertext, material_id = _data_key(call, req)
    return {
        "CiphertextBlob": ciphertext,
        "Plaintext": plaintext,
        "KeyId": key.arn,
        "KeyMaterialId": material_id,
    }


@operation("GenerateDataKeyWithoutPlaintext", _DATA_KEY_SHAPE)
def generate_data_key_without_plaintext(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateDataKeyWithoutPlaintext: only the encrypted data key."""
    key, _, ciphertext, material_id = _data_key(call, req)
    return {"CiphertextBlob": ciphertext, "KeyId": key.arn, "KeyMaterialId": material_id}


@operation(
    "GenerateRandom",
    {
        "NumberOfBytes": NUMBER_OF_BYTES,
        "CustomKeyStoreId": String(min_len=1, max_len=64),
        "Recipient": RECIPIENT,
    },
)
def generate_random(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateRandom: 1-1024 random bytes from the OS CSPRNG."""
    refuse_recipient(req)
    if "CustomKeyStoreId" in req:
        raise CustomKeyStoreNotFoundException(
            f"Custom key store {req['CustomKeyStoreId']} does not exist."
        )
    n = req.get("NumberOfBytes")
    if n is None:
        raise ValidationException("NumberOfBytes is required.")
    call.authorize(None)
    return {"Plaintext": os.urandom(n)}
