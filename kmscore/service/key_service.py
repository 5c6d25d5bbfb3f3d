"""The key service: key resolution, caches, and the hooks every call goes through.

A :class:`KeyService` owns one data dir: its store, root key and keyring. The
operation handlers (:mod:`kmscore.operations`) act through it; frontends call
:func:`kmscore.operations.dispatch`.

Caching: resolved keys and aliases are cached in memory, so the hot path does
not touch the store. This process's own changes invalidate the caches at once;
changes made by another process sharing the data dir are noticed within
:data:`CACHE_RECHECK_SECONDS` (AWS KMS is itself eventually consistent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from kmscore.crypto.rootkey import RootKey
from kmscore.errors import ConflictException, KMSInternalException, NotFoundException
from kmscore.model.arn import alias_arn, key_arn, parse_key_ref
from kmscore.model.key import KeyRecord, utcnow
from kmscore.model.keystate import KeyState
from kmscore.policy import default_key_policy
from kmscore.service.call import Auditor, Authorizer
from kmscore.service.custom_key_stores import CustomKeyStores
from kmscore.service.importing import expire_imported
from kmscore.service.principals import Principals
from kmscore.service.versions import DEFAULT_BLOCK, DEFAULT_LIMIT, Keyring
from kmscore.store import KeyStore

__all__ = ["CACHE_RECHECK_SECONDS", "MAINTENANCE_SECONDS", "KeyService"]

CACHE_RECHECK_SECONDS: Final = 0.05
MAINTENANCE_SECONDS: Final = 60.0


class KeyService:
    """One data dir's keys, served to operation handlers."""

    def __init__(
        self,
        data_dir: Path,
        *,
        store: KeyStore,
        root_key: RootKey,
        region: str,
        account: str,
        authorizer: Authorizer,
        auditor: Auditor,
        clock: Callable[[], datetime] = utcnow,
        invocation_block: int = DEFAULT_BLOCK,
        invocation_limit: int = DEFAULT_LIMIT,
    ) -> None:
        """Serve the keys of an opened data dir (see :func:`kmscore.service.open_service`).

        Args:
            data_dir: The data dir.
            store: Its store.
            root_key: Its root key, checked against the store.
            region: The region it serves.
            account: The account it serves.
            authorizer: Decides each call.
            auditor: Records each call.
            clock: Source of the current time (tests move it).
            invocation_block: AES-GCM invocations reserved per store write.
            invocation_limit: Invocations per key version before rotation.
        """
        self.data_dir = data_dir
        self.store = store
        self.clock = clock
        self.authorizer = authorizer
        self.auditor = auditor
        self.region, self.account = region, account
        self.root_key = root_key
        self.keyring = Keyring(
            self.store, self.root_key, block=invocation_block, limit=invocation_limit
        )
        self._keys: dict[str, KeyRecord] = {}
        self._aliases: dict[str, str] = {}
        self._cache_lock = threading.Lock()
        self._token = self.store.change_token()
        self._checked = time.monotonic()
        # A store whose token is a local read (PostgreSQL's moves from a
        # listener thread) is asked on every call, not every 50 ms.
        self._free_token = bool(getattr(store, "change_token_is_local", False))
        #: When periodic maintenance is next due (``time.monotonic()``); the
        #: dispatcher compares it on every call, so it is a plain attribute.
        self.maintenance_deadline = MAINTENANCE_SECONDS
        self.root_arn = f"arn:aws:iam::{self.account}:root"
        self.default_key_policy = default_key_policy(self.account)
        #: Moves on every policy, grant or principal change; empties the
        #: authorization caches.
        self.access_epoch = 0
        self.principals = Principals(store, root_key, account, clock, self.access_changed)
        #: The :class:`~kmscore.service.regions.Deployment` this data dir is a
        #: Region of, when it serves several (None: this Region alone).
        self.deployment: Any = None
        #: Multi-Region keys to converge after the call that changed them
        #: commits: (thread id, Region to start from, key id).
        self.replication_due: set[tuple[int, str, str]] = set()
        #: Custom key stores (HSM and external): records, sessions, material.
        self.custom_key_stores = CustomKeyStores(self)
        self.keyring.custom_aead = self.custom_key_stores.aead

    # --- naming ----------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        """The ARN of a key of this data dir."""
        return key_arn(self.region, self.account, key_id)

    def alias_arn(self, alias_name: str) -> str:
        """The ARN of an alias of this data dir."""
        return alias_arn(self.region, self.account, alias_name)

    def principals_for(self, account: str) -> Principals | None:
        """The users of ``account``: this dir's, or another account's of the deployment."""
        if account == self.account:
            return self.principals
        if self.deployment is None:
            return None
        found: Principals | None = self.deployment.principals_of(account)
        return found

    def related(self, region: str) -> KeyService | None:
        """This account's namespace in ``region`` (for multi-Region keys), if any."""
        if region == self.region:
            return self
        if self.deployment is None:
            return None
        found: KeyService | None = self.deployment.service(self.account, region)
        return found

    def note_replication(self, key_id: str, region: str | None = None) -> None:
        """Converge a multi-Region key's related keys once this thread's call commits.

        Notes are kept per thread: a call's changes are converged by the
        thread that made them, after its transaction commits, never early by
        another thread that finished first.
        """
        self.replication_due.add((threading.get_ident(), region or self.region, key_id))

    def replicate_due(self) -> None:
        """Converge the multi-Region keys this thread noted (see :mod:`.replication`)."""
        from kmscore.service.replication import converge_quietly

        me = threading.get_ident()
        while mine := [d for d in list(self.replication_due) if d[0] == me]:
            for due in mine:
                self.replication_due.discard(due)
                start = self.related(due[1])
                if start is not None:
                    converge_quietly(start, due[2])

    # --- caches ------------------------------------------------------------------

    def recheck(self) -> None:
        """Notice changes another process made to the store (cheap).

        The store is asked at most every 50 ms, or on every call when its token
        costs no query (PostgreSQL's). The key and alias caches, the keyring
        and the access decisions are dropped when the store's change token
        moved.
        """
        if not self._free_token:
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
            self.custom_key_stores.forget()
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
        self.recheck()
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
        if key.valid_to is not None:
            now = self.clock()
            if key.valid_to <= now:
                key = expire_imported(self, key, now)
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
            self.recheck()
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

    def key_state(self, key: KeyRecord) -> KeyState:
        """The state a key shows: Unavailable while its custom key store is not connected."""
        if key.custom_key_store_id is None:
            return key.state
        return self.custom_key_stores.key_state(key)

    def delete_expired(self, key: KeyRecord) -> None:
        """Delete a key whose deletion window has ended, material and all."""
        if key.custom_key_store_id is not None:
            self.custom_key_stores.destroy_material(key, self.store.list_materials(key.key_id))
        self.store.delete_key(key.key_id)
        self.forget(key.key_id)
        if key.multi_region and key.primary_region not in (None, self.region):
            # A replica gone: its primary's configuration drops it.
            self.note_replication(key.key_id, key.primary_region)

    def maintenance_due(self) -> bool:
        """Whether periodic maintenance should run now (cheap to ask)."""
        return time.monotonic() >= self.maintenance_deadline

    def mark_maintained(self) -> None:
        """Note that maintenance just ran."""
        self.maintenance_deadline = time.monotonic() + MAINTENANCE_SECONDS

    def close(self) -> None:
        """Seal the audit trail, release the store and forget all material.

        The home of a deployment closes its other namespaces first.
        """
        deployment = self.deployment
        if deployment is not None and getattr(deployment, "home", None) is self:
            deployment.close()
        close_auditor = getattr(self.auditor, "close", None)
        if close_auditor is not None:
            close_auditor()
        self.keyring.clear()
        self.custom_key_stores.close()
        close_root = getattr(self.root_key, "close", None)
        if close_root is not None:
            close_root()  # a root key in a token: log out
        with self._cache_lock:
            self._keys.clear()
            self._aliases.clear()
        self.store.close()
