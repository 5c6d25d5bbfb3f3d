"""The AWS JSON 1.1 wire format of KMS: targets, bodies, answers and errors.

A request names its operation in ``X-Amz-Target: TrentService.<Operation>``
and carries its members as a JSON object. Member types come from the
operation's declared shape (:mod:`kmscore.model.validation`), so this module needs
no table of its own: blobs arrive as base64 strings and leave as bytes,
nested structures and lists included. A value of the wrong JSON type is a
SerializationException, as AWS answers (the request could not be read);
constraint violations (lengths, enums, required members) and unknown members
are left to :func:`kmscore.model.validation.validate`, which answers
ValidationException in AWS's words.

Answers are JSON with blobs in base64 and timestamps in epoch seconds. Errors
are ``{"__type": <code>, "message": <text>}`` with the code's HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

from kmscore.errors import (
    KMSError,
    SerializationException,
    UnknownOperationException,
)
from kmscore.model import validation as v

__all__ = [
    "CONTENT_TYPE",
    "TARGET_PREFIX",
    "decode_request",
    "encode_error",
    "encode_response",
    "operation_name",
    "parse_body",
    "wire_error",
]

CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIX: Final = "TrentService."


_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1


def operation_name(target: str | None) -> str:
    """The operation an ``X-Amz-Target`` header names.

    Raises:
        UnknownOperationException: no header, or not ``TrentService.<Name>``.
    """
    if target is None or not target.startswith(TARGET_PREFIX):
        raise UnknownOperationException()
    name = target[len(TARGET_PREFIX) :]
    if not name or not name.isascii() or not name.isalnum():
        raise UnknownOperationException()
    return name


def parse_body(body: bytes) -> dict[str, Any]:
    """The request members of a JSON body.

    Raises:
        SerializationException: not UTF-8, not JSON, or not a JSON object.
    """
    try:
        # orjson refuses what JSON does not allow (NaN, invalid UTF-8, lone
        # surrogates), and bounds nesting.
        data = orjson.loads(body)
    except ValueError:
        raise SerializationException("The request body is not a valid JSON document.") from None
    if not isinstance(data, dict):
        raise SerializationException("The request body must be a JSON object.")
    return data


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _mistyped(path: str, expected: str, value: Any) -> SerializationException:
    return SerializationException(f"Expected {expected} at '{path}', found {_kind(value)}.")


def _decode(member: v.Member, value: Any, path: str) -> Any:
    if value is None:
        return None
    if isinstance(member, v.String):
        if not isinstance(value, str):
            raise _mistyped(path, "a string", value)
        return value
    if isinstance(member, v.Blob):
        if not isinstance(value, str):
            raise _mistyped(path, "a base64 string", value)
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise SerializationException(f"The value at '{path}' is not valid base64.") from None
    if isinstance(member, v.Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mistyped(path, "an integer", value)
        if not _INT_MIN <= value <= _INT_MAX:
            raise SerializationException(f"The number at '{path}' is out of the integer range.")
        return value
    if isinstance(member, v.Boolean):
        if not isinstance(value, bool):
            raise _mistyped(path, "a boolean", value)
        return value
    if isinstance(member, v.List):
        if not isinstance(value, list):
            raise _mistyped(path, "an array", value)
        return [_decode(member.item, item, f"{path}.{i + 1}") for i, item in enumerate(value)]
    if isinstance(member, v.Map):
        if not isinstance(value, dict):
            raise _mistyped(path, "an object", value)
        out = {}
        for key, item in value.items():
            if not isinstance(item, str):
                raise _mistyped(f"{path}.{key}", "a string", item)
            out[key] = item
        return out
    if isinstance(member, v.Structure):
        if not isinstance(value, dict):
            raise _mistyped(path, "an object", value)
        return _decode_members(member.members, value, f"{path}.")
    if isinstance(member, v.Timestamp):
        # The JSON protocol sends timestamps as epoch seconds; the shape
        # checks the range and makes the datetime.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _mistyped(path, "a timestamp in epoch seconds", value)
        return value
    raise SerializationException(f"The value at '{path}' cannot be read.")


def _decode_members(members: v.Shape, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        member = members.get(name)
        # Unknown members pass through for validate() to refuse by name.
        out[name] = value if member is None else _decode(member, value, prefix + name)
    return out


def decode_request(shape: v.Shape, data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn JSON members into the request an operation takes (blobs as bytes).

    Args:
        shape: The operation's declared request members.
        data: The parsed JSON object.

    Returns:
        The request, ready for :func:`kmscore.operations.dispatch`.

    Raises:
        SerializationException: a member of the wrong JSON type, a blob that
            is not base64, or an integer beyond 32 bits.
    """
    return _decode_members(shape, data, "")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        # A string that is not valid Unicode (a lone surrogate) cannot be
        # UTF-8; the standard encoder escapes it instead of failing.
        return json.dumps(value, default=_json_default, separators=(",", ":")).encode("ascii")


def encode_response(response: Mapping[str, Any]) -> bytes:
    """The JSON body of a successful answer (blobs base64, times epoch seconds)."""
    return _dumps(response)


def wire_error(error: KMSError) -> tuple[int, str]:
    """The HTTP status and ``__type`` code an error goes on the wire with."""
    return error.http_status, error.code


def encode_error(code: str, message: str) -> bytes:
    """The JSON body of an error answer."""
    return _dumps({"__type": code, "message": message})
