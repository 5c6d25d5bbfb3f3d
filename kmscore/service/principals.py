"""Principals: the users who call the KMS, and how callers prove who they are.

Users have IAM-style ARNs (``arn:aws:iam::<account>:user/<name>``). A caller
is identified by its Unix uid (the socket's SO_PEERCRED, or the in-process
client's own uid) or by an AWS access key verified with SigV4. Secret access
keys are kept encrypted under the root key, because SigV4 verification needs
them in the clear. Each user may have an identity policy (IAM JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kmscore.errors import ValidationException
from kmscore.fsutil import write_private_file
from kmscore.model.caller import Caller
from kmscore.model.principal import (
    USER_NAME_RE,
    AccessKey,
    Principal,
    check_principal_tags,
    new_access_key_id,
    new_principal_id,
    new_secret_access_key,
    user_arn,
)
from kmscore.policy import PolicyKind, parse_policy

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from kmscore.crypto.rootkey import RootKey
    from kmscore.store import KeyStore

__all__ = [
    "ACCESS_KEY_AAD",
    "CREDENTIALS_FILE",
    "Principals",
    "admin_policy",
    "init_admin",
    "unix_user_name",
    "write_credentials",
]

CREDENTIALS_FILE: Final = "credentials"
ACCESS_KEY_AAD: Final = b"kmscore/access-key/v1\x00"


def admin_policy() -> str:
    """The identity policy of the admin user that ``init`` makes: ``kms:*``."""
    return (
        '{"Version":"2012-10-17","Statement":[{"Sid":"KmscoreAdmin","Effect":"Allow",'
        '"Action":"kms:*","Resource":"*"}]}'
    )


class Principals:
    """The users of one data dir: lookups (cached) and administration."""

    def __init__(
        self,
        store: KeyStore,
        root_key: RootKey,
        account: str,
        clock: Callable[[], datetime],
        access_changed: Callable[[], None],
    ) -> None:
        """Serve the principals of ``store``.

        Args:
            store: The store the users live in.
            root_key: Wraps and unwraps their secret access keys.
            account: The account their ARNs name.
            clock: Source of the current time.
            access_changed: Called after every change (empties the access caches).
        """
        self._store = store
        self._root_key = root_key
        self._account = account
        self._clock = clock
        #: Called after every change; a deployment fans it out to every Region.
        self.on_change = access_changed
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
            self._by_uid[uid] = self._store.get_principal_by_uid(uid)
        return self._by_uid[uid]

    def by_arn(self, arn: str) -> Principal | None:
        """A user by ARN, or None."""
        if arn not in self._by_arn:
            self._by_arn[arn] = self._store.get_principal_by_arn(arn)
        return self._by_arn[arn]

    def by_access_key(self, access_key_id: str) -> tuple[Principal, bytes] | None:
        """The user owning an access key, and the secret (for SigV4), or None."""
        hit = self._secrets.get(access_key_id)
        if hit is not None:
            return hit
        stored = self._store.get_access_key(access_key_id)
        if stored is None:
            return None
        principal = self._store.get_principal(stored.principal_name)
        if principal is None:
            return None
        secret = self._root_key.unwrap_secret(
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
        access_key: tuple[str, str] | None = None,
        secret: str | None = None,
    ) -> tuple[Principal, str, str]:
        """Create a user with one access key.

        ``access_key`` gives the access key id and secret instead of new
        random ones (``kms serve --dev``'s well-known test credentials);
        ``secret`` alone gives the secret access key of a new id (an XKS
        proxy credential's is longer than AWS's 40 characters).

        Returns:
            The user, its access key id and its secret access key (shown once).

        Raises:
            ValidationException: a bad name.
            TagException: bad principal tags (see :func:`check_principal_tags`).
            MalformedPolicyDocumentException: the identity policy does not parse.
            AlreadyExistsException: the name or uid is taken.
        """
        if not USER_NAME_RE.match(name):
            raise ValidationException(
                f"User name {name!r} must be 1-64 characters of letters, digits and +=,.@_-"
            )
        if policy is not None:
            parse_policy(policy, kind=PolicyKind.IDENTITY)
        checked = check_principal_tags(tags or {})
        now = self._clock()
        principal = Principal(
            name, user_arn(self._account, name), new_principal_id(), uid, policy, now, checked
        )
        if access_key is not None:
            access_key_id, secret = access_key
        else:
            access_key_id, secret = new_access_key_id(), secret or new_secret_access_key()
        wrapped = self._root_key.wrap_secret(
            secret.encode(), ACCESS_KEY_AAD + access_key_id.encode()
        )
        self._store.create_principal(principal, AccessKey(access_key_id, name, wrapped, now))
        self.on_change()
        return principal, access_key_id, secret

    def remove(self, name: str) -> None:
        """Delete a user and its access keys.

        Raises:
            NotFoundException: no such user.
        """
        self._store.delete_principal(name)
        self.on_change()

    def set_policy(self, name: str, policy: str | None) -> None:
        """Replace a user's identity policy.

        Raises:
            MalformedPolicyDocumentException: the policy does not parse.
            NotFoundException: no such user.
        """
        if policy is not None:
            parse_policy(policy, kind=PolicyKind.IDENTITY)
        self._store.set_identity_policy(name, policy)
        self.on_change()

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Replace a user's tags; policies see them at once (ABAC).

        Raises:
            TagException: bad tags (see :func:`check_principal_tags`).
            NotFoundException: no such user.
        """
        self._store.set_principal_tags(name, check_principal_tags(tags))
        self.on_change()

    def list(self) -> list[Principal]:
        """All users, by name."""
        return self._store.list_principals()

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
        return Caller(
            arn=principal.arn,
            account=self._account,
            principal_id=principal.principal_id,
            kind="IAMUser",
            access_key_id=access_key_id,
            source=source,
            user_agent=user_agent,
            secure_transport=secure_transport,
        )


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
    text = f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n"
    write_private_file(path, text.encode())


def init_admin(principals: Principals, data_dir: Path, uid: int) -> tuple[Principal, str] | None:
    """Make the admin user for ``uid`` (identity policy ``kms:*``), once.

    Writes its access key to ``<data-dir>/credentials``. Does nothing when
    the uid is mapped already.

    Returns:
        The admin and the credentials file path, or None if it existed.
    """
    if principals.by_uid(uid) is not None:
        return None
    principal, access_key_id, secret = principals.add(
        unix_user_name(uid), uid=uid, policy=admin_policy()
    )
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        path.unlink()
    write_credentials(path, access_key_id, secret)
    return principal, str(path)
