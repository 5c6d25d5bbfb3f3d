"""Typed views of condition values, from the policy side and the request side.

Policy values are parsed once, when the policy is read, and a bad one is a
:class:`PolicyProblem`. Request values come from the request context and are
converted on each evaluation; a value that cannot be converted is "no match",
never an error, because the request context is built by the service itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

__all__ = [
    "ConditionValue",
    "PolicyProblem",
    "as_bool",
    "as_bytes",
    "as_datetime",
    "as_number",
    "as_text",
    "parse_base64",
    "parse_bool",
    "parse_date",
    "parse_number",
]

# A value in the request context: one of the scalar kinds, or a tuple of
# strings for a multi-valued condition key (kms:EncryptionContextKeys, ...).
ConditionValue: TypeAlias = str | bool | int | float | datetime | bytes | tuple[str, ...]


class PolicyProblem(Exception):
    """One problem in a policy document, before the parser says where it is."""


_EPOCH = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_YEAR_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def parse_date(text: str) -> datetime:
    """A policy date: W3C ISO 8601 or epoch seconds, as an aware UTC datetime.

    A string of digits is epoch seconds (so a bare year is not accepted). A date
    or time without an offset is taken as UTC.

    Raises:
        PolicyProblem: The text is not a date.
    """
    try:
        if _EPOCH.fullmatch(text):
            return datetime.fromtimestamp(float(text), UTC)
        ym = _YEAR_MONTH.fullmatch(text)
        if ym:
            parsed = datetime(int(ym.group(1)), int(ym.group(2)), 1)
        else:
            parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise PolicyProblem(f"{text!r} is not an ISO 8601 date or epoch time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_number(text: str) -> Decimal:
    """A policy number (integer or decimal) as an exact Decimal.

    Raises:
        PolicyProblem: The text is not a finite number.
    """
    if not _NUMBER.fullmatch(text):
        raise PolicyProblem(f"{text!r} is not a number")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
        raise PolicyProblem(f"{text!r} is not a number") from None


def parse_bool(text: str) -> bool:
    """A policy boolean: ``true`` or ``false`` in any case.

    Raises:
        PolicyProblem: The text is neither.
    """
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise PolicyProblem(f"{text!r} is not true or false")


def parse_base64(text: str) -> bytes:
    """A policy binary value, base64-encoded.

    Raises:
        PolicyProblem: The text is not valid base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyProblem(f"{text!r} is not base64") from None


def as_text(value: ConditionValue) -> str | None:
    """A request value as the string a String or Arn operator compares."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def as_number(value: ConditionValue) -> int | float | Decimal | None:
    """A request value as a number, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return Decimal(value)
    return None


def as_datetime(value: ConditionValue) -> datetime | None:
    """A request value as an aware datetime, or None when it is not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            return None
    if isinstance(value, str):
        try:
            return parse_date(value)
        except PolicyProblem:
            return None
    return None


def as_bool(value: ConditionValue) -> bool | None:
    """A request value as a boolean, or None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def as_bytes(value: ConditionValue) -> bytes | None:
    """A request value as bytes: raw bytes, or a base64 string."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None
