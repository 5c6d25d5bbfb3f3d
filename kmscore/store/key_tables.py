"""The SQL stores' tables for keys, key material, aliases and tags.

A mixin of both SQL stores (:class:`~kmscore.store.sqlite.SQLiteKeyStore` and
:class:`~kmscore.store.postgres.PostgresKeyStore`): the SQL is the subset both
dialects speak, with ``?`` placeholders. Each store supplies ``_write`` (a
write transaction, joining an open one) and ``_read``. Inserts that may collide
use ``ON CONFLICT DO NOTHING`` and count rows rather than catching a constraint
error, because an error inside a PostgreSQL transaction ends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from kmscore.errors import (
    AlreadyExistsException,
    ConflictException,
    LimitExceededException,
    NotFoundException,
)
from kmscore.model.key import AliasRecord, KeyMaterialRecord, KeyRecord, from_epoch, to_epoch
from kmscore.model.keystate import KeyState
from kmscore.store.access_tables import Session
from kmscore.store.custom_key_store_tables import CustomKeyStoreTables

__all__ = ["KeyTables"]

_KEY_COLUMNS: Final = (
    "key_id, arn, account, creation_date, description, key_usage, key_spec, origin, state, "
    "current_version, multi_region, deletion_date, pending_window_days, rotation_enabled, "
    "rotation_period_days, next_rotation_date, on_demand_rotation_start, policy, revision, "
    "expiration_model, valid_to, multi_region_config, custom_key_store_id, xks_key_id, "
    "cloud_hsm_cluster_id"
)
_KEY_COLUMN_COUNT: Final = 25
_MATERIAL_COLUMNS: Final = (
    "key_id, version, wrapped, creation_date, material_id, rotation_type, reserved, "
    "import_state, expiration_model, valid_to, description"
)


def _opt_time(value: float | None) -> Any:
    return None if value is None else from_epoch(value)


def _opt_epoch(value: Any) -> float | None:
    return None if value is None else to_epoch(value)


def _multi_region_fields(config: str | None) -> dict[str, Any]:
    # {"primary": region, "replicas": [region, ...], "epoch": n}, on every related key.
    if not config:
        return {}
    parsed = json.loads(config)
    return {
        "primary_region": parsed["primary"],
        "replica_regions": tuple(parsed["replicas"]),
        "multi_region_epoch": int(parsed.get("epoch", 0)),
    }


def _multi_region_config(k: KeyRecord) -> str | None:
    if k.primary_region is None:
        return None
    return json.dumps(
        {
            "primary": k.primary_region,
            "replicas": list(k.replica_regions),
            "epoch": k.multi_region_epoch,
        }
    )


def _key_from_row(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        key_id=row[0],
        arn=row[1],
        account=row[2],
        creation_date=from_epoch(row[3]),
        description=row[4],
        key_usage=row[5],
        key_spec=row[6],
        origin=row[7],
        state=KeyState(row[8]),
        current_version=row[9],
        multi_region=bool(row[10]),
        deletion_date=_opt_time(row[11]),
        pending_window_days=row[12],
        rotation_enabled=bool(row[13]),
        rotation_period_days=row[14],
        next_rotation_date=_opt_time(row[15]),
        on_demand_rotation_start=_opt_time(row[16]),
        policy=row[17],
        revision=row[18],
        expiration_model=row[19],
        valid_to=_opt_time(row[20]),
        **_multi_region_fields(row[21]),
        custom_key_store_id=row[22],
        xks_key_id=row[23],
        cloud_hsm_cluster_id=row[24],
    )


def _key_values(k: KeyRecord, revision: int) -> tuple[Any, ...]:
    return (
        k.key_id,
        k.arn,
        k.account,
        to_epoch(k.creation_date),
        k.description,
        k.key_usage,
        k.key_spec,
        k.origin,
        k.state.value,
        k.current_version,
        int(k.multi_region),
        _opt_epoch(k.deletion_date),
        k.pending_window_days,
        int(k.rotation_enabled),
        k.rotation_period_days,
        _opt_epoch(k.next_rotation_date),
        _opt_epoch(k.on_demand_rotation_start),
        k.policy,
        revision,
        k.expiration_model,
        _opt_epoch(k.valid_to),
        _multi_region_config(k),
        k.custom_key_store_id,
        k.xks_key_id,
        k.cloud_hsm_cluster_id,
    )


def _material_from_row(row: Sequence[Any]) -> KeyMaterialRecord:
    return KeyMaterialRecord(
        key_id=row[0],
        version=row[1],
        wrapped=bytes(row[2]),
        creation_date=from_epoch(row[3]),
        material_id=row[4],
        rotation_type=row[5],
        reserved=row[6],
        import_state=row[7],
        expiration_model=row[8],
        valid_to=_opt_time(row[9]),
        description=row[10],
    )


def _alias_from_row(row: Sequence[Any]) -> AliasRecord:
    return AliasRecord(row[0], row[1], from_epoch(row[2]), from_epoch(row[3]))


class KeyTables(CustomKeyStoreTables):
    """Keys, material, aliases and tags in SQL (and, inherited, the access tables)."""

    def _reservation_write(self) -> AbstractContextManager[Session]:
        """The write transaction of a reservation (a store may keep it quieter)."""
        return self._write()

    # --- settings ---------------------------------------------------------------

    def get_setting(self, name: str) -> bytes | None:
        """See :meth:`KeyStore.get_setting`."""
        rows = self._read("SELECT value FROM settings WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def init_settings(self, settings: Mapping[str, bytes]) -> None:
        """See :meth:`KeyStore.init_settings`."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                settings.items(),
            )

    # --- keys -------------------------------------------------------------------

    def create_key(
        self, key: KeyRecord, material: KeyMaterialRecord | None, tags: Mapping[str, str]
    ) -> None:
        """See :meth:`KeyStore.create_key`."""
        with self._write() as db:
            cur = db.execute(
                f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES ({', '.join('?' * _KEY_COLUMN_COUNT)}) "
                "ON CONFLICT DO NOTHING",
                _key_values(key, 1),
            )
            if cur.rowcount != 1:
                raise AlreadyExistsException(f"Key {key.key_id} already exists.")
            if material is not None and not self._insert_material(db, material):
                raise AlreadyExistsException(f"Key {key.key_id} material exists.")
            db.executemany(
                "INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?)",
                [(key.key_id, k, v) for k, v in tags.items()],
            )

    def get_key(self, key_id: str) -> KeyRecord | None:
        """See :meth:`KeyStore.get_key`."""
        rows = self._read(f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,))
        return _key_from_row(rows[0]) if rows else None

    def list_keys(self, after: str | None, limit: int) -> list[KeyRecord]:
        """See :meth:`KeyStore.list_keys`."""
        rows = self._read(
            f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id > ? ORDER BY key_id LIMIT ?",
            (after or "", limit),
        )
        return [_key_from_row(r) for r in rows]

    def update_key(self, key: KeyRecord) -> KeyRecord:
        """See :meth:`KeyStore.update_key`."""
        with self._write() as db:
            return self._update_key(db, key)

    def _update_key(self, db: Session, key: KeyRecord) -> KeyRecord:
        values = _key_values(key, key.revision + 1)
        assignments = ", ".join(f"{c.strip()} = ?" for c in _KEY_COLUMNS.split(",")[1:])
        cur = db.execute(
            f"UPDATE keys SET {assignments} WHERE key_id = ? AND revision = ?",
            (*values[1:], key.key_id, key.revision),
        )
        if cur.rowcount != 1:
            exists = db.execute("SELECT 1 FROM keys WHERE key_id = ?", (key.key_id,)).fetchone()
            if exists is None:
                raise NotFoundException(f"Key '{key.arn}' does not exist")
            raise ConflictException(f"Key {key.key_id} was changed concurrently; retry.")
        return key.replace(revision=key.revision + 1)

    def delete_key(self, key_id: str) -> None:
        """See :meth:`KeyStore.delete_key`."""
        with self._write() as db:
            # Cascades to material, aliases, tags and grants.
            db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))

    # --- key material -------------------------------------------------------------

    @staticmethod
    def _insert_material(db: Session, m: KeyMaterialRecord) -> bool:
        cur = db.execute(
            f"INSERT INTO key_materials ({_MATERIAL_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                m.key_id,
                m.version,
                m.wrapped,
                to_epoch(m.creation_date),
                m.material_id,
                m.rotation_type,
                m.reserved,
                m.import_state,
                m.expiration_model,
                _opt_epoch(m.valid_to),
                m.description,
            ),
        )
        return bool(cur.rowcount == 1)

    def put_material(self, key: KeyRecord, material: KeyMaterialRecord) -> KeyRecord:
        """See :meth:`KeyStore.put_material`."""
        with self._write() as db:
            stored = self._update_key(db, key)
            # An existing version keeps its invocation count: reimporting the
            # same material must not reset it.
            cur = db.execute(
                "UPDATE key_materials SET wrapped = ?, creation_date = ?, rotation_type = ?, "
                "import_state = ?, expiration_model = ?, valid_to = ?, description = ? "
                "WHERE key_id = ? AND version = ?",
                (
                    material.wrapped,
                    to_epoch(material.creation_date),
                    material.rotation_type,
                    material.import_state,
                    material.expiration_model,
                    _opt_epoch(material.valid_to),
                    material.description,
                    material.key_id,
                    material.version,
                ),
            )
            if cur.rowcount == 0 and not self._insert_material(db, material):
                raise ConflictException(
                    f"Key {key.key_id} material version {material.version} changed; retry."
                )
            return stored

    def use_import_token(self, key_id: str, token_id: bytes, valid_to: float, now: float) -> bool:
        """See :meth:`KeyStore.use_import_token`."""
        with self._write() as db:
            db.execute("DELETE FROM used_import_tokens WHERE valid_to < ?", (now,))
            cur = db.execute(
                "INSERT INTO used_import_tokens (token_id, key_id, valid_to) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (token_id, key_id, valid_to),
            )
            return bool(cur.rowcount == 1)

    def add_material(self, key: KeyRecord, material: KeyMaterialRecord) -> KeyRecord:
        """See :meth:`KeyStore.add_material`."""
        with self._write() as db:
            stored = self._update_key(db, key)
            if not self._insert_material(db, material):
                raise ConflictException(
                    f"Key {key.key_id} material version {material.version} exists; retry."
                )
            return stored

    def get_material(self, key_id: str, version: int) -> KeyMaterialRecord | None:
        """See :meth:`KeyStore.get_material`."""
        rows = self._read(
            f"SELECT {_MATERIAL_COLUMNS} FROM key_materials WHERE key_id = ? AND version = ?",
            (key_id, version),
        )
        return _material_from_row(rows[0]) if rows else None

    def list_materials(self, key_id: str) -> list[KeyMaterialRecord]:
        """See :meth:`KeyStore.list_materials`."""
        rows = self._read(
            f"SELECT {_MATERIAL_COLUMNS} FROM key_materials WHERE key_id = ? ORDER BY version",
            (key_id,),
        )
        return [_material_from_row(r) for r in rows]

    def reserve_invocations(self, key_id: str, version: int, count: int) -> int:
        """See :meth:`KeyStore.reserve_invocations`."""
        with self._reservation_write() as db:
            row = db.execute(
                "UPDATE key_materials SET reserved = reserved + ? "
                "WHERE key_id = ? AND version = ? RETURNING reserved",
                (count, key_id, version),
            ).fetchone()
            if row is None:
                raise NotFoundException(f"Key {key_id} has no material version {version}.")
            return int(row[0])

    # --- aliases ----------------------------------------------------------------------

    def create_alias(self, alias: AliasRecord) -> None:
        """See :meth:`KeyStore.create_alias`."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    alias.alias_name,
                    alias.key_id,
                    to_epoch(alias.creation_date),
                    to_epoch(alias.last_updated_date),
                ),
            )
            if cur.rowcount != 1:
                raise AlreadyExistsException(
                    f"An alias with the name {alias.alias_name} already exists"
                )

    def update_alias(self, alias: AliasRecord) -> None:
        """See :meth:`KeyStore.update_alias`."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE aliases SET key_id = ?, last_updated_date = ? WHERE alias_name = ?",
                (alias.key_id, to_epoch(alias.last_updated_date), alias.alias_name),
            )
            if cur.rowcount != 1:
                raise NotFoundException(f"Alias {alias.alias_name} is not found.")

    def delete_alias(self, alias_name: str) -> None:
        """See :meth:`KeyStore.delete_alias`."""
        with self._write() as db:
            cur = db.execute("DELETE FROM aliases WHERE alias_name = ?", (alias_name,))
            if cur.rowcount != 1:
                raise NotFoundException(f"Alias {alias_name} is not found.")

    def get_alias(self, alias_name: str) -> AliasRecord | None:
        """See :meth:`KeyStore.get_alias`."""
        rows = self._read("SELECT * FROM aliases WHERE alias_name = ?", (alias_name,))
        return _alias_from_row(rows[0]) if rows else None

    def list_aliases(self, key_id: str | None, after: str | None, limit: int) -> list[AliasRecord]:
        """See :meth:`KeyStore.list_aliases`."""
        if key_id is None:
            rows = self._read(
                "SELECT * FROM aliases WHERE alias_name > ? ORDER BY alias_name LIMIT ?",
                (after or "", limit),
            )
        else:
            rows = self._read(
                "SELECT * FROM aliases WHERE key_id = ? AND alias_name > ? "
                "ORDER BY alias_name LIMIT ?",
                (key_id, after or "", limit),
            )
        return [_alias_from_row(r) for r in rows]

    # --- tags -------------------------------------------------------------------------

    def put_tags(self, key_id: str, tags: Mapping[str, str], max_tags: int) -> None:
        """See :meth:`KeyStore.put_tags`."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?) "
                "ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                [(key_id, k, v) for k, v in tags.items()],
            )
            (count,) = db.execute(
                "SELECT COUNT(*) FROM tags WHERE key_id = ?", (key_id,)
            ).fetchone()
            if count > max_tags:
                raise LimitExceededException(
                    f"A key can have at most {max_tags} tags; this request would make {count}."
                )

    def remove_tags(self, key_id: str, tag_keys: Sequence[str]) -> None:
        """See :meth:`KeyStore.remove_tags`."""
        with self._write() as db:
            db.executemany(
                "DELETE FROM tags WHERE key_id = ? AND tag_key = ?", [(key_id, k) for k in tag_keys]
            )

    def list_tags(self, key_id: str) -> list[tuple[str, str]]:
        """See :meth:`KeyStore.list_tags`."""
        rows = self._read(
            "SELECT tag_key, tag_value FROM tags WHERE key_id = ? ORDER BY tag_key", (key_id,)
        )
        return [(r[0], r[1]) for r in rows]
