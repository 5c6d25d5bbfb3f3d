"""The in-process client: AWS KMS's operations with boto3's names and shapes.

``LocalKMS("data-dir").generate_data_key(KeyId="alias/app", KeySpec="AES_256")``
returns the same dict boto3's KMS client returns (``Plaintext``,
``CiphertextBlob``, ``KeyId``, ...), and failures raise
:mod:`kmscore.errors` classes whose ``code`` is the AWS error code. Code moves
between boto3, the socket daemon and this library by changing one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kmscore.client._methods import KMSMethods
from kmscore.operations import dispatch
from kmscore.service import Caller, KeyService, open_service
from kmscore.service.authorization import UNMAPPED
from kmscore.service.maintenance import run_maintenance

__all__ = ["LocalKMS"]

_USER_ARN = re.compile(r"^arn:aws:iam::(\d{12}):(root|user/[\w+=,.@/-]+)$")


class LocalKMS(KMSMethods):
    """A KMS served in this process from a data dir.

    Every AWS KMS operation the service implements is a method named as in
    boto3 (``create_key``, ``encrypt``, ``generate_data_key``, ...) taking the
    AWS request members as keyword arguments. The batch extensions are
    ``generate_data_keys`` and ``decrypt_many``.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        region: str | None = None,
        account: str | None = None,
        principal: str | None = None,
        passphrase: bytes | str | None = None,
        **service_options: Any,
    ) -> None:
        """Open a data dir, initializing it when new.

        Args:
            data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
            region: The Region of a new data dir (default us-east-1).
            account: The account id of a new data dir (default 111122223333).
            principal: Act as this principal ARN (a user of this data dir, or
                the account root) instead of the user mapped to this
                process's uid (the admin that ``init`` made, for its owner).
            passphrase: The root key passphrase, for a passphrase-protected dir
                (or to create one).
            **service_options: Passed to :class:`~kmscore.service.KeyService`.

        Raises:
            RootKeyError: the root key is missing or does not match.
            ValueError: a malformed region, account or principal ARN.
        """
        self._service = open_service(
            data_dir, region=region, account=account, passphrase=passphrase, **service_options
        )
        self._caller = self._make_caller(principal)
        from kmscore.service.regions import open_if_any

        open_if_any(self._service)  # other Regions and peers, for multi-Region keys
        run_maintenance(self._service)

    def _make_caller(self, principal: str | None) -> Caller:
        svc = self._service
        source, agent = f"local:{os.getpid()}", "kmscore-local"
        if principal is None:
            uid = os.getuid()
            user = svc.principals.by_uid(uid)
            if user is None:
                return Caller(
                    arn=f"unix-uid:{uid}", account="", principal_id=str(uid),
                    kind=UNMAPPED, source=source, user_agent=agent,
                )  # fmt: skip
            return svc.principals.caller(user, source=source, user_agent=agent)
        m = _USER_ARN.match(principal)
        if m is None:
            svc.close()
            raise ValueError(f"{principal!r} is not an IAM principal ARN")
        if m[2] == "root":
            return Caller(
                arn=principal, account=m[1], principal_id=m[1], kind="Root",
                source=source, user_agent=agent,
            )  # fmt: skip
        user = svc.principals.by_arn(principal)
        principal_id = user.principal_id if user is not None else m[2].split("/")[-1]
        return Caller(
            arn=principal, account=m[1], principal_id=principal_id, kind="IAMUser",
            source=source, user_agent=agent,
        )  # fmt: skip

    @property
    def caller(self) -> Caller:
        """Who this client acts as."""
        return self._caller

    @property
    def service(self) -> KeyService:
        """The underlying key service."""
        return self._service

    def in_region(self, region: str) -> LocalKMS:
        """A client of another Region of this deployment, acting as the same caller.

        The Region is added to the data dir on first use (``kms region add``;
        docs/regions.md). The returned client shares this one's data dir:
        closing it closes nothing; closing this one closes every Region.

        Raises:
            ValueError: not a Region's name.
        """
        from kmscore.service.regions import open_deployment

        deployment = open_deployment(self._service)
        account = self._service.account
        found = deployment.service(account, region) or deployment.add_region(region, account)
        view = object.__new__(LocalKMS)
        view._service, view._caller, view._owner = found, self._caller, self
        return view

    #: The client whose data dir a view of another Region shares (in_region).
    _owner: LocalKMS | None = None

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """Run any operation by its AWS name.

        Raises:
            KMSError: the AWS error the operation answers with.
        """
        return dispatch(self._service, operation, request, self._caller)

    def _invoke(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        return dispatch(self._service, operation, request, self._caller)

    def run_maintenance(self) -> None:
        """Delete keys past their window and rotate keys that are due, now."""
        run_maintenance(self._service)

    def close(self) -> None:
        """Release the data dir and forget all key material (every Region's)."""
        if self._owner is not None:
            return  # a view of another Region (in_region): its owner closes
        deployment = self._service.deployment
        if deployment is not None:
            deployment.close()
        self._service.close()

    def __enter__(self) -> LocalKMS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
