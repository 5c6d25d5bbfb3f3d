"""Key encapsulation operations: Encapsulate and Decapsulate (ML-KEM keys).

Each handler: resolve the key, check its state, then its key usage
(ENCAPSULATE_DECAPSULATE, else InvalidKeyUsageException) and the algorithm for
the key spec, authorize, honour DryRun, then do the work with the key version
cached in the keyring. ML-KEM keys never rotate, so the current version is the
only one.
"""

from __future__ import annotations

from typing import Any, Final

from kmscore.crypto import asymmetric
from kmscore.model.keyspecs import check_algorithm
from kmscore.model.validation import Blob, String
from kmscore.operations.asymmetric import usage_key
from kmscore.operations.common import DRY_RUN, GRANT_TOKENS, KEY_ID, dry_run
from kmscore.operations.registry import operation
from kmscore.service import Call

ENCAPSULATION_ALGORITHM: Final = String(required=True, enum=("ML_KEM",))
_USAGE: Final = "ENCAPSULATE_DECAPSULATE"


@operation(
    "Encapsulate",
    {
        "KeyId": KEY_ID,
        "EncapsulationAlgorithm": ENCAPSULATION_ALGORITHM,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def encapsulate(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Encapsulate: a fresh shared secret and its ciphertext under an ML-KEM key."""
    key = usage_key(call, req["KeyId"], _USAGE)
    algorithm = req["EncapsulationAlgorithm"]
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    call.authorize(key)
    dry_run(req)
    loaded = call.service.keyring.asymmetric(key, key.current_version).key
    secret, ciphertext = asymmetric.encapsulate(loaded, algorithm)
    return {
        "KeyId": key.arn,
        "SharedSecret": secret,
        "SharedSecretCiphertextBlob": ciphertext,
        "EncapsulationAlgorithm": algorithm,
    }


@operation(
    "Decapsulate",
    {
        "KeyId": KEY_ID,
        "SharedSecretCiphertextBlob": Blob(required=True, min_len=1, max_len=6144),
        "EncapsulationAlgorithm": ENCAPSULATION_ALGORITHM,
        "GrantTokens": GRANT_TOKENS,
        "DryRun": DRY_RUN,
    },
)
def decapsulate(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Decapsulate: the shared secret of a ciphertext made by Encapsulate.

    A ciphertext of the wrong length is InvalidCiphertextException; one of the
    right length always answers 32 bytes (FIPS 203 implicit rejection), as AWS does.
    """
    key = usage_key(call, req["KeyId"], _USAGE)
    algorithm = req["EncapsulationAlgorithm"]
    check_algorithm(key.key_spec, key.key_usage, algorithm)
    call.authorize(key)
    dry_run(req)
    loaded = call.service.keyring.asymmetric(key, key.current_version).key
    secret = asymmetric.decapsulate(loaded, algorithm, req["SharedSecretCiphertextBlob"])
    return {"KeyId": key.arn, "SharedSecret": secret, "EncapsulationAlgorithm": algorithm}
