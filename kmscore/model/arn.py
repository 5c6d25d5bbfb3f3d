"""Key ids, ARNs and alias names, and the parsing of key references.

AWS accepts four spellings of a key reference wherever it takes a ``KeyId``:
a key id, a key ARN, an alias name (``alias/...``) and an alias ARN. This
module parses them; the service resolves them against its store.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from kmscore.errors import (
    InvalidAliasNameException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)

__all__ = [
    "KeyRef",
    "alias_arn",
    "is_multi_region_id",
    "key_arn",
    "key_id_from_bytes",
    "key_id_to_bytes",
    "new_key_id",
    "parse_key_ref",
    "validate_alias_name",
]

_UUID_RE: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MRK_RE: Final = re.compile(r"^mrk-[0-9a-f]{32}$")
# Only the aws partition: every ARN this service issues is in it (see
# key_arn), so an aws-cn or aws-us-gov ARN never names one of its keys.
_ARN_RE: Final = re.compile(
    r"^arn:(?P<partition>aws):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"(?P<kind>key|alias)/(?P<name>.+)$"
)
_ALIAS_RE: Final = re.compile(r"^alias/[a-zA-Z0-9/_-]+$")
MRK_PREFIX: Final = "mrk-"


def new_key_id(multi_region: bool = False) -> str:
    """A fresh key id: a UUID4, or ``mrk-`` and 32 hex digits for multi-Region keys."""
    u = uuid.uuid4()
    return MRK_PREFIX + u.hex if multi_region else str(u)


def is_multi_region_id(key_id: str) -> bool:
    """Whether a key id names a multi-Region key."""
    return key_id.startswith(MRK_PREFIX)


def key_id_to_bytes(key_id: str) -> bytes:
    """The 16 raw bytes of a key id, as written into ciphertext blobs."""
    if key_id.startswith(MRK_PREFIX):
        return bytes.fromhex(key_id[4:])
    return uuid.UUID(key_id).bytes


def key_id_from_bytes(raw: bytes, multi_region: bool) -> str:
    """The key id spelled from 16 raw bytes (inverse of :func:`key_id_to_bytes`)."""
    return MRK_PREFIX + raw.hex() if multi_region else str(uuid.UUID(bytes=raw))


def key_arn(region: str, account: str, key_id: str) -> str:
    """The ARN of a key."""
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def alias_arn(region: str, account: str, alias_name: str) -> str:
    """The ARN of an alias (``alias_name`` includes the ``alias/`` prefix)."""
    return f"arn:aws:kms:{region}:{account}:{alias_name}"


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A parsed key reference: either a key id or an alias name.

    ``region``/``account`` are set when the reference was an ARN, so the
    service can check that it names this Region and account.
    """

    key_id: str | None
    alias_name: str | None
    region: str | None = None
    account: str | None = None


def validate_alias_name(name: str, *, for_create: bool = True) -> None:
    """Check an alias name against AWS's rules (after the request pattern).

    Raises:
        ValidationException: it does not start with ``alias/`` (AWS's message).
        NotAuthorizedException: it is in the reserved ``alias/aws/`` namespace
            when creating.
        InvalidAliasNameException: nothing after ``alias/``, or characters
            the model's pattern admits but alias names do not (``:``).
    """
    if not name.startswith("alias/"):
        raise ValidationException(
            'Alias must start with the prefix "alias/". Please see '
            "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
        )
    if for_create and name.lower().startswith("alias/aws/"):
        raise NotAuthorizedException(
            f"Alias name {name} is reserved: names beginning with alias/aws/ are for "
            "AWS managed keys."
        )
    if not _ALIAS_RE.match(name) or len(name) > 256:
        raise InvalidAliasNameException(
            f"Alias name {name!r} must begin with 'alias/' and contain only "
            "alphanumeric characters, '/', '_' and '-'."
        )


_REFS: dict[str, KeyRef] = {}
_REFS_SIZE: Final = 4096


def parse_key_ref(ref: str) -> KeyRef:
    """Parse a key id, key ARN, alias name or alias ARN.

    Raises:
        NotFoundException: the reference has none of the four forms. (AWS
            answers NotFoundException for a well-typed id that names nothing.)
    """
    parsed = _REFS.get(ref)
    if parsed is None:
        parsed = _parse_key_ref(ref)
        if len(_REFS) >= _REFS_SIZE:
            _REFS.clear()
        _REFS[ref] = parsed
    return parsed


def _parse_key_ref(ref: str) -> KeyRef:
    m = _ARN_RE.match(ref)
    if m is not None:
        name = m["name"]
        if m["kind"] == "key":
            if not (_UUID_RE.match(name) or _MRK_RE.match(name)):
                raise NotFoundException(f"Invalid keyId {ref}")
            return KeyRef(name, None, m["region"], m["account"])
        alias = "alias/" + name
        if not _ALIAS_RE.match(alias):
            raise NotFoundException(f"Alias {ref} is not found.")
        return KeyRef(None, alias, m["region"], m["account"])
    if ref.startswith("alias/"):
        if not _ALIAS_RE.match(ref):
            raise NotFoundException(f"Alias {ref} is not found.")
        return KeyRef(None, ref)
    if _UUID_RE.match(ref) or _MRK_RE.match(ref):
        return KeyRef(ref, None)
    raise NotFoundException(f"Invalid keyId {ref}")
