"""Encryption context: validation and the canonical, unambiguous encoding.

The canonical form is a u16 pair count, then the pairs sorted by the UTF-8
bytes of the key, each key and value as a u16 length followed by its UTF-8
bytes (big-endian). Strings are never joined with delimiters, so
``{"ab": "c"}`` and ``{"a": "bc"}`` encode differently. The canonical bytes
follow the blob header in the AES-GCM AAD.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from kmscore.errors import ValidationException

__all__ = ["MAX_CONTEXT_BYTES", "EncryptionContext", "canonical", "prepare", "validate"]

EncryptionContext = dict[str, str]

#: Our limit on the canonical encoding; AWS documents none, and the
#: Encryption SDK's message header needs the context to stay small.
MAX_CONTEXT_BYTES: Final = 8192
_EMPTY: Final = b"\x00\x00"
_U16: Final = struct.Struct(">H")
# Applications reuse a few contexts; remember their encodings. Keyed by the
# items as given, so only an equal, already-validated context can hit. The
# cached dict is shared: callers must not mutate it.
_MEMO: dict[tuple[tuple[object, object], ...], tuple[EncryptionContext, bytes]] = {}
# Small: a memo that new contexts keep filling costs more to refill and clear
# than it saves (measured: 2.5 us a fresh context at 256 entries, 3.8 at 4096).
_MEMO_SIZE: Final = 256


def validate(context: object, field: str = "EncryptionContext") -> EncryptionContext:
    """Check an encryption context from a request and return it as a plain dict.

    Args:
        context: The request's value: a mapping of str to str, or None.
        field: The request field, named in error messages.

    Returns:
        The context as a new dict (empty when ``context`` is None).

    Raises:
        ValidationException: not a mapping of non-empty str keys to str values,
            not encodable as UTF-8, or larger than :data:`MAX_CONTEXT_BYTES`.
    """
    return prepare(context, field)[0]


def prepare(context: object, field: str = "EncryptionContext") -> tuple[EncryptionContext, bytes]:
    """Validate a request's encryption context and encode it, in one pass.

    Returns:
        The context as a dict, and its canonical bytes.

    Raises:
        ValidationException: as :func:`validate`.
    """
    if context is None:
        return {}, _EMPTY
    try:
        memo_key = tuple(context.items())  # type: ignore[attr-defined]
        hit = _MEMO.get(memo_key)
    except (AttributeError, TypeError):
        memo_key, hit = None, None
    if hit is not None:
        return hit
    checked = _check(context, field)
    result = checked, canonical(checked, field)
    if memo_key is not None:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[memo_key] = result
    return result


def _check(context: object, field: str) -> EncryptionContext:
    if not isinstance(context, Mapping):
        raise ValidationException(f"{field} must be a map of strings to strings.")
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationException(f"{field} keys and values must be strings.")
        if not k:
            raise ValidationException(f"{field} keys must not be empty.")
    return dict(context)


def canonical(context: Mapping[str, str], field: str = "EncryptionContext") -> bytes:
    """The canonical bytes of a (validated) encryption context.

    Raises:
        ValidationException: a string is not valid Unicode, or the encoding
            exceeds :data:`MAX_CONTEXT_BYTES`.
    """
    if not context:
        return _EMPTY
    # Sorting the str keys sorts their UTF-8 encodings: UTF-8 keeps code point order.
    pack = _U16.pack
    parts = [pack(len(context))]
    try:
        for k in sorted(context):
            key = k.encode()
            value = context[k].encode()
            parts += (pack(len(key)), key, pack(len(value)), value)
    except UnicodeEncodeError:
        raise ValidationException(f"{field} must be valid Unicode.") from None
    except struct.error:
        pass  # a string of 64 KiB or more: too large, as below
    else:
        encoded = b"".join(parts)
        if len(encoded) <= MAX_CONTEXT_BYTES:
            return encoded
    raise ValidationException(
        f"{field} is too large: its encoding exceeds {MAX_CONTEXT_BYTES} bytes."
    )
