"""The key service: one data dir's keys, served to the operation handlers.

:func:`open_service` is the composition root: it opens (or makes) a data dir,
its store, root key, authorizer and audit trail, and hands back the
:class:`KeyService` that the handlers in :mod:`kmscore.operations` act through.
Frontends call :func:`kmscore.operations.dispatch` with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kmscore.crypto.rootkey import RootKey
from kmscore.fsutil import ensure_private_dir
from kmscore.model.caller import Caller
from kmscore.model.key import utcnow
from kmscore.service.auditor import TrailAuditor
from kmscore.service.authorization import PolicyAuthorizer
from kmscore.service.call import Auditor, Authorizer, Call, NullAuditor, new_request_id
from kmscore.service.data_dir import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    default_data_dir,
    first_open_lock,
    open_root_key,
    open_settings,
    open_store,
)
from kmscore.service.data_format import read_format, record_format
from kmscore.service.key_service import CACHE_RECHECK_SECONDS, KeyService
from kmscore.service.principals import init_admin
from kmscore.service.versions import DEFAULT_BLOCK, DEFAULT_LIMIT
from kmscore.store import KeyStore

__all__ = [
    "CACHE_RECHECK_SECONDS",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "Auditor",
    "Authorizer",
    "Call",
    "Caller",
    "KeyService",
    "default_data_dir",
    "new_request_id",
    "open_service",
]


def open_service(
    data_dir: Path | str | None = None,
    *,
    region: str | None = None,
    account: str | None = None,
    passphrase: bytes | str | None = None,
    store: KeyStore | str | None = None,
    clock: Callable[[], datetime] = utcnow,
    authorizer: Authorizer | None = None,
    auditor: Auditor | None = None,
    audit: bool = True,
    audit_witness: str | None = None,
    audit_export: str | None = None,
    invocation_block: int = DEFAULT_BLOCK,
    invocation_limit: int = DEFAULT_LIMIT,
    argon2_interactive: bool = False,
    root_key: RootKey | None = None,
    admin: bool = True,
    root: str | None = None,
) -> KeyService:
    """Open a data dir, initializing it if it is new.

    Args:
        data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
        region: Region of a new data dir (ignored, but checked, later).
        account: Account id of a new data dir (likewise).
        passphrase: Derive the root key from this passphrase (Argon2id)
            instead of a root key file. Needed at every open of such a dir.
        store: A store to use instead of the data dir's own, or a
            ``postgresql://`` URL to keep the keys in (saved in the data dir:
            later opens use it too). Default: the saved URL, else SQLite in
            the data dir.
        clock: Source of the current time (tests move it).
        authorizer: Decides each call; key policies, identity policies and
            grants (:class:`~kmscore.service.authorization.PolicyAuthorizer`)
            by default.
        auditor: Records each call; by default the data dir's audit trail
            (:class:`~kmscore.service.auditor.TrailAuditor`).
        audit: False to record nothing (for benchmarks and tools that must
            not touch the trail).
        audit_witness: Have checkpoints signed by the witness on this socket
            from now on (kept in ``<data_dir>/audit.json``); default
            ``$KMS_AUDIT_WITNESS``, then the saved choice.
        audit_export: Copy checkpoints to this sink (``file:<path>``,
            ``syslog``) from now on (kept likewise); default
            ``$KMS_AUDIT_EXPORT``, then the saved choice.
        invocation_block: AES-GCM invocations reserved per store write.
        invocation_limit: Invocations per key version before rotation.
        argon2_interactive: Cheaper Argon2id cost for a new passphrase dir.
        root_key: The root key of the deployment this data dir is a region
            of (:mod:`kmscore.service.regions`): its material is wrapped
            under that key, checked against the dir's check value.
        admin: False to make no admin user in a new data dir (a region of an
            account whose users live in another).
        root: For a new data dir, keep the root key inside the PKCS#11 token
            this ``pkcs11:`` URI names; ``passphrase`` is then its PIN.

    Returns:
        The service; close it with :meth:`KeyService.close`.

    Raises:
        RootKeyError: the root key is missing or does not match.
        ValueError: a region or account that is not well formed, or one that
            differs from the data dir's; or a data dir of a newer format
            (:mod:`kmscore.service.data_format`).
    """
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    ensure_private_dir(path)  # holds the root key, audit trail and credentials
    found_format = read_format(path)  # a newer format than this release reads stops here
    key_store = open_store(path, store) if store is None or isinstance(store, str) else store
    served_region, served_account = open_settings(key_store, region, account)
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    if root_key is None:
        root_key = open_root_key(
            key_store, path, secret, interactive=argon2_interactive, root_uri=root
        )
    else:
        key_store.init_settings(
            {"root_key_mode": b"deployment", "root_key_check": root_key.check_value()}
        )
        root_key.verify_check_value(key_store.get_setting("root_key_check") or b"")
    if auditor is None:
        auditor = (
            TrailAuditor(
                path,
                witness=audit_witness or os.environ.get("KMS_AUDIT_WITNESS") or None,
                export=audit_export or os.environ.get("KMS_AUDIT_EXPORT") or None,
            )
            if audit
            else NullAuditor()
        )
    service = KeyService(
        path,
        store=key_store,
        root_key=root_key,
        region=served_region,
        account=served_account,
        authorizer=authorizer or PolicyAuthorizer(),
        auditor=auditor,
        clock=clock,
        invocation_block=invocation_block,
        invocation_limit=invocation_limit,
    )
    if key_store.get_setting("initialized") is None:
        # A new data dir (or one whose init was cut short): the admin user for
        # whoever runs this, with kms:* and a credentials file. One process at
        # a time, or two first opens both try to add the admin.
        with first_open_lock(path):
            if key_store.get_setting("initialized") is None:
                if admin:
                    init_admin(service.principals, path, os.getuid())
                key_store.init_settings({"initialized": b"1"})
    record_format(path, found_format)  # the store migrated itself when it opened
    return service
