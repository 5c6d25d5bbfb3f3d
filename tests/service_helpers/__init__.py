"""Shared helpers of the key service tests (tests/test_service_*.py).

Not a conftest: the test modules import what they need, so these helpers stay
out of the rest of the suite. ``tests/`` is on ``sys.path`` when pytest runs
(rootdir conftest, no package), so ``import service_helpers`` works there and
in the subprocesses the process tests start (they put ``tests/`` on the path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kmscore.client import LocalKMS
from kmscore.errors import KMSError

TESTS_DIR = Path(__file__).resolve().parent.parent
REGION = "eu-west-3"
ACCOUNT = "444455556666"
OTHER_REGION = "us-west-2"
OTHER_ACCOUNT = "777788889999"


class Clock:
    """An injectable clock that tests move by hand (aware UTC datetimes)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def open_kms(data_dir: Path, clock: Clock | None = None, **options: Any) -> LocalKMS:
    """A LocalKMS on ``data_dir`` in this suite's Region and account."""
    options.setdefault("region", REGION)
    options.setdefault("account", ACCOUNT)
    if clock is not None:
        options["clock"] = clock
    return LocalKMS(data_dir, **options)


def new_key(kms: LocalKMS, **request: Any) -> str:
    """Create a symmetric key and return its id."""
    return str(kms.create_key(**request)["KeyMetadata"]["KeyId"])


def inject_key(kms: LocalKMS, like: str, **changes: Any) -> str:
    """Put a copy of key ``like`` with some fields changed straight into the store.

    For keys the operations cannot make (yet), such as an HMAC key record, to
    check that other operations refuse them. The copy has ``like``'s material.
    """
    svc = kms.service
    record = svc.store.get_key(like)
    material = svc.store.get_material(like, 1)
    assert record is not None and material is not None
    key_id = str(uuid.uuid4())
    svc.store.create_key(
        record.replace(key_id=key_id, arn=svc.key_arn(key_id), **changes),
        dataclasses.replace(material, key_id=key_id),
        {},
    )
    return key_id


def key_arn(key_id: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def alias_arn(name: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:kms:{region}:{account}:{name}"


def expect(code: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> KMSError:
    """Call ``fn`` and require it to raise the KMSError with AWS code ``code``.

    ``pytest.raises(KMSError)`` plus a code check, so a wrong error class shows
    its code and message in the failure instead of passing by inheritance.
    """
    with pytest.raises(KMSError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.code == code, f"expected {code}, got {err.code}: {err.message}"
    return err


def all_pages(
    fn: Callable[..., dict[str, Any]], items: str, limit: int, **request: Any
) -> tuple[list[Any], int]:
    """Walk a paged List* operation; return every item and the page count.

    Checks the paging contract on the way: each page holds at most ``limit``
    items, ``Truncated`` is True exactly when ``NextMarker`` is given, and the
    last page is not truncated.
    """
    out: list[Any] = []
    pages = 0
    marker: str | None = None
    while True:
        req = dict(request, Limit=limit)
        if marker is not None:
            req["Marker"] = marker
        page = fn(**req)
        pages += 1
        assert len(page[items]) <= limit
        assert isinstance(page["Truncated"], bool)
        assert page["Truncated"] == ("NextMarker" in page)
        out.extend(page[items])
        if not page["Truncated"]:
            return out, pages
        assert page[items], "a truncated page must hold items"
        marker = page["NextMarker"]
        assert pages < 10_000


def db_rows(data_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read straight from the SQLite file, on a connection of our own."""
    db = sqlite3.connect(f"file:{data_dir / 'kms.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def raw_files(data_dir: Path) -> dict[str, bytes]:
    """The raw bytes of the database and its side files, where they exist."""
    out = {}
    for name in ("kms.db", "kms.db-wal", "kms.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            out[name] = (data_dir / name).read_bytes()
    return out


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def subprocess_env() -> dict[str, str]:
    """The environment of a child Python: tests/ on its path for service_helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env
