"""The SQL stores' table of custom key stores.

A mixin of both SQL stores, like :mod:`kmscore.store.access_tables`: the SQL
is the subset SQLite and PostgreSQL both speak. Names are unique (the
``CustomKeyStoreNameInUseException`` check runs inside the write, so two
writers cannot both take one name); updates are guarded by a revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from kmscore.errors import (
    ConflictException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
)
from kmscore.model.custom_key_store import ConnectionState, CustomKeyStoreRecord
from kmscore.model.key import from_epoch, to_epoch
from kmscore.store.access_tables import AccessTables

__all__ = ["CustomKeyStoreTables"]

_COLUMNS: Final = (
    "custom_key_store_id, name, store_type, connection_state, creation_date, "
    "connection_error_code, cluster_id, trust_anchor, wrapped_password, xks_uri_endpoint, "
    "xks_uri_path, xks_connectivity, xks_vpc_service_name, xks_vpc_service_owner, "
    "xks_access_key_id, xks_wrapped_secret, revision"
)
_COLUMN_COUNT: Final = 17


def _record(row: Sequence[Any]) -> CustomKeyStoreRecord:
    return CustomKeyStoreRecord(
        custom_key_store_id=row[0],
        name=row[1],
        store_type=row[2],
        connection_state=ConnectionState(row[3]),
        creation_date=from_epoch(row[4]),
        connection_error_code=row[5],
        cluster_id=row[6],
        trust_anchor=row[7],
        wrapped_password=None if row[8] is None else bytes(row[8]),
        xks_uri_endpoint=row[9],
        xks_uri_path=row[10],
        xks_connectivity=row[11],
        xks_vpc_service_name=row[12],
        xks_vpc_service_owner=row[13],
        xks_access_key_id=row[14],
        xks_wrapped_secret=None if row[15] is None else bytes(row[15]),
        revision=row[16],
    )


def _values(r: CustomKeyStoreRecord, revision: int) -> tuple[Any, ...]:
    return (
        r.custom_key_store_id,
        r.name,
        r.store_type,
        r.connection_state.value,
        to_epoch(r.creation_date),
        r.connection_error_code,
        r.cluster_id,
        r.trust_anchor,
        r.wrapped_password,
        r.xks_uri_endpoint,
        r.xks_uri_path,
        r.xks_connectivity,
        r.xks_vpc_service_name,
        r.xks_vpc_service_owner,
        r.xks_access_key_id,
        r.xks_wrapped_secret,
        revision,
    )


class CustomKeyStoreTables(AccessTables):
    """Custom key stores in SQL (and, inherited, the access tables)."""

    def create_custom_key_store(self, record: CustomKeyStoreRecord) -> None:
        """See :meth:`KeyStore.create_custom_key_store`."""
        with self._write() as db:
            taken = db.execute(
                "SELECT 1 FROM custom_key_stores WHERE name = ?", (record.name,)
            ).fetchone()
            if taken is not None:
                raise CustomKeyStoreNameInUseException(
                    f"A custom key store named {record.name!r} exists already."
                )
            db.execute(
                f"INSERT INTO custom_key_stores ({_COLUMNS}) "
                f"VALUES ({', '.join('?' * _COLUMN_COUNT)})",
                _values(record, 1),
            )

    def get_custom_key_store(self, custom_key_store_id: str) -> CustomKeyStoreRecord | None:
        """See :meth:`KeyStore.get_custom_key_store`."""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM custom_key_stores WHERE custom_key_store_id = ?",
            (custom_key_store_id,),
        )
        return _record(rows[0]) if rows else None

    def list_custom_key_stores(self) -> list[CustomKeyStoreRecord]:
        """See :meth:`KeyStore.list_custom_key_stores`."""
        rows = self._read(f"SELECT {_COLUMNS} FROM custom_key_stores ORDER BY custom_key_store_id")
        return [_record(r) for r in rows]

    def update_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        """See :meth:`KeyStore.update_custom_key_store`."""
        with self._write() as db:
            taken = db.execute(
                "SELECT 1 FROM custom_key_stores WHERE name = ? AND custom_key_store_id <> ?",
                (record.name, record.custom_key_store_id),
            ).fetchone()
            if taken is not None:
                raise CustomKeyStoreNameInUseException(
                    f"A custom key store named {record.name!r} exists already."
                )
            values = _values(record, record.revision + 1)
            assignments = ", ".join(f"{c.strip()} = ?" for c in _COLUMNS.split(",")[1:])
            cur = db.execute(
                f"UPDATE custom_key_stores SET {assignments} "
                "WHERE custom_key_store_id = ? AND revision = ?",
                (*values[1:], record.custom_key_store_id, record.revision),
            )
            if cur.rowcount != 1:
                exists = db.execute(
                    "SELECT 1 FROM custom_key_stores WHERE custom_key_store_id = ?",
                    (record.custom_key_store_id,),
                ).fetchone()
                if exists is None:
                    raise CustomKeyStoreNotFoundException(
                        f"Custom key store {record.custom_key_store_id} does not exist."
                    )
                raise ConflictException(
                    f"Custom key store {record.custom_key_store_id} changed concurrently; retry."
                )
        return record.replace(revision=record.revision + 1)

    def delete_custom_key_store(self, custom_key_store_id: str) -> None:
        """See :meth:`KeyStore.delete_custom_key_store`."""
        with self._write() as db:
            db.execute(
                "DELETE FROM custom_key_stores WHERE custom_key_store_id = ?",
                (custom_key_store_id,),
            )

    def count_custom_key_store_keys(self, custom_key_store_id: str) -> int:
        """See :meth:`KeyStore.count_custom_key_store_keys`."""
        rows = self._read(
            "SELECT COUNT(*) FROM keys WHERE custom_key_store_id = ?", (custom_key_store_id,)
        )
        return int(rows[0][0])

    def find_xks_key(self, custom_key_store_id: str, xks_key_id: str) -> str | None:
        """See :meth:`KeyStore.find_xks_key`."""
        rows = self._read(
            "SELECT key_id FROM keys WHERE custom_key_store_id = ? AND xks_key_id = ?",
            (custom_key_store_id, xks_key_id),
        )
        return str(rows[0][0]) if rows else None
