"""The fleet's key store: PostgreSQL, shared by every kmscore node.

Same contract as the SQLite store (:mod:`kmscore.store`), through the same SQL
(:mod:`kmscore.store.key_tables`, :mod:`kmscore.store.access_tables`), on
psycopg 3 with a connection pool. How each part of the contract is kept:

- **Durable on return:** a method returns after PostgreSQL's ``COMMIT``
  returned; with ``synchronous_commit=on`` (the default) and a synchronous
  standby the commit is on disk, and on the standby (docs/fleet.md).
- **Linearizable key changes, by row locks:** transactions run at READ
  COMMITTED. :meth:`update_key` is ``UPDATE ... WHERE revision = r``: a
  concurrent writer of the same row waits for the first to commit, then finds
  the revision moved and gets :class:`~kmscore.errors.ConflictException`; the
  service re-reads and retries. Decisions that read before they write (the
  on-demand rotation count, CreateGrant's idempotence and grant count) lock
  the key's row first (``SELECT ... FOR UPDATE``, see :meth:`list_materials`
  and :meth:`key_grants`), so two nodes deciding about one key take turns.
- **Atomic reservations:** ``UPDATE ... SET reserved = reserved + n
  RETURNING reserved`` under the row lock: two nodes never get the same counts.
- **Change detection across nodes:** every committing write transaction bumps
  this node's counter in ``kms_changes`` and sends ``NOTIFY kmscore_changes``
  with its node id, both inside the transaction (so both happen only if it
  commits). A listener thread moves :meth:`change_token` when another node's
  notification arrives, and polls the other nodes' counters every
  ``poll_seconds`` in case a notification was lost (and after it reconnects).
  Reservations do not bump it: they change no cached state.
- **Errors:** PostgreSQL unreachable or too slow gives
  :class:`~kmscore.errors.DependencyTimeoutException`, any other database
  error :class:`~kmscore.errors.KMSInternalException`, both naming the store
  and the cause; the transaction rolls back, so nothing changes. The pool
  reconnects by itself, so service resumes when the database is back.

A libpq multi-host URL (``postgresql://h1,h2/kms?target_session_attrs=read-write``)
gives failover: new connections go to whichever host accepts writes.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, Final

import psycopg
import psycopg_pool
from psycopg import conninfo

from kmscore.errors import DependencyTimeoutException, KMSInternalException
from kmscore.model.grant import Grant
from kmscore.model.key import KeyMaterialRecord
from kmscore.store.key_tables import KeyTables
from kmscore.store.postgres_migrations import MIGRATION_LOCK, MIGRATIONS

__all__ = ["CHANNEL", "DEFAULT_POLL_SECONDS", "PostgresKeyStore", "is_postgres_url"]

#: The NOTIFY channel of committed changes.
CHANNEL: Final = "kmscore_changes"
#: The polling fallback's period: the staleness bound when notifications are lost.
DEFAULT_POLL_SECONDS: Final = 1.0
#: Seconds to wait for a pooled connection (or a first connection) before
#: answering DependencyTimeoutException.
DEFAULT_TIMEOUT: Final = 5.0
#: Statements that run longer than this (a lock wait included) are cancelled.
_STATEMENT_TIMEOUT_MS: Final = 10_000
_BUMP_SQL: Final = (
    "WITH bump AS ("
    "INSERT INTO kms_changes (node, backend, n) VALUES (%s, pg_backend_pid(), 1) "
    "ON CONFLICT (node, backend) DO UPDATE SET n = kms_changes.n + 1, updated = now() "
    "RETURNING 1) "
    f"SELECT pg_notify('{CHANNEL}', %s) FROM bump"
)
_OTHERS_SQL: Final = "SELECT coalesce(sum(n), 0), count(*) FROM kms_changes WHERE node <> %s"


def is_postgres_url(spec: str) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database."""
    return spec.startswith(("postgresql://", "postgres://"))


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    # The shared SQL binds with "?"; psycopg with "%s". No statement holds "%".
    return sql.replace("?", "%s")


def describe_url(url: str) -> str:
    """The URL's hosts, ports and database, without user or password."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    hosts = str(params.get("host") or "localhost").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports *= len(hosts)  # one port for every host
    ports += [""] * (len(hosts) - len(ports))
    where = ",".join(f"{h}:{p}" if p else h for h, p in zip(hosts, ports, strict=False))
    return f"postgresql://{where}/{params.get('dbname') or ''}"


def _url_options(url: str) -> str:
    try:
        given = conninfo.conninfo_to_dict(url).get("options")
    except psycopg.ProgrammingError:
        return ""
    return f"{given} " if given else ""


class _Session:
    """A psycopg connection speaking the shared SQL (``?`` placeholders)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg(sql), args)

    def executemany(self, sql: str, args: Any) -> None:
        rows = list(args)
        if rows:
            # psycopg sends the rows in pipeline mode: one round trip.
            with self._conn.cursor() as cur:
                cur.executemany(_pg(sql), rows)


class _Tx(threading.local):
    conn: psycopg.Connection[Any] | None = None
    depth = 0
    changed = False


class PostgresKeyStore(KeyTables):
    """A :class:`~kmscore.store.KeyStore` in a PostgreSQL database. Thread-safe."""

    #: :meth:`change_token` reads a local counter (no query), so callers may
    #: ask it on every call.
    change_token_is_local: Final = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        timeout: float = DEFAULT_TIMEOUT,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        """Connect to the database, applying migrations it lacks.

        Args:
            url: A libpq URL or conninfo string; several hosts and
                ``target_session_attrs=read-write`` for failover.
            pool_size: Connections kept open at most.
            timeout: Seconds to wait for a connection before giving up.
            poll_seconds: Period of the change poll (the staleness bound when
                notifications are lost).

        Raises:
            DependencyTimeoutException: the database did not answer in time.
            KMSInternalException: it refused, or its schema is newer than
                this code.
        """
        self.where = describe_url(url)
        self._url = url
        self._timeout = timeout
        self._poll = poll_seconds
        self._node = uuid.uuid4().hex
        self._tx = _Tx()
        self._token = 0
        self._token_lock = threading.Lock()
        self._closed = threading.Event()
        #: Whether the listener is connected (False while the database is
        #: unreachable); periodic maintenance waits for it.
        self.online = False
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            # The URL's own options (a Region's search_path) come along.
            "options": f"{_url_options(url)}-c statement_timeout={_STATEMENT_TIMEOUT_MS}",
        }
        self._pool = psycopg_pool.ConnectionPool(
            url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            check=psycopg_pool.ConnectionPool.check_connection,
            # The pool's reconnect backoff doubles without a cap, so it gives
            # up soon instead; the next call that finds the pool empty then
            # connects at once. Either way the node resumes when the database
            # is back, without a restart.
            reconnect_timeout=2 * timeout,
            name="kmscore",
        )
        try:
            with self._errors("open"):
                self._pool.open(wait=True, timeout=timeout)
        except BaseException:
            self._pool.close()
            raise
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise
        self._listener = threading.Thread(target=self._listen, name="kms-pg-listen", daemon=True)
        self._listener_ready = threading.Event()
        self._listener.start()
        self._listener_ready.wait(timeout)

    # --- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Database errors as the KMS errors a caller can act on."""
        try:
            yield
        except psycopg_pool.PoolTimeout as exc:
            raise DependencyTimeoutException(
                f"The key store {self.where} gave no connection within {self._timeout:g} s "
                f"({what}): {exc}"
            ) from None
        except (psycopg.OperationalError, psycopg.errors.QueryCanceled) as exc:
            raise DependencyTimeoutException(
                f"The key store {self.where} is unreachable ({what}): {_first_line(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise KMSInternalException(
                f"The key store {self.where} failed ({what}): {_first_line(exc)}"
            ) from None

    def _migrate(self) -> None:
        with self._errors("migrate"), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kms_schema "
                "(version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM kms_schema").fetchone()
            current = int(row[0]) if row else 0
            latest = MIGRATIONS[-1][0]
            if current > latest:
                raise KMSInternalException(
                    f"The key store {self.where} is at schema version {current}, newer than "
                    f"this kmscore understands ({latest}); upgrade kmscore."
                )
            for number, sql in MIGRATIONS:
                if number > current:
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO kms_schema (version) VALUES (%s)", (number,))
            # Counters of nodes gone for a day; removing one only moves the
            # others' sums, which costs them one cache refill.
            conn.execute("DELETE FROM kms_changes WHERE updated < now() - interval '1 day'")

    def schema_version(self) -> int:
        """The number of the last migration applied."""
        rows = self._read("SELECT coalesce(max(version), 0) FROM kms_schema")
        return int(rows[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`KeyStore.transaction`."""
        tx = self._tx
        if tx.conn is not None:
            tx.depth += 1
            try:
                yield
            finally:
                tx.depth -= 1
            return
        with self._errors("transaction"), self._pool.connection() as conn:
            with conn.transaction():
                tx.conn, tx.depth, tx.changed = conn, 1, False
                try:
                    yield
                    if tx.changed:
                        conn.execute(_BUMP_SQL, (self._node, self._node))
                finally:
                    tx.conn, tx.depth = None, 0

    def _write(self) -> contextlib.AbstractContextManager[_Session]:
        """One write transaction; inside :meth:`transaction` it joins the open one."""
        return self._session(notify=True)

    def _reservation_write(self) -> contextlib.AbstractContextManager[_Session]:
        """A reservation changes nothing another node caches: no notification."""
        return self._session(notify=False)

    @contextlib.contextmanager
    def _session(self, *, notify: bool) -> Iterator[_Session]:
        with self.transaction(), self._errors("write"):
            conn = self._tx.conn
            assert conn is not None
            if notify:
                self._tx.changed = True
            yield _Session(conn)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._errors("read"):
            conn = self._tx.conn
            if conn is not None:
                return conn.execute(_pg(sql), args).fetchall()
            with self._pool.connection() as pooled:
                return pooled.execute(_pg(sql), args).fetchall()

    def _lock_key(self, key_id: str) -> None:
        """Inside a transaction, hold the key's row until it ends."""
        conn = self._tx.conn
        if conn is not None:
            with self._errors("lock"):
                conn.execute("SELECT 1 FROM keys WHERE key_id = %s FOR UPDATE", (key_id,))

    # --- decisions that read before they write -------------------------------------

    def list_materials(self, key_id: str) -> list[KeyMaterialRecord]:
        """See :meth:`KeyStore.list_materials`; in a transaction, locks the key first."""
        self._lock_key(key_id)
        return super().list_materials(key_id)

    def key_grants(self, key_id: str) -> list[Grant]:
        """See :meth:`KeyStore.key_grants`; in a transaction, locks the key first."""
        self._lock_key(key_id)
        return super().key_grants(key_id)

    # --- change detection ---------------------------------------------------------

    def change_token(self) -> int:
        """See :meth:`KeyStore.change_token` (no database round trip)."""
        return self._token

    def _bump(self) -> None:
        with self._token_lock:
            self._token += 1

    def _listen(self) -> None:
        """Move the change token on other nodes' commits, until closed."""
        backoff = 0.05
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, **self._kwargs) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    seen = self._others(conn)
                    # Whatever happened while not listening is unknown: refill.
                    self._bump()
                    self.online = True
                    self._listener_ready.set()
                    backoff = 0.05
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=self._poll):
                            if self._closed.is_set():
                                return
                            if note.payload != self._node:
                                self._bump()
                        now = self._others(conn)
                        if now != seen:
                            self._bump()
                        seen = now
            except psycopg.Error:
                self.online = False
                self._listener_ready.set()
                self._closed.wait(backoff)
                backoff = min(backoff * 2, self._poll)

    def _others(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        row = conn.execute(_OTHERS_SQL, (self._node,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def close(self) -> None:
        """See :meth:`KeyStore.close`."""
        if self._closed.is_set():
            return
        self._closed.set()
        # Wakes the listener out of its wait (it ignores its own node's notes).
        with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
            with self._pool.connection(timeout=1.0) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._node))
        self._pool.close()
        self._listener.join(self._poll + self._timeout + 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
