"""The SQL stores' tables for principals, access keys and grants.

A mixin of both SQL stores (:class:`~kmscore.store.sqlite.SQLiteKeyStore` and
:class:`~kmscore.store.postgres.PostgresKeyStore`), kept apart so each module
stays a few hundred lines. The SQL is the subset both dialects speak, with
``?`` placeholders (the PostgreSQL store translates them). Inserts that may
collide use ``ON CONFLICT DO NOTHING`` and count rows rather than catching a
constraint error, because an error inside a PostgreSQL transaction ends it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

from kmscore.errors import AlreadyExistsException, NotFoundException
from kmscore.model.grant import Grant
from kmscore.model.key import from_epoch, to_epoch
from kmscore.model.principal import AccessKey, Principal

__all__ = ["AccessTables"]

_PRINCIPAL_COLUMNS: Final = "name, arn, principal_id, uid, identity_policy, creation_date, tags"
_GRANT_COLUMNS: Final = (
    "grant_id, key_id, name, grantee_principal, retiring_principal, issuing_account, "
    "operations, constraints, token, creation_date"
)


def _principal(row: Sequence[Any]) -> Principal:
    return Principal(row[0], row[1], row[2], row[3], row[4], from_epoch(row[5]), json.loads(row[6]))


def _grant(row: Sequence[Any]) -> Grant:
    return Grant(
        grant_id=row[0],
        key_id=row[1],
        name=row[2],
        grantee_principal=row[3],
        retiring_principal=row[4],
        issuing_account=row[5],
        operations=tuple(json.loads(row[6])),
        constraints=json.loads(row[7]) if row[7] is not None else None,
        token=row[8],
        creation_date=from_epoch(row[9]),
    )


class Cursor(Protocol):
    """What the shared SQL needs of a statement's result (DB-API)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Session(Protocol):
    """What the shared SQL needs of a connection inside a write transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, args: Any, /) -> Any: ...


class AccessTables:
    """Principals, access keys and grants in SQL."""

    def _write(self) -> contextlib.AbstractContextManager[Session]:
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    # --- principals ------------------------------------------------------------

    def create_principal(self, principal: Principal, access_key: AccessKey | None) -> None:
        """Add a user, with its first access key.

        Raises:
            AlreadyExistsException: the name, ARN or uid is taken.
        """
        with self._write() as db:
            cur = db.execute(
                f"INSERT INTO principals ({_PRINCIPAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    principal.name,
                    principal.arn,
                    principal.principal_id,
                    principal.uid,
                    principal.identity_policy,
                    to_epoch(principal.creation_date),
                    json.dumps(dict(principal.tags), sort_keys=True),
                ),
            )
            if cur.rowcount != 1:
                raise AlreadyExistsException(
                    f"A principal named {principal.name} or with uid {principal.uid} exists."
                )
            if access_key is not None:
                self._insert_access_key(db, access_key)

    def _one_principal(self, where: str, arg: object) -> Principal | None:
        rows = self._read(f"SELECT {_PRINCIPAL_COLUMNS} FROM principals WHERE {where} = ?", (arg,))
        return _principal(rows[0]) if rows else None

    def get_principal(self, name: str) -> Principal | None:
        """A user by name, or None."""
        return self._one_principal("name", name)

    def get_principal_by_uid(self, uid: int) -> Principal | None:
        """The user mapped to a Unix uid, or None."""
        return self._one_principal("uid", uid)

    def get_principal_by_arn(self, arn: str) -> Principal | None:
        """A user by ARN, or None."""
        return self._one_principal("arn", arn)

    def list_principals(self) -> list[Principal]:
        """All users, by name."""
        rows = self._read(f"SELECT {_PRINCIPAL_COLUMNS} FROM principals ORDER BY name")
        return [_principal(r) for r in rows]

    def delete_principal(self, name: str) -> None:
        """Remove a user and its access keys.

        Raises:
            NotFoundException: no such user.
        """
        with self._write() as db:
            if db.execute("DELETE FROM principals WHERE name = ?", (name,)).rowcount != 1:
                raise NotFoundException(f"Principal {name} does not exist.")

    def set_principal_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace a user's tags (``aws:PrincipalTag/<key>``).

        Raises:
            NotFoundException: no such user.
        """
        with self._write() as db:
            cur = db.execute(
                "UPDATE principals SET tags = ? WHERE name = ?",
                (json.dumps(tags, sort_keys=True), name),
            )
            if cur.rowcount != 1:
                raise NotFoundException(f"Principal {name} does not exist.")

    def set_identity_policy(self, name: str, policy: str | None) -> None:
        """Replace a user's identity policy.

        Raises:
            NotFoundException: no such user.
        """
        with self._write() as db:
            cur = db.execute(
                "UPDATE principals SET identity_policy = ? WHERE name = ?", (policy, name)
            )
            if cur.rowcount != 1:
                raise NotFoundException(f"Principal {name} does not exist.")

    # --- access keys -------------------------------------------------------------

    @staticmethod
    def _insert_access_key(db: Session, key: AccessKey) -> None:
        db.execute(
            "INSERT INTO access_keys VALUES (?, ?, ?, ?)",
            (
                key.access_key_id,
                key.principal_name,
                key.wrapped_secret,
                to_epoch(key.creation_date),
            ),
        )

    def add_access_key(self, key: AccessKey) -> None:
        """Add an access key to an existing user."""
        with self._write() as db:
            self._insert_access_key(db, key)

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        """An access key by id, or None."""
        rows = self._read("SELECT * FROM access_keys WHERE access_key_id = ?", (access_key_id,))
        if not rows:
            return None
        r = rows[0]
        return AccessKey(r[0], r[1], bytes(r[2]), from_epoch(r[3]))

    def list_access_key_ids(self, name: str) -> list[str]:
        """The access key ids of a user."""
        rows = self._read(
            "SELECT access_key_id FROM access_keys WHERE principal_name = ? ORDER BY 1", (name,)
        )
        return [r[0] for r in rows]

    # --- grants ----------------------------------------------------------------------

    def create_grant(self, grant: Grant) -> None:
        """Add a grant."""
        with self._write() as db:
            db.execute(
                f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.grant_id,
                    grant.key_id,
                    grant.name,
                    grant.grantee_principal,
                    grant.retiring_principal,
                    grant.issuing_account,
                    json.dumps(list(grant.operations)),
                    json.dumps(grant.constraints) if grant.constraints else None,
                    grant.token,
                    to_epoch(grant.creation_date),
                ),
            )

    def get_grant(self, grant_id: str) -> Grant | None:
        """A grant by id, or None."""
        rows = self._read(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE grant_id = ?", (grant_id,))
        return _grant(rows[0]) if rows else None

    def get_grant_by_token(self, token: str) -> Grant | None:
        """The grant a token was issued for, or None."""
        rows = self._read(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE token = ?", (token,))
        return _grant(rows[0]) if rows else None

    def key_grants(self, key_id: str) -> list[Grant]:
        """Every grant on a key, by grant id."""
        rows = self._read(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE key_id = ? ORDER BY grant_id", (key_id,)
        )
        return [_grant(r) for r in rows]

    def list_retirable_grants(self, retiring: str, after: str | None, limit: int) -> list[Grant]:
        """Grants a principal may retire, by grant id, after ``after``."""
        rows = self._read(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE retiring_principal = ? AND grant_id > ? "
            "ORDER BY grant_id LIMIT ?",
            (retiring, after or "", limit),
        )
        return [_grant(r) for r in rows]

    def delete_grant(self, grant_id: str) -> None:
        """Remove a grant.

        Raises:
            NotFoundException: no such grant.
        """
        with self._write() as db:
            if db.execute("DELETE FROM grants WHERE grant_id = ?", (grant_id,)).rowcount != 1:
                raise NotFoundException(f"Grant {grant_id} does not exist.")
