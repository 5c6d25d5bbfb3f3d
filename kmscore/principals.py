"""Principals: the users who call the KMS, and how callers prove who they are.

Users have IAM-style ARNs (``arn:aws:iam::<account>:user/<name>``). A caller
is identified by its Unix uid (the socket's SO_PEERCRED, or the in-process
client's own uid) or by an AWS access key verified with SigV4. Secret access
keys are kept encrypted under the root key, because SigV4 verification needs
them in the clear. Each user may have an identity policy (IAM JSON).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kmscore.service import Caller, KeyService

__all__ = [
    "ACCESS_KEY_AAD",
    "CREDENTIALS_FILE",
    "USER_NAME_RE",
    "AccessKey",
    "Principal",
    "Principals",
    "admin_policy",
    "check_principal_tags",
    "init_admin",
    "new_access_key_id",
    "new_principal_id",
    "new_secret_access_key",
    "root_arn",
    "unix_user_name",
    "user_arn",
    "write_credentials",
]

USER_NAME_RE: Final = re.compile(r"^[\w+=,.@-]{1,64}$")
CREDENTIALS_FILE: Final = "credentials"
ACCESS_KEY_AAD: Final = b"kmscore/access-key/v1\x00"
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


def admin_policy() -> str:
    """The identity policy of the admin user that ``init`` makes: ``kms:*``."""
    return (
        '{"Version":"2012-10-17","Statement":[{"Sid":"KmscoreAdmin","Effect":"Allow",'
        '"Action":"kms:*","Resource":"*"}]}'
    )


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


class Principals:
    """The users of one data dir: lookups (cached) and administration."""

    def __init__(self, service: KeyService) -> None:
        """Serve the principals of ``service``'s store."""
        self._svc = service
        self._by_uid: dict[int, Principal | None] = {}
        self._by_arn: dict[str, Principal | None] = {}
        self._secrets: dict[str, tuple[Principal, bytes]] = {}

    def forget(self) -> None:
        """Empty the caches (a principal changed here or elsewhere)."""
        self._by_uid.clear()
        self._by_arn.clear()
        self._secrets.clear()

    # --- lookups -----------------------------------------------------------------

    def by_uid(self, uid: int) -> Principal | None:
        """The user mapped to a Unix uid, or None."""
        if uid not in self._by_uid:
            self._by_uid[uid] = self._svc.store.get_principal_by_uid(uid)
        return self._by_uid[uid]

    def by_arn(self, arn: str) -> Principal | None:
        """A user by ARN, or None."""
        if arn not in self._by_arn:
            self._by_arn[arn] = self._svc.store.get_principal_by_arn(arn)
        return self._by_arn[arn]

    def by_access_key(self, access_key_id: str) -> tuple[Principal, bytes] | None:
        """The user owning an access key, and the secret (for SigV4), or None."""
        hit = self._secrets.get(access_key_id)
        if hit is not None:
            return hit
        stored = self._svc.store.get_access_key(access_key_id)
        if stored is None:
            return None
        principal = self._svc.store.get_principal(stored.principal_name)
        if principal is None:
            return None
        secret = self._svc.root_key.unwrap_secret(
            stored.wrapped_secret, ACCESS_KEY_AAD + access_key_id.encode()
        )
        self._secrets[access_key_id] = (principal, secret)
        return principal, secret

    # --- administration ------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        uid: int | None = None,
        policy: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[Principal, str, str]:
        """Create a user with one access key.

        Returns:
            The user, its access key id and its secret access key (shown once).

        Raises:
            ValidationException: a bad name.
            TagException: bad principal tags (see :func:`check_principal_tags`).
            MalformedPolicyDocumentException: the identity policy does not parse.
            AlreadyExistsException: the name or uid is taken.
        """
        from kmscore.errors import ValidationException
        from kmscore.policy import PolicyKind, parse_policy

        if not USER_NAME_RE.match(name):
            raise ValidationException(
                f"User name {name!r} must be 1-64 characters of letters, digits and +=,.@_-"
            )
        if policy is not None:
            parse_policy(policy, kind=PolicyKind.IDENTITY)
        checked = check_principal_tags(tags or {})
        svc = self._svc
        now = svc.clock()
        principal = Principal(
            name, user_arn(svc.account, name), new_principal_id(), uid, policy, now, checked
        )
        access_key_id, secret = new_access_key_id(), new_secret_access_key()
        wrapped = svc.root_key.wrap_secret(secret.encode(), ACCESS_KEY_AAD + access_key_id.encode())
        svc.store.create_principal(principal, AccessKey(access_key_id, name, wrapped, now))
        svc.access_changed()
        return principal, access_key_id, secret

    def remove(self, name: str) -> None:
        """Delete a user and its access keys.

        Raises:
            NotFoundException: no such user.
        """
        self._svc.store.delete_principal(name)
        self._svc.access_changed()

    def set_policy(self, name: str, policy: str | None) -> None:
        """Replace a user's identity policy.

        Raises:
            MalformedPolicyDocumentException: the policy does not parse.
            NotFoundException: no such user.
        """
        from kmscore.policy import PolicyKind, parse_policy

        if policy is not None:
            parse_policy(policy, kind=PolicyKind.IDENTITY)
        self._svc.store.set_identity_policy(name, policy)
        self._svc.access_changed()

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Replace a user's tags; policies see them at once (ABAC).

        Raises:
            TagException: bad tags (see :func:`check_principal_tags`).
            NotFoundException: no such user.
        """
        self._svc.store.set_principal_tags(name, check_principal_tags(tags))
        self._svc.access_changed()

    def list(self) -> list[Principal]:
        """All users, by name."""
        return self._svc.store.list_principals()

    def caller(
        self,
        principal: Principal,
        *,
        source: str,
        user_agent: str,
        access_key_id: str | None = None,
        secure_transport: bool = True,
    ) -> Caller:
        """The :class:`~kmscore.service.Caller` for a user."""
        from kmscore.service import Caller

        return Caller(
            arn=principal.arn,
            account=self._svc.account,
            principal_id=principal.principal_id,
            kind="IAMUser",
            access_key_id=access_key_id,
            source=source,
            user_agent=user_agent,
            secure_transport=secure_transport,
        )


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
    from kmscore.errors import TagException

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


def unix_user_name(uid: int) -> str:
    """A user name for a Unix uid: the login name if it is a valid name."""
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = ""
    return name if USER_NAME_RE.match(name) else f"uid-{uid}"


def write_credentials(path: Path, access_key_id: str, secret: str) -> None:
    """Write an AWS credentials file (profile ``default``), 0600, new.

    Raises:
        FileExistsError: the file exists.
    """
    from kmscore.fsutil import write_private_file

    text = f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n"
    write_private_file(path, text.encode())


def init_admin(service: KeyService, uid: int) -> tuple[Principal, str] | None:
    """Make the admin user for ``uid`` (identity policy ``kms:*``), once.

    Writes its access key to ``<data-dir>/credentials``. Does nothing when
    the uid is mapped already.

    Returns:
        The admin and the credentials file path, or None if it existed.
    """
    if service.store.get_principal_by_uid(uid) is not None:
        return None
    principal, access_key_id, secret = service.principals.add(
        unix_user_name(uid), uid=uid, policy=admin_policy()
    )
    path = service.data_dir / CREDENTIALS_FILE
    if path.exists():
        path.unlink()
    write_credentials(path, access_key_id, secret)
    return principal, str(path)
