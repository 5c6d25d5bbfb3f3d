"""The scrubber: what an audit record may hold, applied to every event written.

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
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, NoReturn

__all__ = [
    "DROP",
    "RESERVED_FIELDS",
    "SECRET_FIELDS",
    "ReadOnlyDict",
    "ReadOnlyList",
    "cloudtrail_name",
    "format_time",
    "is_context_map",
    "is_secret_name",
    "scrub_context",
    "scrub_event",
    "scrub_parameters",
    "scrub_value",
]

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
        "SharedSecretCiphertextBlob",
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


DROP: Final = _Dropped()


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a field of this name is dropped whatever its value (any letter case)."""
    lowered = name.lower()
    if lowered in _SECRET_LOWER:
        return True
    return lowered.startswith(_WRAPPING_KEY_PREFIX) and lowered != _WRAPPING_KEY_KEPT


@functools.lru_cache(maxsize=4096)
def is_context_map(name: str) -> bool:
    """Whether a field of this name holds an encryption context (kept verbatim)."""
    return name.lower() in _CONTEXT_MAPS


@functools.lru_cache(maxsize=4096)
def cloudtrail_name(name: str) -> str:
    """A member name as CloudTrail writes it in a parameter section (``KeyId`` -> ``keyId``)."""
    return name[:1].lower() + name[1:]


# Exact types passed through unchanged: the common case, checked first for speed.
# Subclasses (IntEnum, StrEnum, bool) take the slower path below.
_PLAIN: Final = frozenset({str, int, bool, type(None)})


# --- read-only containers ---------------------------------------

_READ_ONLY_MESSAGE: Final = (
    "the members of a built audit event are read-only; replace a top-level member "
    "or build a new event"
)


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(_READ_ONLY_MESSAGE)


class ReadOnlyDict(dict[str, Any]):
    """A dictionary inside a sealed event: reads like a dict, refuses changes."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)  # copies and pickles are ordinary dictionaries


class ReadOnlyList(list[Any]):
    """A list inside a sealed event: reads like a list, refuses changes."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return list, (list(self),)


for _name in (
    "__setitem__",
    "__delitem__",
    "__ior__",
    "clear",
    "pop",
    "popitem",
    "setdefault",
    "update",
):
    setattr(ReadOnlyDict, _name, _read_only)
for _name in (
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "sort",
    "reverse",
):
    setattr(ReadOnlyList, _name, _read_only)
del _name


# --- the scrubber ----------------------------------------------------------------


def scrub_value(value: object, depth: int, rename: bool, frozen: bool = False) -> object:
    """``value`` by the rule, or :data:`DROP`; ``frozen`` builds read-only containers."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return scrub_struct(value, depth + 1, rename, frozen)  # type: ignore[arg-type]
    if depth > _MAX_DEPTH:
        return DROP
    # Order matters: IntEnum is an int and StrEnum a str, but write their value.
    if isinstance(value, Enum):
        return scrub_value(value.value, depth + 1, rename, frozen)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else DROP
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return scrub_struct(value, depth + 1, rename, frozen)
    if isinstance(value, list | tuple):
        items = (scrub_value(item, depth + 1, rename, frozen) for item in value)
        kept = [item for item in items if item is not DROP]
        return ReadOnlyList(kept) if frozen else kept
    # bytes, bytearray, memoryview, sets, arbitrary objects: never written.
    return DROP


def scrub_context(value: object, frozen: bool) -> object:
    """An encryption context's string pairs, or :data:`DROP` for a non-mapping."""
    if type(value) is not dict and not isinstance(value, Mapping):
        return DROP
    kept = {
        k: v
        for k, v in value.items()
        if (type(k) is str or isinstance(k, str)) and (type(v) is str or isinstance(v, str))
    }
    return ReadOnlyDict(kept) if frozen else kept


def scrub_struct(
    obj: Mapping[Any, Any], depth: int, rename: bool, frozen: bool = False
) -> dict[str, Any]:
    """A mapping's members by the rule; ``rename`` lowers their first letter."""
    out: dict[str, Any] = {}
    if depth <= _MAX_DEPTH:
        for key, value in obj.items():
            if not isinstance(key, str) or is_secret_name(key):
                continue
            if is_context_map(key):
                clean = scrub_context(value, frozen)
            else:
                clean = scrub_value(value, depth, rename, frozen)
            if clean is DROP:
                continue
            out[cloudtrail_name(key) if rename else key] = clean
    return ReadOnlyDict(out) if frozen else out


def scrub_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Scrub request parameters or response elements by the module's rule.

    Args:
        parameters: Members named as in the AWS API (``KeyId``, ``Plaintext``,
            ...), values as the operation layer holds them.

    Returns:
        A new JSON-ready dictionary without secrets, member names in lower
        camel case (encryption-context keys kept as given).
    """
    return scrub_struct(parameters, 0, rename=True)


def scrub_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Scrub a whole event; the trail calls this on everything it writes unsealed.

    Applies the type allow-list and the field deny-list everywhere, renames
    members inside the parameter sections, and drops the names the trail
    reserves for itself (:data:`RESERVED_FIELDS`). Idempotent.

    Args:
        event: An event, normally from :func:`build_event`.

    Returns:
        A new JSON-ready dictionary (a plain ``dict``, never sealed).
    """
    out: dict[str, Any] = {}
    for key, value in event.items():
        if not isinstance(key, str) or key in RESERVED_FIELDS or is_secret_name(key):
            continue
        if key in _PARAMETER_SECTIONS:
            if value is None:
                clean: object = None
            elif isinstance(value, Mapping):
                clean = scrub_struct(value, 1, rename=True)
            else:
                clean = DROP
        else:
            clean = scrub_value(value, 1, rename=False)
        if clean is not DROP:
            out[key] = clean
    return out


def format_time(moment: datetime) -> str:
    """A time as CloudTrail writes it: ISO 8601, UTC, whole seconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
