"""What only the PostgreSQL store has: migrations, its URL, and its errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from service_helpers.postgres import PgCluster, dbname_of

from kmscore.errors import DependencyTimeoutException, KMSInternalException
from kmscore.service.data_dir import STORE_FILE, open_store, saved_store
from kmscore.store.postgres import PostgresKeyStore, describe_url, is_postgres_url
from kmscore.store.postgres_migrations import MIGRATIONS


def test_migrations_are_numbered_and_applied_once(pg_cluster: PgCluster, pg_url: str) -> None:
    assert [n for n, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    stores: list[PostgresKeyStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresKeyStore(pg_url))
        except BaseException as exc:  # handed to the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(stores) == 4
    assert all(s.schema_version() == MIGRATIONS[-1][0] for s in stores)
    rows = pg_cluster.psql("SELECT version FROM kms_schema ORDER BY 1", dbname_of(pg_url))
    assert rows.split() == [str(n) for n, _ in MIGRATIONS]
    for s in stores:
        s.close()


def test_a_store_newer_than_the_code_is_refused(pg_cluster: PgCluster, pg_url: str) -> None:
    PostgresKeyStore(pg_url).close()
    pg_cluster.psql("INSERT INTO kms_schema (version) VALUES (999)", dbname_of(pg_url))
    with pytest.raises(KMSInternalException, match="schema version 999, newer"):
        PostgresKeyStore(pg_url)


def test_an_unreachable_database_is_a_dependency_timeout(tmp_path: Path) -> None:
    url = f"postgresql://kms:s3cret-pw@/kms?host={tmp_path}&port=5999"
    start = time.monotonic()
    with pytest.raises(DependencyTimeoutException) as info:
        PostgresKeyStore(url, timeout=1.0)
    assert time.monotonic() - start < 10
    assert "s3cret-pw" not in info.value.message
    assert f"postgresql://{tmp_path}:5999/kms" in info.value.message


def test_the_data_dir_keeps_its_store_url(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "d"
    open_store(data, pg_url).close()
    assert (data / STORE_FILE).stat().st_mode & 0o777 == 0o600
    assert saved_store(data) == pg_url
    again = open_store(data)  # no URL: the saved one
    assert isinstance(again, PostgresKeyStore)
    again.close()
    with pytest.raises(ValueError, match="postgresql://"):
        open_store(tmp_path / "x", "sqlite:///tmp/x.db")
    assert not (tmp_path / "x" / STORE_FILE).exists()


@given(st.text(max_size=200))
def test_describe_url_never_fails_and_never_shows_a_password(text: str) -> None:
    from psycopg import ProgrammingError, conninfo

    url = f"postgresql://user:{text}@host/db"
    described = describe_url(url)
    assert described.startswith("postgresql://")
    assert is_postgres_url(url)
    try:
        params = conninfo.conninfo_to_dict(url)
    except ProgrammingError:
        assert described == "postgresql://(unparsable URL)"
    else:
        # The password as libpq reads it, unless it is also a host, port or name.
        password = str(params.get("password") or "")
        shown = ",:/".join(str(params.get(k) or "") for k in ("host", "port", "dbname"))
        if password and password not in shown and password not in "localhost":
            assert password not in described.removeprefix("postgresql://")
    describe_url(text)  # whatever it is given


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db1,db2:5433/kms?target_session_attrs=read-write", "db1,db2:5433"),
        ("postgresql:///kms?host=/run/pg", "/run/pg"),
    ],
)
def test_describe_url_names_hosts_and_database(url: str, expected: str) -> None:
    assert describe_url(url).startswith(f"postgresql://{expected}")
    assert ":p@" not in describe_url(url)


def test_a_database_error_is_an_internal_error_naming_it(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    name = dbname_of(url)
    role = f"nopriv_{name}"
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN")
    # PostgreSQL 15: only the database owner may create in its public schema.
    with pytest.raises(KMSInternalException) as info:
        PostgresKeyStore(url.replace("postgres@", f"{role}@"))
    assert "permission denied" in info.value.message
    assert info.value.message.startswith("The key store postgresql://")
