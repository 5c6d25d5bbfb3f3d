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

Sealed events: scrubbing once, not twice
----------------------------------------
:func:`build_event` returns an :class:`AuditEvent`, a ``dict`` that also
carries the JSON it will be stored as, made by the scrubber when the event was
built. The trail writes that JSON instead of scrubbing and encoding the event
again (the hot path of every KMS call). What is written still always comes out
of the scrubber:

* Changing the event's own members (``event["x"] = ...``, ``update``, ``del``,
  ``pop``, ...) unseals it, and the trail scrubs the whole event again at append.
* Its nested containers (``userIdentity``, ``requestParameters``, ``resources``,
  encryption contexts, ...) are read-only: mutating them raises ``TypeError``.
  Build a new event, or replace the member at the top level. Copies
  (``copy.deepcopy``, ``dict(...)``) are ordinary dictionaries.
* Any other mapping, including an ``AuditEvent`` subclass, is scrubbed at append.

Even a low-level ``dict.__setitem__`` on a sealed event cannot put a secret in
the trail: the stored JSON is what the scrubber produced, so such a change is
merely not recorded.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Final, NoReturn, Self

from kmscore.audit._format import compact_json

__all__ = [
    "EVENT_VERSION",
    "RESERVED_FIELDS",
    "SECRET_FIELDS",
    "AuditEvent",
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


# --- read-only containers and sealed events ---------------------------------------

_READ_ONLY_MESSAGE: Final = (
    "the members of a built audit event are read-only; replace a top-level member "
    "or build a new event"
)


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(_READ_ONLY_MESSAGE)


class _ReadOnlyDict(dict[str, Any]):
    """A dictionary inside a sealed event: reads like a dict, refuses changes."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)  # copies and pickles are ordinary dictionaries


class _ReadOnlyList(list[Any]):
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
    setattr(_ReadOnlyDict, _name, _read_only)
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
    setattr(_ReadOnlyList, _name, _read_only)
del _name


class AuditEvent(dict[str, Any]):
    """An event from :func:`build_event`: a dict sealed with its stored JSON.

    See "Sealed events" in the module docstring: changing a top-level member
    unseals the event (the trail then scrubs it again); nested containers are
    read-only. Constructed directly, an ``AuditEvent`` is not sealed.
    """

    __slots__ = ("_stored", "_time")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Make an unsealed event, like ``dict(*args, **kwargs)``."""
        super().__init__(*args, **kwargs)
        self._stored: bytes | None = None
        self._time: str | None = None

    def sealed_record(self) -> tuple[bytes, str | None] | None:
        """The stored form of the members, and the event time, while sealed.

        Returns:
            ``(rest, eventTime)`` where ``rest`` is the event's stored JSON
            without its opening brace, preceded by a comma (the trail puts its
            chain members in front); None once the event was changed.
        """
        stored = self._stored
        return None if stored is None else (stored, self._time)

    def __setitem__(self, key: str, value: Any) -> None:
        self._stored = None
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._stored = None
        dict.__delitem__(self, key)

    def __ior__(self, other: Any) -> Self:  # type: ignore[misc,override]
        self._stored = None
        dict.update(self, other)
        return self

    def clear(self) -> None:
        """Remove every member (unseals)."""
        self._stored = None
        dict.clear(self)

    def pop(self, *args: Any) -> Any:
        """Like :meth:`dict.pop` (unseals)."""
        self._stored = None
        return dict.pop(self, *args)

    def popitem(self) -> tuple[str, Any]:
        """Like :meth:`dict.popitem` (unseals)."""
        self._stored = None
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Like :meth:`dict.setdefault` (unseals)."""
        self._stored = None
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Like :meth:`dict.update` (unseals)."""
        self._stored = None
        dict.update(self, *args, **kwargs)


_new_event: Final = dict.__new__
_set_item: Final = dict.__setitem__


# --- the scrubber ----------------------------------------------------------------


def _scrub_value(value: object, depth: int, rename: bool, frozen: bool = False) -> object:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return _scrub_struct(value, depth + 1, rename, frozen)  # type: ignore[arg-type]
    if depth > _MAX_DEPTH:
        return _DROP
    # Order matters: IntEnum is an int and StrEnum a str, but write their value.
    if isinstance(value, Enum):
        return _scrub_value(value.value, depth + 1, rename, frozen)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, Mapping):
        return _scrub_struct(value, depth + 1, rename, frozen)
    if isinstance(value, list | tuple):
        items = (_scrub_value(item, depth + 1, rename, frozen) for item in value)
        kept = [item for item in items if item is not _DROP]
        return _ReadOnlyList(kept) if frozen else kept
    # bytes, bytearray, memoryview, sets, arbitrary objects: never written.
    return _DROP


def _scrub_context(value: object, frozen: bool) -> object:
    if type(value) is not dict and not isinstance(value, Mapping):
        return _DROP
    kept = {
        k: v
        for k, v in value.items()
        if (type(k) is str or isinstance(k, str)) and (type(v) is str or isinstance(v, str))
    }
    return _ReadOnlyDict(kept) if frozen else kept


def _scrub_struct(
    obj: Mapping[Any, Any], depth: int, rename: bool, frozen: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if depth <= _MAX_DEPTH:
        for key, value in obj.items():
            if not isinstance(key, str) or _is_secret_name(key):
                continue
            if _is_context_map(key):
                clean = _scrub_context(value, frozen)
            else:
                clean = _scrub_value(value, depth, rename, frozen)
            if clean is _DROP:
                continue
            out[_cloudtrail_name(key) if rename else key] = clean
    return _ReadOnlyDict(out) if frozen else out


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


# --- fast building -----------------------------------------------------------------
#
# build_event makes the event dictionary and, from the same scrubbed values, its
# stored JSON. Fixed members are written from constant text, strings through the
# json module's C escaper, and the parameter sections through its C encoder (the
# one json.dumps uses with these settings), so the bytes equal
# encode_event(scrub_event(event)); the tests check that for arbitrary input.
# Values seen again and again (identities, resource lists, region, user agent)
# are encoded once and cached; their cached containers are read-only.

_CACHE_LIMIT: Final = 4096


class _Unusual(Exception):
    """An argument the fast builder does not handle; the general path does."""


_escaped: dict[str, str] = {}


def _escape_cached(text: str) -> str:
    found = _escaped.get(text)
    if found is None:
        if len(_escaped) >= _CACHE_LIMIT:
            _escaped.clear()
        found = _escaped[text] = _json_string(text)
    return found


_identities: dict[Identity, tuple[dict[str, Any], str]] = {}
_resources: dict[tuple[str, tuple[str, ...]], tuple[list[Any], str]] = {}


# The same Identity object comes back call after call (callers cache theirs): found
# by id first, without hashing the dataclass. The memo keeps the object, so its id
# stays its own.
_identity_memo: dict[int, tuple[Identity, tuple[dict[str, Any], str]]] = {}


def _identity_part(identity: Identity | Mapping[str, str | None]) -> tuple[dict[str, Any], str]:
    if type(identity) is Identity:
        memo = _identity_memo.get(id(identity))
        if memo is not None and memo[0] is identity:
            return memo[1]
        try:
            part = _identities[identity]
        except KeyError:
            cacheable = True
        except TypeError:  # a field that cannot be hashed
            cacheable = False
        else:
            if len(_identity_memo) >= _CACHE_LIMIT:
                _identity_memo.clear()
            _identity_memo[id(identity)] = (identity, part)
            return part
        raw: Mapping[str, Any] = identity.to_event()
    elif isinstance(identity, Mapping):
        cacheable = False
        raw = {k: v for k, v in identity.items() if v is not None}
    else:
        raise _Unusual
    clean = _scrub_value(raw, 1, False, True)
    if type(clean) is not _ReadOnlyDict:
        raise _Unusual
    part = (clean, compact_json(clean))
    if cacheable:
        if len(_identities) >= _CACHE_LIMIT:
            _identities.clear()
        _identities[identity] = part  # type: ignore[index]
    return part


def _resources_part(resources: Sequence[str], account_id: str) -> tuple[list[Any], str]:
    try:
        key = (account_id, tuple(resources) if type(resources) is not tuple else resources)
        return _resources[key]
    except KeyError:
        pass
    except TypeError:
        raise _Unusual from None
    if any(type(arn) is not str for arn in key[1]):
        raise _Unusual
    clean = _scrub_value([_resource(arn, account_id) for arn in key[1]], 1, False, True)
    part = (clean, compact_json(clean))
    if len(_resources) >= _CACHE_LIMIT:
        _resources.clear()
    _resources[key] = part  # type: ignore[assignment]
    return part  # type: ignore[return-value]


# What the scrubber does with a member name inside a parameter section:
# (kind, name as written, name as JSON followed by a colon).
_SECRET, _CONTEXT, _OTHER = 0, 1, 2
_member_names: dict[str, tuple[int, str, str]] = {}


def _member_name(key: str) -> tuple[int, str, str]:
    found = _member_names.get(key)
    if found is None:
        if _is_secret_name(key):
            kind = _SECRET
        else:
            kind = _CONTEXT if _is_context_map(key) else _OTHER
        name = _cloudtrail_name(key)
        found = (kind, name, _json_string(name) + ":")
        if type(key) is str:
            if len(_member_names) >= _CACHE_LIMIT:
                _member_names.clear()
            _member_names[key] = found
    return found


_JSON_CONSTANTS: Final = {None: "null", True: "true", False: "false"}


def _section(value: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """A parameter section scrubbed like ``_scrub_struct(value, 1, True)``, and its JSON.

    Strings, ints, booleans, None and string-to-string encryption contexts are
    encoded here; any other value goes through the scrubber and the C encoder.
    """
    if value is None:
        return None, "null"
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _Unusual
    out: dict[str, Any] = {}
    parts: list[str] = []
    escape = _json_string
    names = _member_names
    for key, item in value.items():
        found = names.get(key) if type(key) is str else None
        if found is None:
            if not isinstance(key, str):
                continue
            found = _member_name(key)
        kind, name, prefix = found
        if kind == _OTHER:
            item_type = type(item)
            if item_type is str:
                out[name] = item
                parts.append(prefix + escape(item))
                continue
            if item_type is int:
                out[name] = item
                parts.append(prefix + int.__repr__(item))
                continue
            if item_type is bool or item is None:
                out[name] = item
                parts.append(prefix + _JSON_CONSTANTS[item])
                continue
            clean = _scrub_value(item, 1, True, True)
            if clean is _DROP:
                continue
            out[name] = clean
            parts.append(prefix + compact_json(clean))
        elif kind == _CONTEXT:
            if type(item) is dict:
                context = _ReadOnlyDict()
                pairs = []
                for k, v in item.items():
                    if (type(k) is str or isinstance(k, str)) and (
                        type(v) is str or isinstance(v, str)
                    ):
                        _set_item(context, k, v)
                        pairs.append(f"{escape(k)}:{escape(v)}")
            else:
                scrubbed = _scrub_context(item, True)
                if scrubbed is _DROP:
                    continue
                context = scrubbed  # type: ignore[assignment]
                pairs = [f"{escape(k)}:{escape(v)}" for k, v in context.items()]
            out[name] = context
            parts.append(prefix + "{" + ",".join(pairs) + "}")
    if len(parts) != len(out):  # two members with one CloudTrail name: the last wins
        return _ReadOnlyDict(out), compact_json(out)
    return _ReadOnlyDict(out), "{" + ",".join(parts) + "}"


# The current second as CloudTrail writes it, and as a JSON string; one per second.
_clock: tuple[int, str, str] = (-1, "", "")
_time: Final = time.time


def _tick(second: int) -> tuple[int, str, str]:
    global _clock
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _clock = clock = (second, text, _json_string(text))
    return clock


def _now() -> tuple[str, str]:
    second = int(_time())
    clock = _clock
    if clock[0] != second:
        clock = _tick(second)
    return clock[1], clock[2]


# Random digits for event and request ids, 64 hex digits (two UUIDs) per event,
# drawn from the OS 64 events at a time. list.pop is atomic, so threads never
# share digits; a forked child drops the parent's.
_random_hex: list[str] = []
os.register_at_fork(after_in_child=_random_hex.clear)


def _more_random_hex() -> str:
    raw = os.urandom(32 * 64).hex()
    _random_hex.extend([raw[i : i + 64] for i in range(64, len(raw), 64)])
    return raw[:64]


_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4(digits: str) -> str:
    """A version 4 UUID string from 32 random hex digits."""
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:32]}"
    )


_EVENT_HEAD: Final = (
    f',"eventVersion":{_json_string(EVENT_VERSION)},"userIdentity":'  # then the identity
)
_EVENT_SOURCE_JSON: Final = _json_string(EVENT_SOURCE)


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
) -> AuditEvent:
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
        A JSON-ready dictionary with the CloudTrail KMS event fields, sealed
        with its stored JSON (see :class:`AuditEvent`).

    Raises:
        ValueError: If ``event_name`` is empty or an error message is given
            without an error code.
    """
    if not event_name:
        raise ValueError("event_name must be a non-empty AWS operation name")
    if error_message is not None and error_code is None:
        raise ValueError("error_message needs an error_code")
    try:
        digits = _random_hex.pop()
    except IndexError:
        digits = _more_random_hex()
    event_id = _uuid4(digits)
    if request_id is None:
        request_id = _uuid4(digits[32:])
    # The fast path: the common argument types, the event and its JSON at once.
    # Anything else raises _Unusual and takes the general path below.
    try:
        if (
            type(event_name) is not str
            or type(region) is not str
            or type(account_id) is not str
            or type(source_ip) is not str
            or type(user_agent) is not str
            or type(request_id) is not str
        ):
            raise _Unusual
        escape = _escaped.get
        user_identity, identity_json = _identity_part(identity)
        if event_time:
            when = _format_time(event_time)
            when_json = _json_string(when)
        else:
            second = int(_time())
            clock = _clock
            if clock[0] != second:
                clock = _tick(second)
            when, when_json = clock[1], clock[2]
        request, request_json = _section(request_parameters)
        if response_elements is None:
            response, response_json = None, "null"
        else:
            response, response_json = _section(response_elements)
        touched, touched_json = _resources_part(resources, account_id)
        read_only = read_only is True or bool(read_only)
        management_event = management_event is True or bool(management_event)
        text = (
            f"{_EVENT_HEAD}{identity_json},"
            f'"eventTime":{when_json},'
            f'"eventSource":{_EVENT_SOURCE_JSON},'
            f'"eventName":{escape(event_name) or _escape_cached(event_name)},'
            f'"awsRegion":{escape(region) or _escape_cached(region)},'
            f'"sourceIPAddress":{escape(source_ip) or _escape_cached(source_ip)},'
            f'"userAgent":{escape(user_agent) or _escape_cached(user_agent)},'
            f'"requestParameters":{request_json},'
            f'"responseElements":{response_json}'
        )
        if error_code is None and additional_event_data is None:
            members: dict[str, Any] = {
                "eventVersion": EVENT_VERSION,
                "userIdentity": user_identity,
                "eventTime": when,
                "eventSource": EVENT_SOURCE,
                "eventName": event_name,
                "awsRegion": region,
                "sourceIPAddress": source_ip,
                "userAgent": user_agent,
                "requestParameters": request,
                "responseElements": response,
                "requestID": request_id,
                "eventID": event_id,
                "readOnly": read_only,
                "resources": touched,
                "eventType": "AwsApiCall",
                "managementEvent": management_event,
                "recipientAccountId": account_id,
                "eventCategory": "Management",
            }
        else:
            members = {
                "eventVersion": EVENT_VERSION,
                "userIdentity": user_identity,
                "eventTime": when,
                "eventSource": EVENT_SOURCE,
                "eventName": event_name,
                "awsRegion": region,
                "sourceIPAddress": source_ip,
                "userAgent": user_agent,
                "requestParameters": request,
                "responseElements": response,
            }
            if error_code is not None:
                if type(error_code) is not str:
                    raise _Unusual
                members["errorCode"] = error_code
                text += f',"errorCode":{_escape_cached(error_code)}'
                if error_message is not None:
                    if type(error_message) is not str:
                        raise _Unusual
                    members["errorMessage"] = error_message
                    text += f',"errorMessage":{_json_string(error_message)}'
            if additional_event_data is not None:
                extra, extra_json = _section(additional_event_data)
                members["additionalEventData"] = extra
                text += f',"additionalEventData":{extra_json}'
            members["requestID"] = request_id
            members["eventID"] = event_id
            members["readOnly"] = read_only
            members["resources"] = touched
            members["eventType"] = "AwsApiCall"
            members["managementEvent"] = management_event
            members["recipientAccountId"] = account_id
            members["eventCategory"] = "Management"
        text += (
            f',"requestID":{_json_string(request_id)},'
            f'"eventID":"{event_id}",'
            f'"readOnly":{"true" if read_only else "false"},'
            f'"resources":{touched_json},'
            '"eventType":"AwsApiCall",'
            f'"managementEvent":{"true" if management_event else "false"},'
            f'"recipientAccountId":{escape(account_id) or _escape_cached(account_id)},'
            '"eventCategory":"Management"}'
        )
        event = _new_event(AuditEvent)
        dict.update(event, members)
        event._stored = text.encode("ascii")
        event._time = when
        return event
    except _Unusual:
        pass
    # Arguments of unusual types: the general path, scrubbed again at append.
    if isinstance(identity, Identity):
        user_identity = identity.to_event()
    else:
        user_identity = {k: v for k, v in identity.items() if v is not None}
    general: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity,
        "eventTime": _format_time(event_time) if event_time else _now()[0],
        "eventSource": EVENT_SOURCE,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request_parameters,
        "responseElements": response_elements,
    }
    if error_code is not None:
        general["errorCode"] = error_code
        if error_message is not None:
            general["errorMessage"] = error_message
    if additional_event_data is not None:
        general["additionalEventData"] = additional_event_data
    general.update(
        {
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": bool(read_only),
            "resources": [_resource(arn, account_id) for arn in resources],
            "eventType": "AwsApiCall",
            "managementEvent": bool(management_event),
            "recipientAccountId": account_id,
            "eventCategory": "Management",
        }
    )
    return AuditEvent(scrub_event(general))
