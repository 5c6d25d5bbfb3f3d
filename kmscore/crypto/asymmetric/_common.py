"""Checks shared by the operations of this package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NoReturn, TypeVar

from kmscore.errors import InvalidKeyUsageException, ValidationException
from kmscore.model.keyspecs import KeySpec

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "check_message_length",
    "expect",
    "require_algorithm",
    "wrong_key_type",
]

_T = TypeVar("_T")

MAX_MESSAGE_LENGTH: Final = 4096
"""Longest ``Message`` of Sign, Verify, GenerateMac and VerifyMac (AWS model)."""


def check_message_length(message: bytes, member: str = "message") -> None:
    """Enforce AWS's 4096-byte message limit.

    The minimum (1 byte) is the request validator's job, from the AWS model; the
    crypto core accepts an empty message so that test vectors can use one.

    Raises:
        ValidationException: The message is longer than 4096 bytes.
    """
    if len(message) > MAX_MESSAGE_LENGTH:
        raise ValidationException(
            f"1 validation error detected: Value at {member!r} failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_MESSAGE_LENGTH}"
        )


def require_algorithm(key_spec: KeySpec, allowed: Sequence[str], algorithm: str) -> None:
    """Check that an algorithm fits the key spec, as AWS does.

    Raises:
        InvalidKeyUsageException: ``algorithm`` is not one of ``allowed``.
    """
    if algorithm not in allowed:
        supported = ", ".join(allowed) if allowed else "none of this kind"
        raise InvalidKeyUsageException(
            f"Algorithm {algorithm} is not compatible with KeySpec {key_spec}; "
            f"supported: {supported}."
        )


def expect(value: _T | None) -> _T:
    """A table value the key spec guarantees (for example an RSA key's ``key_bits``).

    Raises:
        TypeError: It is missing: a bug in the key spec table, never a client error.
    """
    if value is None:
        raise TypeError("the key spec table lacks a value this key spec needs")
    return value


def wrong_key_type(key_spec: KeySpec, found: object) -> NoReturn:
    """Report a key object that does not match its checked key spec.

    Raises:
        TypeError: Always: a bug in this package, never a client error.
    """
    raise TypeError(f"a {key_spec} key holds a {type(found).__name__}")
