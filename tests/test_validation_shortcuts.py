"""Each request member's shortcut check answers exactly as its full check.

:attr:`kmscore.model.validation.Member.fast` skips the full check for the
common case (an exact ``str``, ``bytes``, ``int`` or ``dict`` within limits);
for every value, of every shape's members, it must return what the full check
returns or raise what it raises.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmscore.errors import ValidationException
from kmscore.model import validation as v
from kmscore.operations import OPERATIONS


class _Str(str):
    pass


def _members() -> list[v.Member]:
    seen: dict[int, v.Member] = {}
    for op in OPERATIONS.values():
        for member in op.shape.values():
            seen.setdefault(id(member), member)
    return list(seen.values())


MEMBERS = _members()

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["AES_256", "AES_128", "SYMMETRIC_DEFAULT", "", "x" * 3000]),
    st.binary(max_size=40),
    st.builds(bytearray, st.binary(max_size=8)),
    st.integers(min_value=-5, max_value=2**40),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    st.builds(_Str, st.text(max_size=5)),
    st.lists(st.text(max_size=5), max_size=3),
    st.floats(allow_nan=False),
)


def _outcome(check: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", check(value)
    except v._Invalid as exc:
        return "invalid", (exc.constraint, exc.subpath)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=400, deadline=None)
@given(index=st.integers(min_value=0, max_value=len(MEMBERS) - 1), value=values)
def test_fast_agrees_with_check(index: int, value: Any) -> None:
    member = MEMBERS[index]
    fast = _outcome(member.fast, value)
    full = _outcome(member.check, value)
    assert fast == full
    if fast[0] == "ok":
        assert type(fast[1]) is type(full[1])


def test_every_kind_of_member_has_a_shortcut_that_is_taken() -> None:
    kinds = {type(m) for m in MEMBERS if m.fast is not m.check}
    assert {v.String, v.Blob, v.Integer, v.Map} <= kinds


OPERATION_NAMES = sorted(OPERATIONS)


def _request_outcome(check: Any, request: Any) -> tuple[str, Any]:
    try:
        return "ok", check(request)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(OPERATION_NAMES),
    picks=st.lists(st.tuples(st.integers(min_value=0, max_value=40), values), max_size=5),
    unknown=st.sampled_from([None, "Bogus", "keyId"]),
)
def test_operation_validator_answers_as_validate(
    name: str, picks: list[tuple[int, Any]], unknown: str | None
) -> None:
    """Operation.validator, made once per shape, accepts, returns and refuses as validate()."""
    op = OPERATIONS[name]
    names = list(op.shape)
    request: dict[str, Any] = {}
    for index, value in picks:
        request[names[index % len(names)] if names else "Bogus"] = value
    if unknown is not None:
        request[unknown] = "x"
    assert _request_outcome(op.validator, request) == _request_outcome(
        lambda r: v.validate(op.shape, r), request
    )


def test_operation_validator_takes_well_formed_requests_and_refuses_the_rest() -> None:
    """The common GenerateDataKey request passes; a missing, null or mistyped member does not."""
    check = OPERATIONS["GenerateDataKey"].validator
    good = {"KeyId": "alias/app", "KeySpec": "AES_256", "EncryptionContext": {"a": "b"}}
    assert check(good) == good
    assert check(good) is not good
    for bad, says in (
        ({"KeySpec": "AES_256"}, "Value at 'keyId' failed to satisfy constraint: Member must not"),
        ({**good, "KeyId": None}, "Value at 'keyId' failed to satisfy constraint: Member must not"),
        ({**good, "KeySpec": "AES_512"}, "Value at 'keySpec' failed to satisfy constraint"),
        ({**good, "Extra": 1}, "Unknown parameter Extra."),
        ({**good, "EncryptionContext": {"a": 1}}, "Value at 'encryptionContext'"),
    ):
        with pytest.raises(ValidationException) as raised:
            check(bad)
        assert says in raised.value.message
