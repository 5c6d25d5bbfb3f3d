"""The key service: configuration, key resolution, caches, and hooks.

A :class:`KeyService` owns one data dir: its store, root key and keyring. The
operation handlers (:mod:`kmscore.operations`) act through it; frontends call
:func:`kmscore.operations.dispatch`.

Caching: resolved keys and aliases are cached in memory, so the hot path does
not touch the store. This process's own changes invalidate the caches at once;
changes made by another process sharing the data dir are noticed within
:data:`CACHE_RECHECK_SECONDS` (AWS KMS is itself eventually consistent).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

from kmscore.arn import alias_arn, key_arn, parse_key_ref
from kmscore.authorization import PolicyAuthorizer
from kmscore.errors import (
    ConflictException,
    KMSError,
    KMSInternalException,
    NotFoundException,
)
from kmscore.keyring import DEFAULT_BLOCK, DEFAULT_LIMIT, Keyring
from kmscore.keys import KeyRecord, utcnow
from kmscore.keystate import KeyState
from kmscore.policy import default_key_policy
from kmscore.principals import Principals, init_admin
from kmscore.rootkey import ROOT_KEY_FILE, Argon2Params, RootKey, RootKeyError
from kmscore.store import KeyStore
from kmscore.store.sqlite import SQLiteKeyStore

__all__ = [
    "CACHE_RECHECK_SECONDS",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "Auditor",
    "Authorizer",
    "Call",
    "Caller",
    "KeyService",
    "default_data_dir",
]

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT: Final = "111122223333"
CACHE_RECHECK_SECONDS: Final = 0.05
MAINTENANCE_SECONDS: Final = 60.0
_REGION_RE: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT_RE: Final = re.compile(r"^\d{12}$")


@contextlib.contextmanager
def _first_open_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the data dir (released when it closes).

    Only the first opens of a data dir take it, to make its root key and
    admin exactly once when several processes open it at the same moment.
    """
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def default_data_dir() -> Path:
    """``$KMS_DATA_DIR``, else ``~/.local/share/kmscore``."""
    env = os.environ.get("KMS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "kmscore"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the frontend established it.

    Attributes:
        arn: The principal's ARN (``arn:aws:iam::<account>:root`` or a user).
        account: The principal's account.
        principal_id: CloudTrail's ``principalId``.
        kind: CloudTrail's ``userIdentity.type`` (``Root``, ``IAMUser``).
        access_key_id: The access key used, if any.
        source: ``sourceIPAddress``: an IP, or ``unix:<pid>`` / ``local:<pid>``.
        user_agent: The client's user agent.
        secure_transport: ``aws:SecureTransport``: False only for plain HTTP.
    """

    arn: str
    account: str
    principal_id: str
    kind: str = "Root"
    access_key_id: str | None = None
    source: str = "local"
    user_agent: str = "kmscore"
    secure_transport: bool = True


@dataclass(slots=True)
class Call:
    """One operation in progress: who, what, and what it touched."""

    service: KeyService
    operation: str
    caller: Caller
    request_id: str
    resources: list[str]
    authorized: bool = False
    #: CloudTrail's ``readOnly``: the call changes nothing in the store.
    read_only: bool = False
    #: Grants named by the request's GrantTokens: they count at once, even
    #: before this process notices them in the store (AWS's eventual
    #: consistency of grants, and its remedy).
    token_grants: tuple[Any, ...] = ()
    #: ``kms:RequestAlias``: the alias name each key was named by in this
    #: request (key id -> ``alias/...``), when it was named by an alias.
    request_aliases: dict[str, str] | None = None
    #: CloudTrail's ``additionalEventData``, when the frontend has facts to
    #: add (the counts of a refusal summary, see :mod:`kmscore.refusals`).
    additional_event_data: Mapping[str, Any] | None = None

    def resolve(self, ref: str, *, allow_alias: bool = True) -> KeyRecord:
        """Resolve a key reference (see :meth:`KeyService.resolve`) and note the key.

        The key's ARN goes into the call's resources at once, so the audit
        record names it even when a later check (state, usage) refuses.

        Raises:
            NotFoundException: as :meth:`KeyService.resolve`.
        """
        key = self.service.resolve(ref, allow_alias=allow_alias)
        if key.arn not in self.resources:
            self.resources.append(key.arn)
        if "alias/" in ref:
            alias = parse_key_ref(ref).alias_name
            if alias is not None:
                if self.request_aliases is None:
                    self.request_aliases = {}
                self.request_aliases[key.key_id] = alias
        return key

    def authorize(
        self,
        key: KeyRecord | None,
        action: str | None = None,
        conditions: Mapping[str, Any] | None = None,
        context_key: bytes | None = None,
    ) -> None:
        """Ask the service's authorizer whether the caller may act on ``key``.

        Args:
            key: The key acted on, or None for account-level actions.
            action: The IAM action; ``kms:<operation>`` by default.
            conditions: Condition key values of this request, by their policy
                names (``kms:EncryptionContext`` holds the whole context).
            context_key: The canonical encryption context bytes, when the
                conditions are just the context and the algorithm: a cheap,
                exact key for the decision cache.

        Raises:
            AccessDeniedException: the caller may not.
        """
        if key is not None and key.arn not in self.resources:
            self.resources.append(key.arn)
        self.service.authorizer.authorize(
            self, action or f"kms:{self.operation}", key, conditions or {}, context_key
        )
        self.authorized = True


class Authorizer(Protocol):
    """Decides whether a call may proceed (policies and grants plug in here)."""

    def authorize(
        self,
        call: Call,
        action: str,
        key: KeyRecord | None,
        conditions: Mapping[str, Any],
        context_key: bytes | None = None,
    ) -> None:
        """Return to allow; raise AccessDeniedException to deny."""
        ...


class Auditor(Protocol):
    """Records every call, allowed or denied."""

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        """Make the record durable, or raise KMSInternalException."""
        ...


class NullAuditor:
    """Records nothing; the audit trail plugs in here."""

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        """See :class:`Auditor`."""


class KeyService:
    """One data dir's keys, served to operation handlers."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        region: str | None = None,
        account: str | None = None,
        passphrase: bytes | str | None = None,
        store: KeyStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        authorizer: Authorizer | None = None,
        auditor: Auditor | None = None,
        audit: bool = True,
        audit_witness: str | None = None,
        audit_export: str | None = None,
        invocation_block: int = DEFAULT_BLOCK,
        invocation_limit: int = DEFAULT_LIMIT,
        argon2_interactive: bool = False,
    ) -> None:
        """Open a data dir, initializing it if it is new.

        Args:
            data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
            region: Region of a new data dir (ignored, but checked, later).
            account: Account id of a new data dir (likewise).
            passphrase: Derive the root key from this passphrase (Argon2id)
                instead of a root key file. Needed at every open of such a dir.
            store: A store to use instead of SQLite in the data dir.
            clock: Source of the current time (tests move it).
            authorizer: Decides each call; key policies, identity policies
                and grants (:class:`~kmscore.authorization.PolicyAuthorizer`)
                by default.
            auditor: Records each call; by default the data dir's audit trail
                (:class:`~kmscore.auditor.TrailAuditor`).
            audit: False to record nothing (for benchmarks and tools that
                must not touch the trail).
            audit_witness: Have checkpoints signed by the witness on this
                socket from now on (kept in ``<data_dir>/audit.json``);
                default ``$KMS_AUDIT_WITNESS``, then the saved choice.
            audit_export: Copy checkpoints to this sink (``file:<path>``,
                ``syslog``) from now on (kept likewise); default
                ``$KMS_AUDIT_EXPORT``, then the saved choice.
            invocation_block: AES-GCM invocations reserved per store write.
            invocation_limit: Invocations per key version before rotation.
            argon2_interactive: Cheaper Argon2id cost for a new passphrase dir.

        Raises:
            RootKeyError: the root key is missing or does not match.
            ValueError: a region or account that is not well formed, or one
                that differs from the data dir's.
        """
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.store: KeyStore = store if store is not None else SQLiteKeyStore(self.data_dir)
        self.clock = clock
        self.authorizer: Authorizer = authorizer or PolicyAuthorizer()
        self.auditor: Auditor = auditor or NullAuditor()
        self._audit = audit and auditor is None
        self.region, self.account = self._settings(region, account)
        pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self.root_key = self._open_root_key(pw, argon2_interactive)
        self.keyring = Keyring(
            self.store, self.root_key, block=invocation_block, limit=invocation_limit
        )
        self._keys: dict[str, KeyRecord] = {}
        self._aliases: dict[str, str] = {}
        self._cache_lock = threading.Lock()
        self._token = self.store.change_token()
        self._checked = time.monotonic()
        self._maintained = 0.0
        self.root_arn = f"arn:aws:iam::{self.account}:root"
        self.default_key_policy = default_key_policy(self.account)
        #: Moves on every policy, grant or principal change; empties the
        #: authorization caches.
        self.access_epoch = 0
        self.principals = Principals(self)
        if self._audit:
            from kmscore.auditor import TrailAuditor

            self.auditor = TrailAuditor(
                self.data_dir,
                witness=audit_witness or os.environ.get("KMS_AUDIT_WITNESS") or None,
                export=audit_export or os.environ.get("KMS_AUDIT_EXPORT") or None,
            )
        if self.store.get_setting("initialized") is None:
            # A new data dir (or one whose init was cut short): the admin user
            # for whoever runs this, with kms:* and a credentials file. One
            # process at a time, or two first opens both try to add the admin.
            with _first_open_lock(self.data_dir):
                if self.store.get_setting("initialized") is None:
                    init_admin(self, os.getuid())
                    self.store.init_settings({"initialized": b"1"})

    # --- opening ---------------------------------------------------------------

    def _settings(self, region: str | None, account: str | None) -> tuple[str, str]:
        for value, pattern, what in (
            (region, _REGION_RE, "region"),
            (account, _ACCOUNT_RE, "account"),
        ):
            if value is not None and not pattern.match(value):
                raise ValueError(f"{value!r} is not a valid {what}")
        self.store.init_settings(
            {
                "region": (region or DEFAULT_REGION).encode(),
                "account": (account or DEFAULT_ACCOUNT).encode(),
            }
        )
        stored_region = (self.store.get_setting("region") or b"").decode()
        stored_account = (self.store.get_setting("account") or b"").decode()
        if region is not None and region != stored_region:
            raise ValueError(f"this data dir serves region {stored_region}, not {region}")
        if account is not None and account != stored_account:
            raise ValueError(f"this data dir serves account {stored_account}, not {account}")
        return stored_region, stored_account

    def _init_root_key(self, passphrase: bytes | None, interactive: bool) -> None:
        # A new data dir: make the root key, then record how to find it.
        if passphrase is not None:
            params = Argon2Params.new(interactive=interactive)
            root = RootKey.from_passphrase(passphrase, params)
            settings = {
                "root_key_mode": b"passphrase",
                "argon2_salt": params.salt,
                "argon2_ops": str(params.opslimit).encode(),
                "argon2_mem": str(params.memlimit).encode(),
            }
        else:
            path = self.data_dir / ROOT_KEY_FILE
            root = RootKey.load_file(path) if path.exists() else RootKey.create_file(path)
            settings = {"root_key_mode": b"file"}
        settings["root_key_check"] = root.check_value()
        self.store.init_settings(settings)

    def _open_root_key(self, passphrase: bytes | None, interactive: bool) -> RootKey:
        mode = self.store.get_setting("root_key_mode")
        if mode is None:
            # Processes opening a new data dir at the same moment take turns,
            # so one makes the root key file and the others load it whole.
            with _first_open_lock(self.data_dir):
                if self.store.get_setting("root_key_mode") is None:
                    self._init_root_key(passphrase, interactive)
            mode = self.store.get_setting("root_key_mode")
        if mode == b"passphrase":
            if passphrase is None:
                raise RootKeyError(
                    f"The data dir {self.data_dir} is protected by a passphrase; give it."
                )
            params = Argon2Params(
                salt=self.store.get_setting("argon2_salt") or b"",
                opslimit=int(self.store.get_setting("argon2_ops") or b"0"),
                memlimit=int(self.store.get_setting("argon2_mem") or b"0"),
            )
            root = RootKey.from_passphrase(passphrase, params)
        else:
            if passphrase is not None:
                raise RootKeyError(
                    f"The data dir {self.data_dir} uses a root key file, not a passphrase."
                )
            root = RootKey.load_file(self.data_dir / ROOT_KEY_FILE)
        check = self.store.get_setting("root_key_check")
        if check is None:
            raise RootKeyError("The data dir has no root key check value; it is damaged.")
        root.verify_check_value(check)
        return root

    # --- naming ----------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        """The ARN of a key of this data dir."""
        return key_arn(self.region, self.account, key_id)

    def alias_arn(self, alias_name: str) -> str:
        """The ARN of an alias of this data dir."""
        return alias_arn(self.region, self.account, alias_name)

    # --- caches ------------------------------------------------------------------

    def _recheck(self) -> None:
        now = time.monotonic()
        if now - self._checked < CACHE_RECHECK_SECONDS:
            return
        self._checked = now
        token = self.store.change_token()
        if token != self._token:
            with self._cache_lock:
                self._token = token
                self._keys.clear()
                self._aliases.clear()
            self.keyring.clear()
            self.access_changed()

    def forget(self, key_id: str) -> None:
        """Drop a key from every cache (after this process changed it)."""
        with self._cache_lock:
            self._keys.pop(key_id, None)
            for name in [n for n, k in self._aliases.items() if k == key_id]:
                del self._aliases[name]
        self.keyring.invalidate(key_id)

    def forget_alias(self, alias_name: str) -> None:
        """Drop an alias from the cache (after this process changed it).

        Access decisions are dropped too: ``kms:ResourceAliases`` changed.
        """
        with self._cache_lock:
            self._aliases.pop(alias_name, None)
        self.access_changed()

    # --- resolving ---------------------------------------------------------------

    def get_key(self, key_id: str) -> KeyRecord | None:
        """A key by id, through the cache; None if it does not exist."""
        self._recheck()
        key = self._keys.get(key_id)
        if key is None:
            key = self.store.get_key(key_id)
            if key is None:
                return None
            self._keys[key_id] = key
        if key.state is KeyState.PENDING_DELETION and key.deletion_date is not None:
            if key.deletion_date <= self.clock():
                self.delete_expired(key)
                return None
        return key

    def resolve(self, ref: str, *, allow_alias: bool = True) -> KeyRecord:
        """Resolve a key id, key ARN, alias name or alias ARN to a key.

        Args:
            ref: The request's key reference.
            allow_alias: False for the operations whose KeyId AWS documents as
                "key ID or key ARN" only (key management, tags, rotation,
                policies, grants, alias targets).

        Raises:
            NotFoundException: nothing by that name in this Region and account,
                or an alias where only a key id or ARN may stand.
        """
        parsed = parse_key_ref(ref)
        if not allow_alias and parsed.alias_name is not None:
            raise NotFoundException(f"Invalid keyId {ref}")
        if parsed.region is not None and (
            parsed.region != self.region or parsed.account != self.account
        ):
            raise NotFoundException(f"Key '{ref}' does not exist")
        key_id = parsed.key_id
        if key_id is None:
            assert parsed.alias_name is not None
            self._recheck()
            key_id = self._aliases.get(parsed.alias_name)
            if key_id is None:
                alias = self.store.get_alias(parsed.alias_name)
                if alias is None:
                    raise NotFoundException(
                        f"Alias {self.alias_arn(parsed.alias_name)} is not found."
                    )
                key_id = alias.key_id
                self._aliases[parsed.alias_name] = key_id
        key = self.get_key(key_id)
        if key is None:
            raise NotFoundException(f"Key '{self.key_arn(key_id)}' does not exist")
        return key

    def update_key(self, key: KeyRecord, change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
        """Apply ``change`` to a key and store it, retrying on concurrent updates.

        Raises:
            KMSError: whatever ``change`` raises (for example a state error),
                checked again on the fresh record after a conflict.
        """
        for _ in range(20):
            try:
                stored = self.store.update_key(change(key))
            except ConflictException:
                self.forget(key.key_id)
                fresh = self.store.get_key(key.key_id)
                if fresh is None:
                    raise NotFoundException(f"Key '{key.arn}' does not exist") from None
                key = fresh
                continue
            self.forget(key.key_id)
            return stored
        raise KMSInternalException(f"Key {key.arn} is changing too fast; retry.")

    def access_changed(self) -> None:
        """Note a policy, grant or principal change: drop decisions and lookups."""
        self.access_epoch += 1
        self.principals.forget()

    # --- housekeeping --------------------------------------------------------------

    def delete_expired(self, key: KeyRecord) -> None:
        """Delete a key whose deletion window has ended, material and all."""
        self.store.delete_key(key.key_id)
        self.forget(key.key_id)

    def maintenance_due(self) -> bool:
        """Whether periodic maintenance should run now (cheap to ask)."""
        return time.monotonic() - self._maintained >= MAINTENANCE_SECONDS

    def mark_maintained(self) -> None:
        """Note that maintenance just ran."""
        self._maintained = time.monotonic()

    def close(self) -> None:
        """Seal the audit trail, release the store and forget all material."""
        close_auditor = getattr(self.auditor, "close", None)
        if close_auditor is not None:
            close_auditor()
        self.keyring.clear()
        with self._cache_lock:
            self._keys.clear()
            self._aliases.clear()
        self.store.close()
