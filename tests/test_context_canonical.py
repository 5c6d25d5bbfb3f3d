"""The canonical encoding of an encryption context against a plain reference.

The encoder sorts the str keys (UTF-8 keeps code point order) and packs
lengths and bytes; the reference sorts the encoded pairs, as the format says.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmscore.errors import ValidationException
from kmscore.model import context as ec


def reference(context: dict[str, str]) -> bytes:
    if not context:
        return b"\x00\x00"
    pairs = sorted((k.encode(), v.encode()) for k, v in context.items())
    out = struct.pack(">H", len(pairs))
    for k, v in pairs:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=12), max_size=8))
def test_canonical_matches_the_reference(context: dict[str, str]) -> None:
    expected = reference(context)
    if len(expected) > ec.MAX_CONTEXT_BYTES:
        with pytest.raises(ValidationException):
            ec.canonical(context)
    else:
        assert ec.canonical(context) == expected
        assert ec.prepare(context) == (context, expected)


def test_too_large_and_not_unicode_are_refused() -> None:
    with pytest.raises(ValidationException, match="too large"):
        ec.canonical({"k": "v" * ec.MAX_CONTEXT_BYTES})
    with pytest.raises(ValidationException, match="too large"):
        ec.canonical({"k": "v" * 70_000})
    with pytest.raises(ValidationException, match="Unicode"):
        ec.canonical({"k": "\ud800"})
