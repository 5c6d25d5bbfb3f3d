"""Asymmetric and HMAC key operations.

Sign, Verify, GetPublicKey, GenerateMac, VerifyMac, DeriveSharedSecret,
GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext. (Encrypt and
Decrypt with RSA keys are in :mod:`kmscore.operations.crypto`.)

Each handler: resolve the key, check its state, then its key usage
(InvalidKeyUsageException) and the request's algorithm for the key spec (as
:func:`kmscore.model.keyspecs.check_algorithm` answers), authorize with AWS's
condition keys, honour DryRun, then do the work with the key version cached in
the keyring. Asymmetric and HMAC keys never rotate, so the current version is
the only one.
"""

from __future__ import annotations

from typing import Any, Final

from kmscore.crypto import asymmetric
from kmscore.errors import (
    InvalidKeyUsageException,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    UnsupportedOperationException,
)
from kmscore.model import context as ec
from kmscore.model.key import KeyRecord, algorithm_fields
from kmscore.model.keyspecs import check_algorithm, spec_info
from kmscore.model.validation import Blob, String
from kmscore.operations.common import (
    CONTEXT,
    DRY_RUN,
    GRANT_TOKENS,
    KEY_ID,
    RECIPIENT,
    dry_run,
    refuse_recipient,
)
from kmscore.operations.crypto import conditions, encryption_key
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.symmetric import seal
from kmscore.service.versions import AsymmetricVersion

MESSAGE: Final = Blob(required=True, min_len=1, max_len=4096)
SIGNATURE: Final = Blob(required=True, min_len=1, max_len=6144)
MESSAGE_TYPE: Final = String(enum=("RAW", "DIGEST", "EXTERNAL_MU"))
SIGNING_ALGORITHM: Final = String(
    required=True,
    enum=(
        "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
        "ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512", "SM2DSA", "ML_DSA_SHAKE_256",
        "ED25519_SHA_512", "ED25519_PH_SHA_512",
    ),
)  # fmt: skip
MAC_ALGORITHM: Final = String(
    required=True, enum=("HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512")
)
MAC: Final = Blob(required=True, min_len=1, max_len=6144)
KEY_PAIR_SPEC: Final = String(
    required=True,
    enum=(
        "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
        "ECC_SECG_P256K1", "SM2", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768",
        "ML_KEM_1024",
    ),
)  # fmt: skip

#: The key specs GetPublicKey's deprecated CustomerMasterKeySpec can name.
_CMK_SPECS: Final = frozenset(
    {
        "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
        "ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512",
        "SM2",
    }
)  # fmt: skip


def usage_key(call: Call, ref: str, usage: str) -> KeyRecord:
    """Resolve a key, check its state and that its key usage is ``usage``.

    Raises:
        InvalidKeyUsageException: the key has another key usage.
    """
    key = call.key(ref)
    if key.key_usage != usage:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage} and key spec is {key.key_spec}, "
            f"which is not valid for {call.operation}; it needs key usage {usage}."
        )
    return key


def _loaded(call: Call, key: KeyRecord) -> AsymmetricVersion:
    return call.service.keyring.asymmetric(key, key.current_version)


# --- Sign and Verify -----------------------------------------------------------------


def _signing(call: Call, req: dict[str, Any]) -> tuple[KeyRecord, str, str]:
    key = usage_key(call, req["KeyId"], "SIGN_VERIFY")
    algorithm = req["SigningAlgorithm"]
    message_type = req.get("MessageType", "RAW")
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    call.authorize(
        key, conditions={"kms:SigningAlgorithm": algorithm, "kms:MessageType": message_type}
    )
    dry_run(req)
    return key, algorithm, message_type


@operation(
    "Sign",
    {
        "KeyId": KEY_ID,
        "Message": MESSAGE,
        "MessageType": MESSAGE_TYPE,
        "GrantTokens": GRANT_TOKENS,
        "SigningAlgorithm": SIGNING_ALGORITHM,
        "DryRun": DRY_RUN,
    },
)
def sign(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Sign: a signature over a message (RAW) or its digest (DIGEST)."""
    key, algorithm, message_type = _signing(call, req)
    signature = asymmetric.sign(_loaded(call, key).key, algorithm, req["Message"], message_type)
    return {"KeyId": key.arn, "Signature": signature, "SigningAlgorithm": algorithm}


@operation(
    "Verify",
    {
        "KeyId": KEY_ID,
        "Message": MESSAGE,
        "MessageType": MESSAGE_TYPE,
        "Signature": SIGNATURE,
        "SigningAlgorithm": SIGNING_ALGORITHM,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def verify(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Verify: KMSInvalidSignatureException unless the signature is valid."""
    key, algorithm, message_type = _signing(call, req)
    valid = asymmetric.verify(
        _loaded(call, key).key, algorithm, req["Message"], message_type, req["Signature"]
    )
    if not valid:
        raise KMSInvalidSignatureException("The signature is not valid.")
    return {"KeyId": key.arn, "SignatureValid": True, "SigningAlgorithm": algorithm}


# --- GetPublicKey --------------------------------------------------------------------


@operation("GetPublicKey", {"KeyId": KEY_ID, "GrantTokens": GRANT_TOKENS})
def get_public_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GetPublicKey: the DER SubjectPublicKeyInfo of an asymmetric key."""
    key = call.key(req["KeyId"])
    if not spec_info(key.key_spec).asymmetric:
        raise UnsupportedOperationException(
            f"{key.arn} is a {key.key_spec} key, which has no public key."
        )
    call.authorize(key)
    out: dict[str, Any] = {
        "KeyId": key.arn,
        "PublicKey": _loaded(call, key).key.public_key_der(),
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
    }
    if key.key_spec in _CMK_SPECS:
        out["CustomerMasterKeySpec"] = key.key_spec
    out.update(algorithm_fields(key.key_spec, key.key_usage))
    return out


# --- GenerateMac and VerifyMac -------------------------------------------------------


def _mac(call: Call, req: dict[str, Any]) -> tuple[KeyRecord, str]:
    key = usage_key(call, req["KeyId"], "GENERATE_VERIFY_MAC")
    algorithm = req["MacAlgorithm"]
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    call.authorize(key, conditions={"kms:MacAlgorithm": algorithm})
    dry_run(req)
    return key, algorithm


@operation(
    "GenerateMac",
    {
        "Message": MESSAGE,
        "KeyId": KEY_ID,
        "MacAlgorithm": MAC_ALGORITHM,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def generate_mac(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateMac: the HMAC of a message under an HMAC key."""
    key, algorithm = _mac(call, req)
    mac = asymmetric.generate_mac(_loaded(call, key).key, algorithm, req["Message"])
    return {"Mac": mac, "MacAlgorithm": algorithm, "KeyId": key.arn}


@operation(
    "VerifyMac",
    {
        "Message": MESSAGE,
        "KeyId": KEY_ID,
        "MacAlgorithm": MAC_ALGORITHM,
        "Mac": MAC,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def verify_mac(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """VerifyMac: KMSInvalidMacException unless the MAC is valid (constant time)."""
    key, algorithm = _mac(call, req)
    if not asymmetric.verify_mac(_loaded(call, key).key, algorithm, req["Message"], req["Mac"]):
        raise KMSInvalidMacException("The MAC is not valid.")
    return {"KeyId": key.arn, "MacValid": True, "MacAlgorithm": algorithm}


# --- DeriveSharedSecret --------------------------------------------------------------


@operation(
    "DeriveSharedSecret",
    {
        "KeyId": KEY_ID,
        "KeyAgreementAlgorithm": String(required=True, enum=("ECDH",)),
        "PublicKey": Blob(required=True, min_len=1, max_len=8192),
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
        "Recipient": RECIPIENT,
    },
)
def derive_shared_secret(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DeriveSharedSecret: the raw ECDH secret of the key and a peer public key."""
    refuse_recipient(req)
    key = usage_key(call, req["KeyId"], "KEY_AGREEMENT")
    algorithm = req["KeyAgreementAlgorithm"]
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    call.authorize(key, conditions={"kms:KeyAgreementAlgorithm": algorithm})
    dry_run(req)
    secret = asymmetric.derive_shared_secret(_loaded(call, key).key, algorithm, req["PublicKey"])
    return {
        "KeyId": key.arn,
        "SharedSecret": secret,
        "KeyAgreementAlgorithm": algorithm,
        "KeyOrigin": key.origin,
    }


# --- GenerateDataKeyPair -------------------------------------------------------------

_DATA_KEY_PAIR_SHAPE: Final = {
    "EncryptionContext": CONTEXT,
    "KeyId": KEY_ID,
    "KeyPairSpec": KEY_PAIR_SPEC,
    "GrantTokens": GRANT_TOKENS,
    "DryRun": DRY_RUN,
}


def _data_key_pair(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Make a key pair; return the response without PrivateKeyPlaintext (added by the caller)."""
    spec = req["KeyPairSpec"]
    key = encryption_key(call, req["KeyId"], None)
    context, aad = ec.prepare(req.get("EncryptionContext"))
    call.authorize(
        key, conditions={**conditions(context), "kms:DataKeyPairSpec": spec}, context_key=None
    )
    dry_run(req)
    # SM2 answers UnsupportedOperationException here, after authorization.
    private, public = asymmetric.generate_data_key_pair(spec)
    ciphertext, kv = seal(call.service, key, private, aad)
    return {
        "PrivateKeyCiphertextBlob": ciphertext,
        "PrivateKeyPlaintext": private,
        "PublicKey": public,
        "KeyId": key.arn,
        "KeyPairSpec": spec,
        "KeyMaterialId": kv.material_id,
    }


@operation("GenerateDataKeyPair", {**_DATA_KEY_PAIR_SHAPE, "Recipient": RECIPIENT})
def generate_data_key_pair(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateDataKeyPair: a key pair, the private key also under a symmetric key."""
    refuse_recipient(req)
    return _data_key_pair(call, req)


@operation("GenerateDataKeyPairWithoutPlaintext", _DATA_KEY_PAIR_SHAPE)
def generate_data_key_pair_without_plaintext(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GenerateDataKeyPairWithoutPlaintext: the public key and the encrypted private key."""
    out = _data_key_pair(call, req)
    del out["PrivateKeyPlaintext"]
    return out
