"""A data dir: where it is, what it serves, and its root key.

A data dir holds one deployment: its store (SQLite by default), its root key
file (or the Argon2id parameters of its passphrase), its credentials and its
audit trail. Its region and account are fixed when it is made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from kmscore.crypto.rootkey import ROOT_KEY_FILE, Argon2Params, RootKey, RootKeyError
from kmscore.fsutil import (
    default_data_dir,
    ensure_private_dir,
    open_private_file,
    replace_private_file,
)
from kmscore.store import KeyStore
from kmscore.store.sqlite import SQLiteKeyStore

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "STORE_FILE",
    "default_data_dir",
    "first_open_lock",
    "open_root_key",
    "open_settings",
    "open_store",
    "saved_store",
]

#: The data dir's choice of store: a PostgreSQL URL, kept 0600 (it may hold a
#: password). Absent: SQLite in the data dir.
STORE_FILE: Final = "store.url"

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT: Final = "111122223333"
_REGION_RE: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT_RE: Final = re.compile(r"^\d{12}$")


@contextlib.contextmanager
def first_open_lock(data_dir: Path) -> Iterator[None]:
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


def saved_store(data_dir: Path) -> str | None:
    """The store URL a data dir was given (``kms init --store``), or None for SQLite."""
    try:
        fd = open_private_file(data_dir / STORE_FILE)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read().decode().strip() or None


def open_store(data_dir: Path, url: str | None = None) -> KeyStore:
    """The data dir's store: PostgreSQL when given (or saved) a URL, else SQLite.

    Args:
        data_dir: The data dir.
        url: A ``postgresql://`` URL to use, saved in the data dir for every
            later open (the CLI, the daemon and its workers); None for the
            saved choice.

    Raises:
        ValueError: ``url`` is not a PostgreSQL URL.
        DependencyTimeoutException: PostgreSQL did not answer.
        KMSInternalException: the store cannot be opened.
    """
    if url is not None:
        from kmscore.store.postgres import is_postgres_url

        if not is_postgres_url(url):
            raise ValueError(f"--store takes a postgresql:// URL, not {url.split(':', 1)[0]!r}")
        ensure_private_dir(data_dir)
        if saved_store(data_dir) != url:
            replace_private_file(data_dir / STORE_FILE, url.encode() + b"\n")
    else:
        url = saved_store(data_dir)
    if url is None:
        return SQLiteKeyStore(data_dir)
    from kmscore.store.postgres import PostgresKeyStore

    return PostgresKeyStore(url)


def open_settings(store: KeyStore, region: str | None, account: str | None) -> tuple[str, str]:
    """The region and account a data dir serves, recorded at its first open.

    Args:
        store: The data dir's store.
        region: The region asked for, or None for whatever the dir serves
            (us-east-1 for a new one).
        account: Likewise for the account (111122223333).

    Returns:
        The stored region and account.

    Raises:
        ValueError: a region or account that is not well formed, or one that
            differs from the data dir's.
    """
    for value, pattern, what in (
        (region, _REGION_RE, "region"),
        (account, _ACCOUNT_RE, "account"),
    ):
        if value is not None and not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
    store.init_settings(
        {
            "region": (region or DEFAULT_REGION).encode(),
            "account": (account or DEFAULT_ACCOUNT).encode(),
        }
    )
    stored_region = (store.get_setting("region") or b"").decode()
    stored_account = (store.get_setting("account") or b"").decode()
    if region is not None and region != stored_region:
        raise ValueError(f"this data dir serves region {stored_region}, not {region}")
    if account is not None and account != stored_account:
        raise ValueError(f"this data dir serves account {stored_account}, not {account}")
    return stored_region, stored_account


def _init_root_key(
    store: KeyStore,
    data_dir: Path,
    passphrase: bytes | None,
    interactive: bool,
    root_uri: str | None = None,
) -> None:
    # A new data dir: make the root key, then record how to find it.
    if root_uri is not None:
        from kmscore.crypto.pkcs11_root import Pkcs11RootKey, parse_pkcs11_uri

        if passphrase is None:
            raise RootKeyError("A root key in a PKCS#11 token needs the token's PIN.")
        uri = parse_pkcs11_uri(root_uri)
        hsm_root = Pkcs11RootKey(uri, passphrase, create=True)
        try:
            store.init_settings(
                {
                    "root_key_mode": b"pkcs11",
                    "root_pkcs11_uri": str(uri).encode(),
                    "root_key_check": hsm_root.check_value(),
                }
            )
        finally:
            hsm_root.close()
        return
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
        path = data_dir / ROOT_KEY_FILE
        root = RootKey.load_file(path) if path.exists() else RootKey.create_file(path)
        settings = {"root_key_mode": b"file"}
    settings["root_key_check"] = root.check_value()
    store.init_settings(settings)


def open_root_key(
    store: KeyStore,
    data_dir: Path,
    passphrase: bytes | None,
    *,
    interactive: bool = False,
    root_uri: str | None = None,
) -> RootKey:
    """Load a data dir's root key, making it at the first open.

    Args:
        store: The data dir's store (it keeps the key's mode and check value).
        data_dir: The data dir (the root key file lives there).
        passphrase: The passphrase of a passphrase-protected dir, or of a new
            dir that is to be one.
        interactive: Cheaper Argon2id cost for a new passphrase dir.
        root_uri: For a new dir, keep the root key in the PKCS#11 token this
            ``pkcs11:`` URI names (``passphrase`` is then the token's PIN).

    Raises:
        RootKeyError: the root key is missing or does not match, or a
            passphrase is given to a key-file dir (or missing for a
            passphrase dir).
    """
    mode = store.get_setting("root_key_mode")
    if mode is None:
        # Processes opening a new data dir at the same moment take turns,
        # so one makes the root key file and the others load it whole.
        with first_open_lock(data_dir):
            if store.get_setting("root_key_mode") is None:
                _init_root_key(store, data_dir, passphrase, interactive, root_uri)
        mode = store.get_setting("root_key_mode")
    elif root_uri is not None:
        raise RootKeyError(f"The data dir {data_dir} has its root key already; --root is for init.")
    if mode == b"pkcs11":
        from kmscore.crypto.pkcs11_root import Pkcs11RootKey, parse_pkcs11_uri

        if passphrase is None:
            raise RootKeyError(
                f"The root key of {data_dir} is in a PKCS#11 token; give its PIN as the passphrase."
            )
        root_key: RootKey = Pkcs11RootKey(
            parse_pkcs11_uri((store.get_setting("root_pkcs11_uri") or b"").decode()), passphrase
        )
        check = store.get_setting("root_key_check")
        if check is None:
            raise RootKeyError("The data dir has no root key check value; it is damaged.")
        root_key.verify_check_value(check)
        return root_key
    if mode == b"passphrase":
        if passphrase is None:
            raise RootKeyError(f"The data dir {data_dir} is protected by a passphrase; give it.")
        params = Argon2Params(
            salt=store.get_setting("argon2_salt") or b"",
            opslimit=int(store.get_setting("argon2_ops") or b"0"),
            memlimit=int(store.get_setting("argon2_mem") or b"0"),
        )
        root = RootKey.from_passphrase(passphrase, params)
    else:
        if passphrase is not None:
            raise RootKeyError(f"The data dir {data_dir} uses a root key file, not a passphrase.")
        root = RootKey.load_file(data_dir / ROOT_KEY_FILE)
    check = store.get_setting("root_key_check")
    if check is None:
        raise RootKeyError("The data dir has no root key check value; it is damaged.")
    where = getattr(store, "where", None)
    if where is None:
        root.verify_check_value(check)
        return root
    try:
        root.verify_check_value(check)
    except RootKeyError:
        given = (
            "passphrase" if mode == b"passphrase" else f"root key file {data_dir / ROOT_KEY_FILE}"
        )
        raise RootKeyError(
            f"Root key mismatch: the {given} is not the root key of the fleet's key store "
            f"{where} (its check value was made by another key). Give every node the same "
            "root key file or passphrase."
        ) from None
    return root
