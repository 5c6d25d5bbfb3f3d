"""Audit events shaped like CloudTrail KMS events, and the scrubber that guards them.

:func:`build_event` makes one event per KMS call, allowed or denied. The trail
(:class:`kmscore.audit.AuditTrail`) passes every event it is given through
:func:`scrub_event` again before writing it, so nothing reaches the disk without
being scrubbed, whoever built the dictionary and whatever was added to it later.

The scrubbing rule
------------------
An audit record never holds plaintext, ciphertext or key material, not even
hashed (a hash of a low-entropy plaintext is a plaintext oracle). The scrubber
keeps an allow-list of value types and a deny-list of field names:

* Values kept: ``str``, ``int``, ``bool``, ``None``, finite ``float``, enum
  members (as their value), ``datetime`` (as ISO 8601 UTC), mappings with
  ``str`` keys and lists/tuples of these. Everything else is dropped at any
  depth: ``bytes``, ``bytearray``, ``memoryview``, and any other object (its
  ``str()`` could carry anything). A dropped value is removed with its field or
  list slot: no placeholder, no hash, no length.
* Fields dropped by name, at any depth and in any letter case, whatever their
  value: :data:`SECRET_FIELDS` (``Plaintext``, ``CiphertextBlob``,
  ``Signature``, ``Mac``, ``Message``, ``PublicKey``, ``GrantTokens``,
  ``ImportToken``, ...), and every name starting with ``WrappingKey`` except
  ``WrappingKeySpec``. The deny-list covers a secret that arrives as ``str``
  (base64 from a wire frontend) where the type rule cannot see it.
* Kept: key ids and ARNs, aliases, key specs, key usages, algorithms, grant
  names and operations, policies, tags, and encryption contexts. AWS documents
  that the encryption context is not secret and is logged; its pairs are kept
  verbatim (keys are user data, so neither renamed nor filtered by name; values
  must be strings).

Inside ``requestParameters``, ``responseElements`` and ``additionalEventData``
member names are written the way CloudTrail writes them, with the first letter
lowered (``KeyId`` becomes ``keyId``), except the keys of encryption-context maps.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

__all__ = [
    "EVENT_VERSION",
    "RESERVED_FIELDS",
    "SECRET_FIELDS",
    "Identity",
    "build_event",
    "scrub_event",
    "scrub_parameters",
]

EVENT_VERSION: Final = "1.08"
EVENT_SOURCE: Final = "kms.amazonaws.com"
KEY_RESOURCE_TYPE: Final = "AWS::KMS::Key"

SECRET_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "AttestationDocument",
        "CiphertextBlob",
        "CiphertextForRecipient",
        "EncryptedKeyMaterial",
        "GrantToken",
        "GrantTokens",
        "ImportToken",
        "KeyMaterial",
        "KeyStorePassword",
        "Mac",
        "Message",
        "Plaintext",
        "PrivateKeyCiphertextBlob",
        "PrivateKeyPlaintext",
        "PublicKey",
        "RawSecretAccessKey",
        "SecretAccessKey",
        "SharedSecret",
        "Signature",
        "SourceCiphertextBlob",
        "XksProxyAuthenticationCredential",
    }
)
"""Field names whose value is dropped wherever they appear, in any letter case."""

RESERVED_FIELDS: Final[frozenset[str]] = frozenset({"seq", "prevHash"})
"""Top-level names the trail adds to each record; an event may not carry them."""

_SECRET_LOWER: Final = frozenset(name.lower() for name in SECRET_FIELDS)
_WRAPPING_KEY_PREFIX: Final = "wrappingkey"
_WRAPPING_KEY_KEPT: Final = "wrappingkeyspec"

# Members whose value is a string-to-string map of user data (encryption
# contexts). Their keys are kept as given: renaming or filtering them would
# make the logged context differ from the one the caller used.
_CONTEXT_MAPS: Final = frozenset(
    name.lower()
    for name in (
        "EncryptionContext",
        "SourceEncryptionContext",
        "DestinationEncryptionContext",
        "EncryptionContextSubset",
        "EncryptionContextEquals",
    )
)

# Parameter sections whose member names CloudTrail writes in lower camel case.
_PARAMETER_SECTIONS: Final = frozenset(
    {"requestParameters", "responseElements", "additionalEventData"}
)

# Deeper nesting than any KMS request has is dropped, which also ends cycles.
_MAX_DEPTH: Final = 32


class _Dropped:
    """Marker for a value the scrubber removes."""


_DROP: Final = _Dropped()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a call, as CloudTrail's ``userIdentity`` names it.

    Attributes:
        type: ``"IAMUser"``, ``"AssumedRole"``, ``"Root"``, ...
        principal_id: The principal's unique id.
        arn: The principal's ARN, e.g. ``arn:aws:iam::111122223333:user/alice``.
        account_id: The principal's account.
        access_key_id: The access key that signed the request, or None when the
            caller was identified otherwise (Unix peer credentials, in-process).
        user_name: The friendly user name, or None.
    """

    type: str
    principal_id: str
    arn: str
    account_id: str
    access_key_id: str | None = None
    user_name: str | None = None

    def to_event(self) -> dict[str, str]:
        """The identity as CloudTrail's ``userIdentity`` object."""
        out = {
            "type": self.type,
            "principalId": self.principal_id,
            "arn": self.arn,
            "accountId": self.account_id,
        }
        if self.access_key_id is not None:
            out["accessKeyId"] = self.access_key_id
        if self.user_name is not None:
            out["userName"] = self.user_name
        return out


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered in _SECRET_LOWER:
        return True
    return lowered.startswith(_WRAPPING_KEY_PREFIX) and lowered != _WRAPPING_KEY_KEPT


@functools.lru_cache(maxsize=4096)
def _is_context_map(name: str) -> bool:
    return name.lower() in _CONTEXT_MAPS


@functools.lru_cache(maxsize=4096)
def _cloudtrail_name(name: str) -> str:
    return name[:1].lower() + name[1:]


# Exact types passed through unchanged: the common case, checked first for speed.
# Subclasses (IntEnum, StrEnum, bool) take the slower path below.
_PLAIN: Final = frozenset({str, int, bool, type(None)})


def _scrub_value(value: object, depth: int, rename: bool) -> object:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return _scrub_struct(value, depth + 1, rename)  # type: ignore[arg-type]
    if depth > _MAX_DEPTH:
        return _DROP
    # Order matters: IntEnum is an int and StrEnum a str, but write their value.
    if isinstance(value, Enum):
        return _scrub_value(value.value, depth + 1, rename)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, Mapping):
        return _scrub_struct(value, depth + 1, rename)
    if isinstance(value, list | tuple):
        items = (_scrub_value(item, depth + 1, rename) for item in value)
        return [item for item in items if item is not _DROP]
    # bytes, bytearray, memoryview, sets, arbitrary objects: never written.
    return _DROP


def _scrub_context(value: object) -> object:
    if not isinstance(value, Mapping):
        return _DROP
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _scrub_struct(obj: Mapping[Any, Any], depth: int, rename: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if depth > _MAX_DEPTH:
        return out
    for key, value in obj.items():
        if not isinstance(key, str) or _is_secret_name(key):
            continue
        if _is_context_map(key):
            clean = _scrub_context(value)
        else:
            clean = _scrub_value(value, depth, rename)
        if clean is _DROP:
            continue
        out[_cloudtrail_name(key) if rename else key] = clean
    return out


def scrub_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Scrub request parameters or response elements by the module's rule.

    Args:
        parameters: Members named as in the AWS API (``KeyId``, ``Plaintext``,
            ...), values as the operation layer holds them.

    Returns:
        A new JSON-ready dictionary without secrets, member names in lower
        camel case (encryption-context keys kept as given).
    """
    return _scrub_struct(parameters, 0, rename=True)


def scrub_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Scrub a whole event; the trail calls this on everything it writes.

    Applies the type allow-list and the field deny-list everywhere, renames
    members inside the parameter sections, and drops the names the trail
    reserves for itself (:data:`RESERVED_FIELDS`). Idempotent.

    Args:
        event: An event, normally from :func:`build_event`.

    Returns:
        A new JSON-ready dictionary.
    """
    out: dict[str, Any] = {}
    for key, value in event.items():
        if not isinstance(key, str) or key in RESERVED_FIELDS or _is_secret_name(key):
            continue
        if key in _PARAMETER_SECTIONS:
            if value is None:
                clean: object = None
            elif isinstance(value, Mapping):
                clean = _scrub_struct(value, 1, rename=True)
            else:
                clean = _DROP
        else:
            clean = _scrub_value(value, 1, rename=False)
        if clean is not _DROP:
            out[key] = clean
    return out


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _resource(arn: str, account_id: str) -> dict[str, str]:
    # arn:aws:kms:<region>:<account>:key/<id>: the key's own account wins.
    parts = arn.split(":", 5)
    owner = parts[4] if len(parts) == 6 and parts[4] else account_id
    return {"accountId": owner, "type": KEY_RESOURCE_TYPE, "ARN": arn}


def build_event(
    event_name: str,
    *,
    region: str,
    account_id: str,
    identity: Identity | Mapping[str, str | None],
    source_ip: str,
    user_agent: str,
    request_parameters: Mapping[str, Any] | None,
    response_elements: Mapping[str, Any] | None = None,
    resources: Sequence[str] = (),
    read_only: bool,
    error_code: str | None = None,
    error_message: str | None = None,
    additional_event_data: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    event_time: datetime | None = None,
    management_event: bool = True,
) -> dict[str, Any]:
    """Build one scrubbed CloudTrail-shaped event for a KMS call.

    Args:
        event_name: The AWS operation name, e.g. ``"Encrypt"``.
        region: The service's region (``awsRegion``).
        account_id: The service's account (``recipientAccountId``).
        identity: The caller; an :class:`Identity` or a mapping already in
            CloudTrail's ``userIdentity`` shape (a None value is left out).
        source_ip: ``sourceIPAddress``: an IP address, or ``unix:<pid>`` for a
            Unix-socket peer.
        user_agent: The client's user agent string.
        request_parameters: The request's members as named in the AWS API;
            scrubbed here.
        response_elements: The response's members, or None (CloudTrail writes
            null for most data-plane calls and for errors); scrubbed here.
        resources: Full key ARNs the call touched.
        read_only: Whether the operation only reads (``readOnly``).
        error_code: The AWS error code when the call failed or was denied.
        error_message: The error's message (never holds secrets).
        additional_event_data: Extra facts, e.g. ``{"keyMaterialId": ...}``.
        request_id: The request id given to the caller; a new UUID if None.
        event_time: When the call happened; now if None.
        management_event: CloudTrail's ``managementEvent`` flag.

    Returns:
        A JSON-ready dictionary with the CloudTrail KMS event fields.

    Raises:
        ValueError: If ``event_name`` is empty or an error message is given
            without an error code.
    """
    if not event_name:
        raise ValueError("event_name must be a non-empty AWS operation name")
    if error_message is not None and error_code is None:
        raise ValueError("error_message needs an error_code")
    if isinstance(identity, Identity):
        user_identity: Mapping[str, Any] = identity.to_event()
    else:
        user_identity = {k: v for k, v in identity.items() if v is not None}
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity,
        "eventTime": _format_time(event_time or datetime.now(UTC)),
        "eventSource": EVENT_SOURCE,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request_parameters,
        "responseElements": response_elements,
    }
    if error_code is not None:
        event["errorCode"] = error_code
        if error_message is not None:
            event["errorMessage"] = error_message
    if additional_event_data is not None:
        event["additionalEventData"] = additional_event_data
    event.update(
        {
            "requestID": request_id if request_id is not None else str(uuid.uuid4()),
            "eventID": str(uuid.uuid4()),
            "readOnly": bool(read_only),
            "resources": [_resource(arn, account_id) for arn in resources],
            "eventType": "AwsApiCall",
            "managementEvent": bool(management_event),
            "recipientAccountId": account_id,
            "eventCategory": "Management",
        }
    )
    return scrub_event(event)
