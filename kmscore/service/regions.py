"""Regions and accounts as namespaces of one deployment.

A deployment is its home data dir, which serves the Region and account it was
made with, and any number of further (account, Region) namespaces, each an
ordinary data dir of its own below ``<home>/regions/<account>/<region>/``: its
own store (so its own keys, aliases, grants and ARNs), material wrapped under
the home's root key, and calls recorded in the home's audit trail. A key ARN of
one namespace is not found in another, as AWS answers.

Users (IAM) belong to an account, not a Region: every Region of an account
shares the principals of the account's first namespace (the home for the home
account; ``regions/<account>/<home region>`` for an account added with
:meth:`Deployment.add_account`). A user of one account reaches another's keys
only as AWS allows it: the key policy names the user or its account, and the
user's identity policy allows the action (:mod:`kmscore.policy`).

With a PostgreSQL home store, each namespace is a schema of the same database
(``kms_<account>_<region>``), so every node of a fleet sees every Region.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from kmscore.errors import AlreadyExistsException, KMSError, NotFoundException
from kmscore.fsutil import ensure_private_dir
from kmscore.model.arn import parse_key_ref
from kmscore.service.call import Call
from kmscore.service.data_dir import saved_store

if TYPE_CHECKING:
    from kmscore.model.principal import Principal
    from kmscore.service.key_service import KeyService
    from kmscore.service.principals import Principals

__all__ = [
    "REGIONS_DIR",
    "Deployment",
    "is_valid_account",
    "is_valid_region",
    "open_deployment",
    "open_if_any",
]

#: Where a home data dir keeps its further namespaces.
REGIONS_DIR: Final = "regions"
_REGION_RE: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT_RE: Final = re.compile(r"^\d{12}$")
#: Request members that may name a key by ARN (and so its account).
#: A namespace's dir holds one of these once it is made.
_STORE_FILES: Final = ("kms.db", "store.url")
_KEY_MEMBERS: Final = ("KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId")


def is_valid_region(name: str) -> bool:
    """Whether ``name`` is shaped like an AWS Region name (``us-west-2``)."""
    return bool(_REGION_RE.match(name))


def is_valid_account(account: str) -> bool:
    """Whether ``account`` is a 12-digit account id."""
    return bool(_ACCOUNT_RE.match(account))


class _SharedAuditor:
    """The home's auditor, lent to a namespace: records, but never closes it."""

    def __init__(self, home: KeyService) -> None:
        self._home = home

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        self._home.auditor.record(call, request, response, error)


class Deployment:
    """Every (account, Region) namespace of one home data dir."""

    def __init__(self, home: KeyService, *, any_region: bool = False) -> None:
        """Open every namespace the home data dir holds.

        Args:
            home: The home data dir's service (the deployment does not close it).
            any_region: Make a namespace on first use of any well-formed
                Region (and account), as moto and LocalStack answer every
                Region; for development and CI (``kms serve --any-region``).
        """
        self.home = home
        self.any_region = any_region
        self._lock = threading.RLock()
        self._services: dict[tuple[str, str], KeyService] = {(home.account, home.region): home}
        #: Its :class:`~kmscore.service.peering.Peering`, once used.
        self.peering: Any = None
        home.deployment = self
        self._wire_principals(home)
        root = home.data_dir / REGIONS_DIR
        if root.is_dir():
            # The account's first namespace (its users' home) opens first.
            found = sorted(
                (a.name, r.name)
                for a in root.iterdir()
                if a.is_dir() and is_valid_account(a.name)
                for r in a.iterdir()
                if r.is_dir() and is_valid_region(r.name)
            )
        else:
            found = []
        # A fleet's nodes share one database: its schemas name every namespace.
        found = sorted(set(found) | set(self._schemas()))
        found.sort(key=lambda ar: (ar[0], ar[1] != home.region))
        for account, region in found:
            if (account, region) not in self._services:
                self._open(account, region)

    # --- namespaces ----------------------------------------------------------------

    def _path(self, account: str, region: str) -> Path:
        return self.home.data_dir / REGIONS_DIR / account / region

    def _schemas(self) -> list[tuple[str, str]]:
        """The (account, Region) namespaces a PostgreSQL home's database holds."""
        url = saved_store(self.home.data_dir)
        if url is None:
            return []
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schema_name FROM information_schema.schemata "
                "WHERE schema_name LIKE 'kms\\_%'"
            ).fetchall()
        out = []
        for (name,) in rows:
            parts = str(name).split("_", 2)
            if len(parts) == 3 and is_valid_account(parts[1]):
                region = parts[2].replace("_", "-")
                if is_valid_region(region):
                    out.append((parts[1], region))
        return out

    def _store_url(self, account: str, region: str) -> str | None:
        url = saved_store(self.home.data_dir)
        if url is None:
            return None
        schema = f"kms_{account}_{region.replace('-', '_')}"
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        options = quote(f"-csearch_path={schema}", safe="")
        return f"{url}{'&' if '?' in url else '?'}options={options}"

    def _open(self, account: str, region: str) -> KeyService:
        from kmscore.service import open_service

        path = self._path(account, region)
        for directory in (path.parent.parent, path.parent, path):
            ensure_private_dir(directory)
        owner = self._account_home(account)
        service = open_service(
            path,
            region=region,
            account=account,
            store=self._store_url(account, region),
            root_key=self.home.root_key,
            auditor=_SharedAuditor(self.home),
            clock=self.home.clock,
            admin=owner is None,
        )
        service.deployment = self
        if owner is not None:
            service.principals = owner.principals
        self._services[(account, region)] = service
        if owner is None:
            self._wire_principals(service)
        return service

    def _account_home(self, account: str) -> KeyService | None:
        """The namespace whose principals are the account's users, if it has one yet."""
        if account == self.home.account:
            return self.home
        return self._services.get((account, self.home.region))

    def _wire_principals(self, owner: KeyService) -> None:
        # A user change drops the access decisions of every Region of the account.
        account = owner.account
        principals = owner.principals

        def changed() -> None:
            principals.forget()
            for (a, _), svc in list(self._services.items()):
                if a == account:
                    svc.access_epoch += 1

        owner.principals.on_change = changed

    def add_region(self, region: str, account: str | None = None) -> KeyService:
        """Add a Region to an account of this deployment (``kms region add``).

        Raises:
            ValueError: the name is not a Region's.
            NotFoundException: the account is not one of this deployment.
            AlreadyExistsException: the account has this Region already.
        """
        account = account or self.home.account
        if not is_valid_region(region):
            raise ValueError(f"{region!r} is not a valid Region name (like us-west-2)")
        with self._lock:
            if (account, region) in self._services:
                raise AlreadyExistsException(f"Region {region} exists in account {account}.")
            if self._account_home(account) is None:
                raise NotFoundException(
                    f"Account {account} is not in this deployment; add it with kms account add."
                )
            return self._open(account, region)

    def add_account(self, account: str) -> KeyService:
        """Add an account, with the home's Region (``kms account add``).

        Its first namespace holds its users; a new one gets an admin user
        for whoever runs this, with credentials in that namespace's dir.

        Raises:
            ValueError: not a 12-digit account id.
            AlreadyExistsException: the account exists.
        """
        if not is_valid_account(account):
            raise ValueError(f"{account!r} is not a valid account id (12 digits)")
        with self._lock:
            if self._account_home(account) is not None:
                raise AlreadyExistsException(f"Account {account} exists.")
            return self._open(account, self.home.region)

    def service(self, account: str, region: str) -> KeyService | None:
        """The namespace of ``account`` in ``region``; made now with ``any_region``.

        Returns:
            The service, or None when there is none (and ``any_region`` is off
            or the names are not well formed).
        """
        found = self._services.get((account, region))
        if found is not None:
            return found
        if not is_valid_region(region) or not is_valid_account(account):
            return None
        if not self.any_region:
            # Added meanwhile by another process (kms region add)?
            if not any((self._path(account, region) / name).exists() for name in _STORE_FILES):
                return None
            with self._lock:
                found = self._services.get((account, region))
                if found is None and (
                    account == self.home.account or self._account_home(account) is not None
                ):
                    found = self._open(account, region)
                return found
        with self._lock:
            found = self._services.get((account, region))
            if found is not None:
                return found
            if self._account_home(account) is None:
                self._open(account, self.home.region)
                found = self._services.get((account, region))
                if found is not None:
                    return found
            return self._open(account, region)

    def has_region(self, region: str, account: str | None = None) -> bool:
        """Whether ``account`` (the home's by default) has ``region``, or could with any_region."""
        account = account or self.home.account
        return (account, region) in self._services or (self.any_region and is_valid_region(region))

    def regions(self, account: str | None = None) -> list[str]:
        """The Regions of an account (the home's by default), sorted."""
        account = account or self.home.account
        return sorted(r for a, r in self._services if a == account)

    def accounts(self) -> list[str]:
        """The accounts of this deployment, sorted."""
        return sorted({a for a, _ in self._services})

    def services(self) -> Iterator[KeyService]:
        """Every namespace, the home first."""
        yield self.home
        for svc in list(self._services.values()):
            if svc is not self.home:
                yield svc

    # --- users -----------------------------------------------------------------------

    def principals_of(self, account: str) -> Principals | None:
        """The users of ``account``, or None for an account not in this deployment."""
        owner = self._account_home(account)
        return owner.principals if owner is not None else None

    def by_access_key(self, access_key_id: str) -> tuple[Principal, bytes] | None:
        """The user owning an access key, in whichever account, and its secret."""
        # The home account's users first: every request looks its caller up here.
        found = self.home.principals.by_access_key(access_key_id)
        if found is not None or len(self._services) <= 1:
            return found
        for account in self.accounts():
            if account == self.home.account:
                continue
            principals = self.principals_of(account)
            if principals is not None:
                found = principals.by_access_key(access_key_id)
                if found is not None:
                    return found
        return None

    # --- routing ---------------------------------------------------------------------

    def route(self, account: str, region: str, request: Mapping[str, Any]) -> KeyService:
        """The namespace a request is served in.

        The credential scope's Region and the caller's account; a key ARN of
        another account in the same Region routes to that account (which then
        decides by its key policy). A key ARN of another Region is left to
        the namespace, which answers NotFoundException as AWS does.

        Raises:
            InvalidSignatureException: no namespace serves the Region.
        """
        for member in _KEY_MEMBERS:
            ref = request.get(member)
            if ref is not None:
                if type(ref) is str and ref[:4] == "arn:":
                    other = self._other_account(ref, account, region)
                    if other is not None:
                        return other
                break
        found = self._services.get((account, region)) or self.service(account, region)
        if found is None:
            from kmscore.errors import InvalidSignatureException

            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region, not '{region}'."
            )
        return found

    def _other_account(self, ref: str, account: str, region: str) -> KeyService | None:
        try:
            parsed = parse_key_ref(ref)
        except KMSError:
            return None
        if parsed.account is None or parsed.account == account:
            return None
        return self.service(parsed.account, region)

    def scope_accepts(self, region: str) -> bool:
        """Whether a credential scope may name ``region`` (any account has it)."""
        if any(r == region for _, r in self._services):
            return True
        if not is_valid_region(region):
            return False
        return self.any_region or any(
            (self.home.data_dir / REGIONS_DIR / a / region / name).exists()
            for a in self.accounts()
            for name in _STORE_FILES
        )

    def close(self) -> None:
        """Close every namespace but the home (its owner closes it)."""
        with self._lock:
            for key, svc in list(self._services.items()):
                if svc is not self.home:
                    svc.close()
                    del self._services[key]


def open_if_any(home: KeyService) -> Deployment | None:
    """Open the deployment of a data dir that has other Regions, accounts or peers.

    A data dir without them (SQLite, no ``regions/``, no peers) stays a single
    Region; a PostgreSQL one is opened (its database may hold Regions).
    Frontends call this when they open a data dir.
    """
    from kmscore.service.peering import PEERS_FILE

    path = home.data_dir
    if (
        (path / REGIONS_DIR).is_dir()
        or (path / PEERS_FILE).exists()
        or saved_store(path) is not None
    ):
        return open_deployment(home)
    return None


def open_deployment(home: KeyService, *, any_region: bool = False) -> Deployment:
    """The deployment of an opened home data dir (see :class:`Deployment`)."""
    existing = getattr(home, "deployment", None)
    if isinstance(existing, Deployment):
        existing.any_region = existing.any_region or any_region
        return existing
    return Deployment(home, any_region=any_region)
