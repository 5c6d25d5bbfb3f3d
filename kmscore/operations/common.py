"""Request members and helpers shared by several operations."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from kmscore.errors import (
    DryRunOperationException,
    InvalidKeyUsageException,
    InvalidMarkerException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.key import KeyRecord
from kmscore.model.validation import Blob, Boolean, Integer, List, Map, String, Structure

KEY_ID: Final = String(required=True, min_len=1, max_len=2048)
OPTIONAL_KEY_ID: Final = String(min_len=1, max_len=2048)
GRANT_TOKENS: Final = List(item=String(min_len=1, max_len=8192), min_len=0, max_len=10)
LIMIT: Final = Integer(min_value=1, max_value=1000)
MARKER: Final = String(min_len=1, max_len=1024, pattern=r"[\u0020-\u00FF]*")
CONTEXT: Final = Map()
DRY_RUN: Final = Boolean()
DRY_RUN_MODIFIERS: Final = List(item=String(enum=("IGNORE_CIPHERTEXT",)))
CIPHERTEXT: Final = Blob(required=True, min_len=1, max_len=6144)
ENCRYPTION_ALGORITHM: Final = String(
    enum=("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
)
DATA_KEY_SPEC: Final = String(enum=("AES_256", "AES_128"))
NUMBER_OF_BYTES: Final = Integer(min_value=1, max_value=1024)
# Refused in the handlers (Nitro Enclaves attestation), but still well-typed.
RECIPIENT: Final = Structure(
    members={
        "KeyEncryptionAlgorithm": String(enum=("RSAES_OAEP_SHA_256",)),
        "AttestationDocument": Blob(min_len=1, max_len=262144),
    }
)
DEFAULT_LIMIT: Final = 100


def page_args(req: dict[str, Any]) -> tuple[int, str | None]:
    """The Limit (default 100) and decoded Marker of a paged request.

    Raises:
        InvalidMarkerException: the marker is not one this service issued.
    """
    limit = req.get("Limit", DEFAULT_LIMIT)
    marker = req.get("Marker")
    if marker is None:
        return limit, None
    try:
        after = base64.urlsafe_b64decode(marker.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidMarkerException("The marker is not valid.") from None
    if not after.startswith("m1:"):
        raise InvalidMarkerException("The marker is not valid.")
    return limit, after[3:]


def page_result(items: list[Any], limit: int, last: str | None, name: str) -> dict[str, Any]:
    """The paged response: items, Truncated and NextMarker.

    ``items`` holds up to ``limit + 1`` entries; the extra one only tells
    that more follow.
    """
    out: dict[str, Any] = {name: items[:limit], "Truncated": len(items) > limit}
    if len(items) > limit and last is not None:
        out["NextMarker"] = base64.urlsafe_b64encode(f"m1:{last}".encode()).decode("ascii")
    return out


def data_key_length(req: dict[str, Any]) -> int:
    """The data key length from KeySpec or NumberOfBytes (exactly one).

    Raises:
        ValidationException: neither or both are given.
    """
    spec, n = req.get("KeySpec"), req.get("NumberOfBytes")
    if spec is None and n is None:
        raise ValidationException("Please specify either number of bytes or key spec.")
    if spec is not None and n is not None:
        raise ValidationException(
            "Please specify either number of bytes or key spec, but not both."
        )
    if n is not None:
        return int(n)
    return 32 if spec == "AES_256" else 16


def require_symmetric_encryption(key: KeyRecord, algorithm: str | None = None) -> None:
    """Refuse keys that are not symmetric ENCRYPT_DECRYPT keys.

    Raises:
        InvalidKeyUsageException: the key's usage or spec does not fit, or the
            algorithm is not SYMMETRIC_DEFAULT.
    """
    if key.key_usage != "ENCRYPT_DECRYPT" or key.key_spec != "SYMMETRIC_DEFAULT":
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage} and key spec is {key.key_spec}, "
            "which is not valid for this operation."
        )
    if algorithm is not None and algorithm != "SYMMETRIC_DEFAULT":
        raise InvalidKeyUsageException(
            f"The encryption algorithm {algorithm} is not valid for {key.arn}."
        )


def refuse_recipient(req: dict[str, Any]) -> None:
    """Nitro Enclaves attestation has no meaning here.

    Raises:
        UnsupportedOperationException: a Recipient was given.
    """
    if "Recipient" in req:
        raise UnsupportedOperationException(
            "Recipient (Nitro Enclaves attestation) is not supported by this KMS."
        )


def dry_run(req: dict[str, Any]) -> None:
    """End a checked-and-authorized request that asked for DryRun.

    Raises:
        DryRunOperationException: DryRun is true.
    """
    if req.get("DryRun"):
        raise DryRunOperationException()
