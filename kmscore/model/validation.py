"""Request validation at the edge of every operation.

Each operation declares its request as a :class:`Shape` of typed members with
AWS's constraints (required, length, range, enum, pattern). :func:`validate`
checks a request against it before the handler runs, so bad input changes
nothing, and raises a :class:`~kmscore.errors.ValidationException` that names
the member in AWS's words ("1 validation error detected: Value at
'plaintext' failed to satisfy constraint: ..."). Values are never echoed, so
no plaintext can reach a message. The conformance test compares these shapes
with botocore's KMS model.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from kmscore.errors import ValidationException

__all__ = [
    "Blob",
    "Boolean",
    "Integer",
    "List",
    "Map",
    "Member",
    "Shape",
    "String",
    "Structure",
    "Timestamp",
    "validate",
]

_BYTES: Final = (bytes, bytearray, memoryview)


_WIRE: dict[str, str] = {}
_REQUIRED: dict[int, tuple[tuple[str, Any], ...]] = {}


def _wire(name: str) -> str:
    """AWS names members in messages with a lower-case first letter."""
    wire = _WIRE.get(name)
    if wire is None:
        wire = _WIRE[name] = name[:1].lower() + name[1:]
    return wire


def _bounds(low: int | None, high: int | None) -> tuple[int, int]:
    return (low if low is not None else 0, high if high is not None else sys.maxsize)


def _fail(path: str, constraint: str, shown: str | None = None) -> ValidationException:
    value = "" if shown is None else f" '{shown}'"
    return ValidationException(
        f"1 validation error detected: Value{value} at '{path}' failed to satisfy constraint: "
        f"{constraint}"
    )


class _Invalid(Exception):
    """A member broke a constraint; the caller adds the member's path."""

    def __init__(self, constraint: str, subpath: str = "", shown: str | None = None) -> None:
        super().__init__(constraint)
        self.constraint = constraint
        self.subpath = subpath
        self.shown = shown


@dataclass(frozen=True)
class Member:
    """One member of a request. Subclasses check their own type and limits.

    Attributes:
        required: The member must be present (and not null).
        fast: :meth:`check` with a shortcut for the common case (an exact
            ``str``, ``bytes``, ``int`` or ``dict`` within the limits), made
            once per member; anything else goes to :meth:`check` (derived).
    """

    required: bool = False
    fast: Callable[[Any], Any] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fast", self._shortcut())

    def _shortcut(self) -> Callable[[Any], Any]:
        return self.check

    def check(self, value: Any) -> Any:
        """Validate and return the value (normalized where useful).

        Raises:
            _Invalid: the value breaks a constraint (turned into a
                ValidationException naming the member by the caller).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class String(Member):
    """A string with optional length limits, enum and pattern.

    ``shown``: a failed pattern names the value, as AWS does for names that
    are never secret (an alias name); values are never shown otherwise.
    """

    min_len: int | None = None
    max_len: int | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    shown: bool = False

    def check(self, value: Any) -> str:
        """See :meth:`Member.check`."""
        if not isinstance(value, str):
            raise _Invalid("Member must be a string")
        if self.min_len is not None and len(value) < self.min_len:
            raise _Invalid(f"Member must have length greater than or equal to {self.min_len}")
        if self.max_len is not None and len(value) > self.max_len:
            raise _Invalid(f"Member must have length less than or equal to {self.max_len}")
        if self.enum is not None and value not in self.enum:
            raise _Invalid(f"Member must satisfy enum value set: [{', '.join(self.enum)}]")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise _Invalid(
                f"Member must satisfy regular expression pattern: {self.pattern}",
                shown=value if self.shown else None,
            )
        return value

    def _shortcut(self) -> Callable[[Any], Any]:
        check = self.check
        if self.pattern is not None:
            return check
        low, high = _bounds(self.min_len, self.max_len)
        if self.enum is not None:
            allowed = frozenset(self.enum)

            def fast_enum(value: Any) -> Any:
                if value.__class__ is str and value in allowed and low <= len(value) <= high:
                    return value
                return check(value)

            return fast_enum

        def fast(value: Any) -> Any:
            if value.__class__ is str and low <= len(value) <= high:
                return value
            return check(value)

        return fast


@dataclass(frozen=True)
class Blob(Member):
    """Bytes with optional length limits; returned as ``bytes``."""

    min_len: int | None = None
    max_len: int | None = None

    def check(self, value: Any) -> bytes:
        """See :meth:`Member.check`."""
        if not isinstance(value, _BYTES):
            raise _Invalid("Member must be bytes")
        data = bytes(value)
        if self.min_len is not None and len(data) < self.min_len:
            raise _Invalid(f"Member must have length greater than or equal to {self.min_len}")
        if self.max_len is not None and len(data) > self.max_len:
            raise _Invalid(f"Member must have length less than or equal to {self.max_len}")
        return data

    def _shortcut(self) -> Callable[[Any], Any]:
        check = self.check
        low, high = _bounds(self.min_len, self.max_len)

        def fast(value: Any) -> Any:
            if value.__class__ is bytes and low <= len(value) <= high:
                return value
            return check(value)

        return fast


@dataclass(frozen=True)
class Integer(Member):
    """An integer (not a bool) with an optional range."""

    min_value: int | None = None
    max_value: int | None = None

    def check(self, value: Any) -> int:
        """See :meth:`Member.check`."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("Member must be an integer")
        if self.min_value is not None and value < self.min_value:
            raise _Invalid(f"Member must have value greater than or equal to {self.min_value}")
        if self.max_value is not None and value > self.max_value:
            raise _Invalid(f"Member must have value less than or equal to {self.max_value}")
        return value

    def _shortcut(self) -> Callable[[Any], Any]:
        check = self.check
        low = self.min_value if self.min_value is not None else -sys.maxsize
        high = self.max_value if self.max_value is not None else sys.maxsize

        def fast(value: Any) -> Any:
            # bool is not int's class, so True and False go to check (refused).
            if value.__class__ is int and low <= value <= high:
                return value
            return check(value)

        return fast


@dataclass(frozen=True)
class Timestamp(Member):
    """A point in time: a timezone-aware datetime, or epoch seconds (the JSON wire form)."""

    def check(self, value: Any) -> datetime:
        """See :meth:`Member.check`; returns an aware UTC datetime."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise _Invalid("Member must be a timestamp with a time zone")
            return value.astimezone(UTC)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid("Member must be a timestamp")
        if not math.isfinite(value) or not 0 <= value < 253402300800:
            raise _Invalid("Member must be a timestamp between 1970 and 9999")
        return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class Boolean(Member):
    """A boolean."""

    def check(self, value: Any) -> bool:
        """See :meth:`Member.check`."""
        if not isinstance(value, bool):
            raise _Invalid("Member must be a boolean")
        return value


@dataclass(frozen=True)
class List(Member):
    """A list of items of one member type, with optional length limits."""

    item: Member = field(default_factory=lambda: String())
    min_len: int | None = None
    max_len: int | None = None

    def check(self, value: Any) -> list[Any]:
        """See :meth:`Member.check`."""
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise _Invalid("Member must be a list")
        items = list(value)
        if self.min_len is not None and len(items) < self.min_len:
            raise _Invalid(f"Member must have length greater than or equal to {self.min_len}")
        if self.max_len is not None and len(items) > self.max_len:
            raise _Invalid(f"Member must have length less than or equal to {self.max_len}")
        out = []
        for i, v in enumerate(items):
            try:
                out.append(self.item.check(v))
            except _Invalid as exc:
                raise _Invalid(exc.constraint, f".{i + 1}.member{exc.subpath}") from None
        return out


@dataclass(frozen=True)
class Map(Member):
    """A map of string keys to string values (encryption contexts)."""

    def check(self, value: Any) -> dict[str, str]:
        """See :meth:`Member.check`."""
        if not isinstance(value, Mapping):
            raise _Invalid("Member must be a map of strings to strings")
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise _Invalid("Member must be a map of strings to strings")
        return dict(value)

    def _shortcut(self) -> Callable[[Any], Any]:
        check = self.check

        def fast(value: Any) -> Any:
            if value.__class__ is dict:
                for k, v in value.items():
                    if k.__class__ is not str or v.__class__ is not str:
                        return check(value)
                return dict(value)
            return check(value)

        return fast


@dataclass(frozen=True)
class Structure(Member):
    """A nested structure with its own members."""

    members: Mapping[str, Member] = field(default_factory=dict)

    def check(self, value: Any) -> dict[str, Any]:
        """See :meth:`Member.check`."""
        if not isinstance(value, Mapping):
            raise _Invalid("Member must be a structure")
        return _check_members(self.members, value, "")


Shape = Mapping[str, Member]


def _check_members(members: Shape, request: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    # Walk the request (usually a few members), not the whole shape.
    out: dict[str, Any] = {}
    for name, value in request.items():
        member = members.get(name)
        if member is None:
            raise ValidationException(f"Unknown parameter {prefix}{name!s}.")
        if value is not None:
            try:
                out[name] = member.fast(value)
            except _Invalid as exc:
                raise _fail(prefix + _wire(name) + exc.subpath, exc.constraint, exc.shown) from None
            except ValidationException as exc:
                # A nested structure's unknown or missing member.
                raise ValidationException(f"{exc.message} (in {prefix}{_wire(name)})") from None
    required = _REQUIRED.get(id(members))
    if required is None:
        # Shapes are module-level constants, so their ids are stable.
        required = _REQUIRED[id(members)] = tuple((n, m) for n, m in members.items() if m.required)
    for name, _ in required:
        if out.get(name) is None:
            raise _fail(prefix + _wire(name), "Member must not be null")
    return out


def validate(shape: Shape, request: Mapping[str, Any]) -> dict[str, Any]:
    """Check a request against its operation's shape.

    Args:
        shape: The operation's declared members.
        request: The request as received (AWS member names).

    Returns:
        A new dict with the validated members; absent optional members are
        left out, blobs are ``bytes``.

    Raises:
        ValidationException: an unknown member, a missing required member, or
            a value that breaks its member's constraints.
    """
    if request.__class__ is not dict and not isinstance(request, Mapping):
        raise ValidationException("The request must be a structure.")
    return _check_members(shape, request, "")


def validator(shape: Shape) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A checker of one operation's requests, made once per shape.

    It does what :func:`validate` does. A well-formed request (a plain dict
    whose members are all known, not null and of their exact types) is
    checked in one pass over it; anything else goes to :func:`validate`,
    which names the problem.

    Raises:
        ValidationException: (from the checker) as :func:`validate`.
    """
    fasts = {name: member.fast for name, member in shape.items()}
    required = tuple(name for name, member in shape.items() if member.required)
    get = fasts.get

    def check(request: Mapping[str, Any]) -> dict[str, Any]:
        if request.__class__ is dict:
            out: dict[str, Any] = {}
            try:
                for name, value in request.items():
                    out[name] = get(name)(value)  # type: ignore[misc]
            except (TypeError, _Invalid, ValidationException):
                # An unknown member (no checker to call), a null, or a value
                # that breaks a constraint: validate() says which.
                return validate(shape, request)
            for name in required:
                if name not in out:
                    return validate(shape, request)
            return out
        return validate(shape, request)

    return check
