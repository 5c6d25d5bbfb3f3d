"""The fast builder behind :func:`kmscore.audit.event.build_event`.

Caches and encoders that make an event's parts and their stored JSON at once:
identities, resource lists, parameter sections, the clock, and the random
digits of event and request ids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Final

from kmscore.audit._format import compact_json
from kmscore.audit.identity import Identity
from kmscore.audit.scrub import (
    DROP,
    ReadOnlyDict,
    cloudtrail_name,
    is_context_map,
    is_secret_name,
    scrub_context,
    scrub_value,
)

KEY_RESOURCE_TYPE: Final = "AWS::KMS::Key"
_set_item: Final = dict.__setitem__


def resource(arn: str, account_id: str) -> dict[str, str]:
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


class Unusual(Exception):
    """An argument the fast builder does not handle; the general path does."""


escaped: dict[str, str] = {}


def escape_cached(text: str) -> str:
    found = escaped.get(text)
    if found is None:
        if len(escaped) >= _CACHE_LIMIT:
            escaped.clear()
        found = escaped[text] = _json_string(text)
    return found


_identities: dict[Identity, tuple[dict[str, Any], str]] = {}
_resources: dict[tuple[str, tuple[str, ...]], tuple[list[Any], str]] = {}


# The same Identity object comes back call after call (callers cache theirs): found
# by id first, without hashing the dataclass. The memo keeps the object, so its id
# stays its own.
_identity_memo: dict[int, tuple[Identity, tuple[dict[str, Any], str]]] = {}


def identity_part(identity: Identity | Mapping[str, str | None]) -> tuple[dict[str, Any], str]:
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
        raise Unusual
    clean = scrub_value(raw, 1, False, True)
    if type(clean) is not ReadOnlyDict:
        raise Unusual
    part = (clean, compact_json(clean))
    if cacheable:
        if len(_identities) >= _CACHE_LIMIT:
            _identities.clear()
        _identities[identity] = part  # type: ignore[index]
    return part


def resources_part(resources: Sequence[str], account_id: str) -> tuple[list[Any], str]:
    try:
        key = (account_id, tuple(resources) if type(resources) is not tuple else resources)
        return _resources[key]
    except KeyError:
        pass
    except TypeError:
        raise Unusual from None
    if any(type(arn) is not str for arn in key[1]):
        raise Unusual
    clean = scrub_value([resource(arn, account_id) for arn in key[1]], 1, False, True)
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
        if is_secret_name(key):
            kind = _SECRET
        else:
            kind = _CONTEXT if is_context_map(key) else _OTHER
        name = cloudtrail_name(key)
        found = (kind, name, _json_string(name) + ":")
        if type(key) is str:
            if len(_member_names) >= _CACHE_LIMIT:
                _member_names.clear()
            _member_names[key] = found
    return found


_JSON_CONSTANTS: Final = {None: "null", True: "true", False: "false"}


def section(value: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """A parameter section scrubbed like ``scrub_struct(value, 1, True)``, and its JSON.

    Strings, ints, booleans, None and string-to-string encryption contexts are
    encoded here; any other value goes through the scrubber and the C encoder.
    """
    if value is None:
        return None, "null"
    if type(value) is not dict and not isinstance(value, Mapping):
        raise Unusual
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
            clean = scrub_value(item, 1, True, True)
            if clean is DROP:
                continue
            out[name] = clean
            parts.append(prefix + compact_json(clean))
        elif kind == _CONTEXT:
            if type(item) is dict:
                context = ReadOnlyDict()
                pairs = []
                for k, v in item.items():
                    if (type(k) is str or isinstance(k, str)) and (
                        type(v) is str or isinstance(v, str)
                    ):
                        _set_item(context, k, v)
                        pairs.append(f"{escape(k)}:{escape(v)}")
            else:
                scrubbed = scrub_context(item, True)
                if scrubbed is DROP:
                    continue
                context = scrubbed  # type: ignore[assignment]
                pairs = [f"{escape(k)}:{escape(v)}" for k, v in context.items()]
            out[name] = context
            parts.append(prefix + "{" + ",".join(pairs) + "}")
    if len(parts) != len(out):  # two members with one CloudTrail name: the last wins
        return ReadOnlyDict(out), compact_json(out)
    return ReadOnlyDict(out), "{" + ",".join(parts) + "}"


# The current second as CloudTrail writes it, and as a JSON string; one per second.
second_text: tuple[int, str, str] = (-1, "", "")
"""The current second: (epoch second, as CloudTrail writes it, as a JSON string)."""
_time: Final = time.time


def tick(second: int) -> tuple[int, str, str]:
    """Make ``second`` the current one of :data:`second_text`, and return it."""
    global second_text
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    second_text = (second, text, _json_string(text))
    return second_text


def now() -> tuple[str, str]:
    """The current second as CloudTrail writes it, and as a JSON string."""
    second = int(_time())
    current = second_text
    if current[0] != second:
        current = tick(second)
    return current[1], current[2]


# Random digits for event and request ids, 64 hex digits (two UUIDs) per event,
# drawn from the OS 64 events at a time. list.pop is atomic, so threads never
# share digits; a forked child drops the parent's.
random_hex: list[str] = []
os.register_at_fork(after_in_child=random_hex.clear)


def more_random_hex() -> str:
    raw = os.urandom(32 * 64).hex()
    random_hex.extend([raw[i : i + 64] for i in range(64, len(raw), 64)])
    return raw[:64]


_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def uuid4(digits: str) -> str:
    """A version 4 UUID string from 32 random hex digits."""
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:32]}"
    )
