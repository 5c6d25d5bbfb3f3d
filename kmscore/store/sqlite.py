"""The embedded key store: SQLite in the data dir.

WAL journal with ``synchronous=FULL`` (a commit is durable on return),
``secure_delete`` (deleted rows are zeroed in the file), foreign keys on, and a
busy timeout so several processes can share one data dir: writes take the
database lock with ``BEGIN IMMEDIATE`` and wait for each other. The database
and its ``-wal``/``-shm`` side files are created 0600 with ``O_EXCL`` before
SQLite opens them, inside a 0700 directory.

Other processes notice changes by the ``changes`` table's generation, which
every committed write adds one to, except an AES-GCM invocation reservation:
reservations change nothing another process caches, and moving the token for
them made each worker drop its caches, reload the key version and reserve a
new block after every reservation of another (a block per call under
alternating load, each spending 2**20 of the version's invocations).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from kmscore.errors import KMSInternalException
from kmscore.fsutil import create_private_file, ensure_private_dir, fsync_dir
from kmscore.store.key_tables import KeyTables
from kmscore.store.migrations import MIGRATIONS

__all__ = ["DB_FILE", "SQLiteKeyStore"]

DB_FILE: Final = "kms.db"
_SIDE_FILES: Final = ("-wal", "-shm")
_BUSY_TIMEOUT_MS: Final = 30_000


class SQLiteKeyStore(KeyTables):
    """A :class:`~kmscore.store.KeyStore` in one SQLite file. Thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        """Open (creating if needed) the store in ``data_dir``.

        Raises:
            KMSInternalException: the database cannot be opened or is newer
                than this code.
        """
        ensure_private_dir(data_dir)
        path = data_dir / DB_FILE
        for suffix in ("", *_SIDE_FILES):
            with contextlib.suppress(FileExistsError):
                # Created empty and private before SQLite can create them
                # with the process umask; SQLite accepts empty files.
                os.close(create_private_file(Path(str(path) + suffix)))
        fsync_dir(data_dir)
        self._lock = threading.RLock()
        self._depth = 0
        # A write in the open transaction that other processes must notice.
        self._changed = False
        # The changes generation accounted for, the data_version it was read
        # at, and the token built from them (see change_token).
        self._generation = -1
        self._data_version = -1
        self._token = 0
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
            )
            self._enable_wal()
            for pragma in (
                "synchronous=FULL",
                "foreign_keys=ON",
                "secure_delete=ON",
                f"busy_timeout={_BUSY_TIMEOUT_MS}",
            ):
                self._db.execute(f"PRAGMA {pragma}")
            self._migrate()
        except sqlite3.Error as exc:
            raise KMSInternalException(f"The key store {path} cannot be opened: {exc}") from None

    # --- plumbing ------------------------------------------------------------

    def _enable_wal(self) -> None:
        # Switching a new database to WAL takes an exclusive lock, and SQLite
        # answers SQLITE_BUSY at once, without the busy handler, while another
        # process opens the same new database. Retry within the busy timeout.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.002)

    def _migrate(self) -> None:
        with self.transaction():
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            latest = MIGRATIONS[-1][0]
            if current > latest:
                raise KMSInternalException(
                    f"The key store is at schema version {current}, newer than this "
                    f"kmscore understands ({latest}); upgrade kmscore."
                )
            for number, sql in MIGRATIONS:
                if number > current:
                    for statement in sql.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._changed = True
                    self._db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`KeyStore.transaction`."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    generation = None
                    if self._changed:
                        (generation,) = self._db.execute(
                            "UPDATE changes SET generation = generation + 1 RETURNING generation"
                        ).fetchone()
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
                if generation is not None:
                    # One more than known: only this write. More: another
                    # process changed something this one has not noticed yet.
                    if generation != self._generation + 1:
                        self._token += 1
                    self._generation = generation
            finally:
                self._depth = 0
                self._changed = False

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking SQLite's write lock up front.

        Inside :meth:`transaction` it joins the open transaction instead.
        """
        with self.transaction():
            self._changed = True
            yield self._db

    @contextlib.contextmanager
    def _reservation_write(self) -> Iterator[sqlite3.Connection]:
        """A write other processes need not notice (an invocation reservation)."""
        with self.transaction():
            yield self._db

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- keys ----------------------------------------------------------------------

    def delete_key(self, key_id: str) -> None:
        """See :meth:`KeyStore.delete_key`."""
        super().delete_key(key_id)  # secure_delete zeroes the rows' pages
        # secure_delete zeroes the database pages, but the WAL still holds
        # earlier images of them (wrapped material included) until it is
        # overwritten. Checkpoint and truncate it, so deleted really means gone.
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # --- housekeeping -------------------------------------------------------------------

    def change_token(self) -> int:
        """See :meth:`KeyStore.change_token`."""
        # data_version moves only when *another* connection commits, and is
        # free to read; the generation then tells a change from a reservation.
        # This store's own writes move neither: their callers invalidate
        # their caches themselves.
        with self._lock:
            (data_version,) = self._db.execute("PRAGMA data_version").fetchone()
            if data_version != self._data_version:
                self._data_version = data_version
                (generation,) = self._db.execute(
                    "SELECT generation FROM changes WHERE id = 0"
                ).fetchone()
                if generation != self._generation:
                    if self._generation >= 0:
                        self._token += 1
                    self._generation = generation
            return self._token

    def close(self) -> None:
        """See :meth:`KeyStore.close`."""
        with self._lock:
            self._db.close()
