"""Principals as values: users, their access keys, ARNs and tags.

Users have IAM-style ARNs (``arn:aws:iam::<account>:user/<name>``) and ids
shaped like AWS's. The service layer (:mod:`kmscore.service.principals`) keeps
them in the store and identifies callers by them.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from kmscore.errors import TagException

__all__ = [
    "MAX_PRINCIPAL_TAGS",
    "USER_NAME_RE",
    "AccessKey",
    "Principal",
    "check_principal_tags",
    "new_access_key_id",
    "new_principal_id",
    "new_secret_access_key",
    "root_arn",
    "user_arn",
]

USER_NAME_RE: Final = re.compile(r"^[\w+=,.@-]{1,64}$")
_B32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def user_arn(account: str, name: str) -> str:
    """The ARN of a user."""
    return f"arn:aws:iam::{account}:user/{name}"


def root_arn(account: str) -> str:
    """The ARN of an account's root principal."""
    return f"arn:aws:iam::{account}:root"


def _b32(n: int) -> str:
    return "".join(secrets.choice(_B32) for _ in range(n))


def new_access_key_id() -> str:
    """A fresh access key id shaped like AWS's (``AKIA`` + 16 characters)."""
    return "AKIA" + _b32(16)


def new_principal_id() -> str:
    """A fresh unique user id shaped like AWS's (``AIDA`` + 17 characters)."""
    return "AIDA" + _b32(17)


def new_secret_access_key() -> str:
    """A fresh 40-character secret access key (240 random bits)."""
    return base64.b64encode(os.urandom(30)).decode("ascii")


@dataclass(frozen=True, slots=True)
class Principal:
    """A user of the KMS."""

    name: str
    arn: str
    principal_id: str
    uid: int | None
    identity_policy: str | None
    creation_date: datetime
    #: IAM-style principal tags, seen by policies as ``aws:PrincipalTag/<key>``.
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An access key as stored: the secret wrapped under the root key."""

    access_key_id: str
    principal_name: str
    wrapped_secret: bytes
    creation_date: datetime


#: IAM's limits on principal tags.
MAX_PRINCIPAL_TAGS: Final = 50
_TAG_TEXT: Final = re.compile(r"^[\w.:/=+\-@ ]*$")


def check_principal_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Principal tags checked as IAM checks them.

    Up to 50; keys 1-128 and values 0-256 characters of letters, digits,
    spaces and ``_.:/=+-@``; no ``aws:`` prefix; no two keys that differ only
    in case (IAM tag keys are case-insensitive).

    Raises:
        TagException: a tag breaks one of these rules.
    """
    if len(tags) > MAX_PRINCIPAL_TAGS:
        raise TagException(f"A principal can have at most {MAX_PRINCIPAL_TAGS} tags.")
    seen: set[str] = set()
    for k, v in tags.items():
        if not (1 <= len(k) <= 128 and _TAG_TEXT.fullmatch(k)):
            raise TagException(f"Principal tag key {k!r} is not 1-128 allowed characters.")
        if not (len(v) <= 256 and _TAG_TEXT.fullmatch(v)):
            raise TagException(f"Principal tag value for {k!r} is not 0-256 allowed characters.")
        if k.lower().startswith("aws:"):
            raise TagException(f"Tag key {k!r} uses the reserved prefix 'aws:'.")
        if k.lower() in seen:
            raise TagException(f"Principal tag key {k!r} appears more than once, ignoring case.")
        seen.add(k.lower())
    return dict(tags)
