"""Key store: where keys, key material, aliases and tags live.

The contract every implementation keeps:

- **Atomic.** Each method either happens entirely or not at all.
- **Durable on return.** When a method that changes state returns, the change
  survives a crash of the process or the machine (``kill -9``, power loss).
- **Encrypted material only.** The store receives key material already wrapped
  under the root key (:mod:`kmscore.crypto.rootkey`) and never sees plaintext keys.
- **Optimistic updates.** :meth:`KeyStore.update_key` succeeds only if the
  stored revision equals the given record's, and stores the revision plus one;
  otherwise it raises :class:`~kmscore.errors.ConflictException` and changes
  nothing. Concurrent writers (threads or processes) retry.
- **Monotonic reservations.** :meth:`KeyStore.reserve_invocations` only ever
  increases a material version's reserved count.
- **Transactions.** :meth:`KeyStore.transaction` groups several changes (a
  mutating operation and its audit record) so they happen together or not at all.
- **Deletion cascades.** Deleting a key deletes its material, aliases, tags
  and grants; deleting a principal deletes its access keys.
- **Change detection.** :meth:`KeyStore.change_token` returns a value that
  differs after any change to keys, material, aliases, tags, grants,
  principals or settings committed by another writer (another connection,
  process or node), so caches can be invalidated across processes cheaply.
  Changes made through this store object do not move it: their callers
  invalidate their own caches. Another writer's invocation reservations must
  not move it: they change nothing a cache holds, and a reader that dropped
  its cached key version would reserve a fresh block on its next encryption.
- **Linearizable.** Concurrent writers of one key are ordered: a method that
  reads inside :meth:`KeyStore.transaction` (``list_materials``, ``key_grants``)
  and the writes after it see no change by another writer in between.

Implementations: :class:`kmscore.store.sqlite.SQLiteKeyStore` (embedded
default) and :class:`kmscore.store.postgres.PostgresKeyStore` (a fleet of
nodes on one PostgreSQL database; docs/fleet.md). Both run the same SQL
(:mod:`kmscore.store.key_tables`), and tests/test_store_contract.py holds
both to this contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from kmscore.model.custom_key_store import CustomKeyStoreRecord
from kmscore.model.grant import Grant
from kmscore.model.key import AliasRecord, KeyMaterialRecord, KeyRecord
from kmscore.model.principal import AccessKey, Principal

__all__ = ["KeyStore"]


class KeyStore(Protocol):
    """The storage interface of the key service. See the module docstring."""

    # --- data dir settings ---------------------------------------------------
    def get_setting(self, name: str) -> bytes | None:
        """A setting of the data dir (region, account, root key check...)."""
        ...

    def init_settings(self, settings: Mapping[str, bytes]) -> None:
        """Store settings that do not exist yet; existing ones are kept."""
        ...

    # --- keys ----------------------------------------------------------------
    def create_key(
        self, key: KeyRecord, material: KeyMaterialRecord | None, tags: Mapping[str, str]
    ) -> None:
        """Add a new key with its first material version (if any) and tags.

        Raises:
            AlreadyExistsException: the key id exists.
        """
        ...

    def get_key(self, key_id: str) -> KeyRecord | None:
        """The key, or None."""
        ...

    def list_keys(self, after: str | None, limit: int) -> list[KeyRecord]:
        """Keys in key id order, starting after ``after``, at most ``limit``."""
        ...

    def update_key(self, key: KeyRecord) -> KeyRecord:
        """Replace a key's metadata if its revision is unchanged.

        Returns:
            The stored record, with its new revision.

        Raises:
            ConflictException: the stored revision differs (retry).
            NotFoundException: the key does not exist.
        """
        ...

    def delete_key(self, key_id: str) -> None:
        """Delete a key with all its material, aliases and tags, for good."""
        ...

    # --- key material ----------------------------------------------------------
    def add_material(self, key: KeyRecord, material: KeyMaterialRecord) -> KeyRecord:
        """Add a material version and update the key (rotation), atomically.

        Raises:
            ConflictException: the key's revision changed (retry).
        """
        ...

    def put_material(self, key: KeyRecord, material: KeyMaterialRecord) -> KeyRecord:
        """Store ``key`` and one material version (added, or changed in place).

        A changed version keeps its invocation count (``reserved``).

        Raises:
            ConflictException: ``key.revision`` is not the stored revision.
            NotFoundException: the key does not exist.
        """
        ...

    def use_import_token(self, key_id: str, token_id: bytes, valid_to: float, now: float) -> bool:
        """Note an import token as used, once: True the first time, False after.

        Tokens expired before ``now`` (epoch seconds) are forgotten.
        """
        ...

    def get_material(self, key_id: str, version: int) -> KeyMaterialRecord | None:
        """One material version, or None."""
        ...

    def list_materials(self, key_id: str) -> list[KeyMaterialRecord]:
        """All material versions of a key, oldest first."""
        ...

    def reserve_invocations(self, key_id: str, version: int, count: int) -> int:
        """Reserve ``count`` more AES-GCM invocations; return the new total."""
        ...

    # --- aliases ---------------------------------------------------------------
    def create_alias(self, alias: AliasRecord) -> None:
        """Add an alias.

        Raises:
            AlreadyExistsException: the alias name exists.
        """
        ...

    def update_alias(self, alias: AliasRecord) -> None:
        """Point an existing alias at another key.

        Raises:
            NotFoundException: the alias does not exist.
        """
        ...

    def delete_alias(self, alias_name: str) -> None:
        """Remove an alias.

        Raises:
            NotFoundException: the alias does not exist.
        """
        ...

    def get_alias(self, alias_name: str) -> AliasRecord | None:
        """The alias, or None."""
        ...

    def list_aliases(self, key_id: str | None, after: str | None, limit: int) -> list[AliasRecord]:
        """Aliases in name order (of one key, if given), after ``after``."""
        ...

    # --- tags ------------------------------------------------------------------
    def put_tags(self, key_id: str, tags: Mapping[str, str], max_tags: int) -> None:
        """Add or overwrite tags.

        Raises:
            LimitExceededException: the key would have more than ``max_tags``.
        """
        ...

    def remove_tags(self, key_id: str, tag_keys: Sequence[str]) -> None:
        """Remove tags; absent keys are ignored."""
        ...

    def list_tags(self, key_id: str) -> list[tuple[str, str]]:
        """A key's tags in tag key order."""
        ...

    # --- principals and access keys -----------------------------------------------
    def create_principal(self, principal: Principal, access_key: AccessKey | None) -> None:
        """Add a user with its first access key.

        Raises:
            AlreadyExistsException: the name, ARN or uid is taken.
        """
        ...

    def get_principal(self, name: str) -> Principal | None:
        """A user by name, or None."""
        ...

    def get_principal_by_uid(self, uid: int) -> Principal | None:
        """The user mapped to a Unix uid, or None."""
        ...

    def get_principal_by_arn(self, arn: str) -> Principal | None:
        """A user by ARN, or None."""
        ...

    def list_principals(self) -> list[Principal]:
        """All users, by name."""
        ...

    def delete_principal(self, name: str) -> None:
        """Remove a user and its access keys.

        Raises:
            NotFoundException: no such user.
        """
        ...

    def set_principal_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace a user's tags (``aws:PrincipalTag/<key>``).

        Raises:
            NotFoundException: no such user.
        """
        ...

    def set_identity_policy(self, name: str, policy: str | None) -> None:
        """Replace a user's identity policy.

        Raises:
            NotFoundException: no such user.
        """
        ...

    def add_access_key(self, key: AccessKey) -> None:
        """Add an access key (secret wrapped under the root key) to a user."""
        ...

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        """An access key by id, or None."""
        ...

    def list_access_key_ids(self, name: str) -> list[str]:
        """The access key ids of a user."""
        ...

    # --- grants ------------------------------------------------------------------------
    def create_grant(self, grant: Grant) -> None:
        """Add a grant."""
        ...

    def get_grant(self, grant_id: str) -> Grant | None:
        """A grant by id, or None."""
        ...

    def get_grant_by_token(self, token: str) -> Grant | None:
        """The grant a token was issued for, or None."""
        ...

    def key_grants(self, key_id: str) -> list[Grant]:
        """Every grant on a key, by grant id."""
        ...

    def list_retirable_grants(self, retiring: str, after: str | None, limit: int) -> list[Grant]:
        """Grants a principal may retire, by grant id, after ``after``."""
        ...

    def delete_grant(self, grant_id: str) -> None:
        """Remove a grant.

        Raises:
            NotFoundException: no such grant.
        """
        ...

    # --- custom key stores -----------------------------------------------------------
    def create_custom_key_store(self, record: CustomKeyStoreRecord) -> None:
        """Add a custom key store.

        Raises:
            CustomKeyStoreNameInUseException: another store has the name.
        """
        ...

    def get_custom_key_store(self, custom_key_store_id: str) -> CustomKeyStoreRecord | None:
        """A custom key store by id, or None."""
        ...

    def list_custom_key_stores(self) -> list[CustomKeyStoreRecord]:
        """Every custom key store, by id."""
        ...

    def update_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        """Replace a custom key store if its revision is unchanged.

        Returns:
            The stored record, with its new revision.

        Raises:
            CustomKeyStoreNameInUseException: another store has the new name.
            CustomKeyStoreNotFoundException: no such store.
            ConflictException: the stored revision differs (retry).
        """
        ...

    def delete_custom_key_store(self, custom_key_store_id: str) -> None:
        """Remove a custom key store (absent ones are ignored)."""
        ...

    def count_custom_key_store_keys(self, custom_key_store_id: str) -> int:
        """How many keys (in any state) a custom key store holds."""
        ...

    def find_xks_key(self, custom_key_store_id: str, xks_key_id: str) -> str | None:
        """The key of an external key store that uses an external key id, or None."""
        ...

    # --- transactions ------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[None]:
        """Group the changes made inside into one atomic, durable commit.

        Methods called inside join it; if the block raises, none of their
        changes happen. Other writers wait until it ends.
        """
        ...

    # --- housekeeping ------------------------------------------------------------
    def change_token(self) -> int:
        """A value that changes after another writer commits a change."""
        ...

    def close(self) -> None:
        """Release the store. Further calls fail."""
        ...
