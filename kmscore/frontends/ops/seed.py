"""``kms seed FILE.yaml``: keys, aliases, policies, grants and tags from one file.

The file (YAML)::

    keys:
      - id: 11111111-2222-3333-4444-555555555555   # fixed: tests name it
        description: invoices
        material: <base64 of 32 bytes>   # optional, SYMMETRIC_DEFAULT only: for tests
        key_spec: SYMMETRIC_DEFAULT      # optional; other specs get fresh material
        key_usage: ENCRYPT_DECRYPT       # optional
        enabled: true                    # optional
        rotation: true                   # optional: automatic rotation (365 days)
        policy: {...}                    # optional: a key policy (mapping or JSON text)
        tags: {team: billing}            # optional
    aliases:
      - {name: alias/invoices, key: 11111111-2222-3333-4444-555555555555}
    grants:
      - key: 11111111-2222-3333-4444-555555555555
        name: app-decrypt                # required: a grant is found again by its name
        grantee: arn:aws:iam::111122223333:user/app
        operations: [Decrypt]
        retiring: arn:aws:iam::111122223333:user/ops   # optional

Loading is idempotent: what the store has already is left alone (a key with
the file's id is not made again; an alias, tag, policy or grant that is
there already is not changed), what differs is set, what is missing is made.

Every entry is checked before anything is written, and the whole load runs in
one store transaction, so a bad file changes nothing; :class:`SeedError`
names the entry (``keys[2] (id ...): ...``). The changes go through the
service's own operations as the data dir's admin (so they are authorized and
audited) except making a key with a fixed id and material, which no KMS
operation does: that is recorded in the audit trail as ``CreateKey`` with the
key's metadata and never its material.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from kmscore.errors import KMSError
from kmscore.model.arn import parse_key_ref, validate_alias_name
from kmscore.model.key import KeyRecord
from kmscore.model.keyspecs import algorithms_for
from kmscore.model.keystate import KeyState
from kmscore.operations import dispatch
from kmscore.policy import PolicyKind, parse_policy
from kmscore.service import Call, Caller, KeyService, new_request_id
from kmscore.service.rotation import new_material

__all__ = ["SeedError", "SeedPlan", "apply_seed", "load_seed"]

_MATERIAL_BYTES: Final = 32
_KEY_FIELDS: Final = frozenset(
    {"id", "description", "material", "key_spec", "key_usage", "enabled", "rotation",
     "policy", "tags", "aliases"}
)  # fmt: skip
_ALIAS_FIELDS: Final = frozenset({"name", "key"})
_GRANT_FIELDS: Final = frozenset({"key", "name", "grantee", "operations", "retiring"})
_TOP: Final = frozenset({"keys", "aliases", "grants"})
_USER_AGENT: Final = "kms-seed"


class SeedError(ValueError):
    """A seed file that cannot be loaded; the message names the wrong entry."""


@dataclass(slots=True)
class SeedKey:
    """One key entry, checked."""

    where: str
    key_id: str
    description: str = ""
    material: bytes | None = None
    key_spec: str = "SYMMETRIC_DEFAULT"
    key_usage: str = "ENCRYPT_DECRYPT"
    enabled: bool = True
    rotation: bool = False
    policy: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class SeedPlan:
    """A whole seed file, checked: what :func:`apply_seed` makes true."""

    keys: list[SeedKey] = field(default_factory=list)
    #: (where, alias name, key id)
    aliases: list[tuple[str, str, str]] = field(default_factory=list)
    #: (where, the CreateGrant request)
    grants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _fail(where: str, reason: str) -> SeedError:
    return SeedError(f"{where}: {reason}")


def _mapping(value: Any, where: str, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "is not a mapping")
    unknown = sorted(str(k) for k in value if k not in fields)
    if unknown:
        raise _fail(
            where, f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(fields))}"
        )
    return value


def _string(
    entry: Mapping[str, Any], name: str, where: str, *, required: bool = False
) -> str | None:
    value = entry.get(name)
    if value is None:
        if required:
            raise _fail(where, f"{name} is missing")
        return None
    if not isinstance(value, str) or not value:
        raise _fail(where, f"{name} must be a non-empty string")
    return value


def _key_id(value: str, where: str) -> str:
    try:
        ref = parse_key_ref(value)
    except KMSError:
        ref = None
    if ref is None or ref.key_id is None or ref.key_id != value:
        raise _fail(where, f"{value!r} is not a key id (a UUID, or mrk- and 32 hex digits)")
    return value


def _policy(value: Any, where: str) -> str:
    text = json.dumps(value) if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise _fail(where, "policy must be a mapping or JSON text")
    try:
        parse_policy(text, kind=PolicyKind.KEY)
    except KMSError as exc:
        raise _fail(where, f"policy: {exc.message}") from None
    return text


def _check_key(raw: Any, where: str) -> SeedKey:
    entry = _mapping(raw, where, _KEY_FIELDS)
    key_id = _key_id(_string(entry, "id", where, required=True) or "", where)
    where = f"{where} (id {key_id})"
    key = SeedKey(where, key_id, description=_string(entry, "description", where) or "")
    key.key_spec = _string(entry, "key_spec", where) or key.key_spec
    key.key_usage = _string(entry, "key_usage", where) or key.key_usage
    try:
        algorithms_for(key.key_spec, key.key_usage)
    except (KMSError, KeyError, ValueError) as exc:
        reason = exc.message if isinstance(exc, KMSError) else str(exc)
        raise _fail(where, f"key_spec/key_usage: {reason}") from None
    material = entry.get("material")
    if material is not None:
        if key.key_spec != "SYMMETRIC_DEFAULT":
            raise _fail(where, "material is for SYMMETRIC_DEFAULT keys only")
        try:
            key.material = base64.b64decode(str(material), validate=True)
        except (binascii.Error, ValueError):
            raise _fail(where, "material is not base64") from None
        if len(key.material) != _MATERIAL_BYTES:
            raise _fail(where, f"material must be {_MATERIAL_BYTES} bytes, not {len(key.material)}")
    for flag in ("enabled", "rotation"):
        if flag in entry:
            if not isinstance(entry[flag], bool):
                raise _fail(where, f"{flag} must be true or false")
            setattr(key, flag, entry[flag])
    if key.rotation and key.key_spec != "SYMMETRIC_DEFAULT":
        raise _fail(where, "rotation is for SYMMETRIC_DEFAULT keys only")
    if "policy" in entry:
        key.policy = _policy(entry["policy"], where)
    tags = entry.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise _fail(where, "tags must map strings to strings")
    key.tags = dict(tags)
    return key


def load_seed(path: Path) -> SeedPlan:
    """Read and check a seed file (nothing is written).

    Raises:
        SeedError: the file cannot be read, is not YAML, or an entry is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"{path}: cannot read it: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"{path}: not valid YAML: {exc}") from None
    return check_seed(data if data is not None else {})


def check_seed(data: Any) -> SeedPlan:
    """Check parsed seed data (see the module docstring for its shape).

    Raises:
        SeedError: an entry is wrong; the message names it.
    """
    top = _mapping(data, "the file", _TOP)
    plan = SeedPlan()
    seen: set[str] = set()
    for name in ("keys", "aliases", "grants"):
        if not isinstance(top.get(name) or [], list):
            raise _fail(name, "must be a list")
    for i, raw in enumerate(top.get("keys") or []):
        key = _check_key({k: v for k, v in raw.items() if k != "aliases"} if isinstance(raw, dict)
                         else raw, f"keys[{i}]")  # fmt: skip
        if key.key_id in seen:
            raise _fail(key.where, "the id is given twice")
        seen.add(key.key_id)
        plan.keys.append(key)
        for j, alias in enumerate(raw.get("aliases") or []):
            plan.aliases.append((f"keys[{i}].aliases[{j}]", str(alias), key.key_id))
    for i, raw in enumerate(top.get("aliases") or []):
        where = f"aliases[{i}]"
        entry = _mapping(raw, where, _ALIAS_FIELDS)
        name = _string(entry, "name", where, required=True) or ""
        target = _key_id(_string(entry, "key", where, required=True) or "", where)
        plan.aliases.append((f"{where} ({name})", name, target))
    names: dict[str, str] = {}
    for where, name, _ in plan.aliases:
        try:
            validate_alias_name(name, for_create=True)
        except KMSError as exc:
            raise _fail(where, exc.message) from None
        if name in names:
            raise _fail(where, f"{name} is given twice (also {names[name]})")
        names[name] = where
    for i, raw in enumerate(top.get("grants") or []):
        where = f"grants[{i}]"
        entry = _mapping(raw, where, _GRANT_FIELDS)
        key_id = _key_id(_string(entry, "key", where, required=True) or "", where)
        name = _string(entry, "name", where, required=True) or ""
        where = f"{where} ({name})"
        operations = entry.get("operations")
        if (
            not isinstance(operations, list)
            or not operations
            or not all(isinstance(op, str) for op in operations)
        ):
            raise _fail(where, "operations must be a list of operation names")
        request: dict[str, Any] = {
            "KeyId": key_id,
            "Name": name,
            "GranteePrincipal": _string(entry, "grantee", where, required=True),
            "Operations": list(operations),
        }
        retiring = _string(entry, "retiring", where)
        if retiring is not None:
            request["RetiringPrincipal"] = retiring
        plan.grants.append((where, request))
    return plan


class _Loader:
    """Applies a plan as one caller, inside the caller's store transaction."""

    def __init__(self, service: KeyService, caller: Caller, planned: set[str]) -> None:
        self.service = service
        self.caller = caller
        self.planned = planned
        self.changes: list[str] = []

    def call(self, where: str, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return dispatch(self.service, operation, request, self.caller)
        except KMSError as exc:
            raise _fail(where, f"{operation}: {exc.code}: {exc.message}") from None

    def key(self, key: SeedKey) -> None:
        service = self.service
        found = service.store.get_key(key.key_id)
        if found is None:
            self._create(key)
            found = service.store.get_key(key.key_id)
            assert found is not None
        elif (found.key_spec, found.key_usage) != (key.key_spec, key.key_usage):
            raise _fail(key.where, f"the store has this key as {found.key_spec}/{found.key_usage}")
        elif key.material is not None:
            self._check_material(key, found)
        if found.description != key.description:
            self.call(key.where, "UpdateKeyDescription",
                      {"KeyId": key.key_id, "Description": key.description})  # fmt: skip
            self.changes.append(f"described {key.key_id}")
        enabled = found.state is KeyState.ENABLED
        if key.enabled != enabled and found.state in (KeyState.ENABLED, KeyState.DISABLED):
            self.call(
                key.where, "EnableKey" if key.enabled else "DisableKey", {"KeyId": key.key_id}
            )
            self.changes.append(f"{'enabled' if key.enabled else 'disabled'} {key.key_id}")
        if key.rotation != found.rotation_enabled and key.enabled:
            self.call(key.where, "EnableKeyRotation" if key.rotation else "DisableKeyRotation",
                      {"KeyId": key.key_id})  # fmt: skip
            self.changes.append(f"rotation {'on' if key.rotation else 'off'} for {key.key_id}")
        have = dict(service.store.list_tags(key.key_id))
        wanted = [{"TagKey": k, "TagValue": v} for k, v in key.tags.items() if have.get(k) != v]
        if wanted:
            self.call(key.where, "TagResource", {"KeyId": key.key_id, "Tags": wanted})
            self.changes.append(f"tagged {key.key_id}")

    def policy(self, key: SeedKey) -> None:
        found = self.service.store.get_key(key.key_id)
        if key.policy is None or found is None:
            return
        if _same_json(found.policy, key.policy):
            return
        self.call(key.where, "PutKeyPolicy",
                  {"KeyId": key.key_id, "PolicyName": "default", "Policy": key.policy})  # fmt: skip
        self.changes.append(f"policy of {key.key_id}")

    def _create(self, key: SeedKey) -> None:
        service = self.service
        now = service.clock()
        record = KeyRecord(
            key_id=key.key_id,
            arn=service.key_arn(key.key_id),
            account=service.account,
            creation_date=now,
            description=key.description,
            key_usage=key.key_usage,
            key_spec=key.key_spec,
            origin="AWS_KMS",
            state=KeyState.ENABLED,
            current_version=1,
            multi_region=key.key_id.startswith("mrk-"),
            policy=service.default_key_policy,
        )
        material = new_material(
            service, key.key_id, 1, now, key_spec=key.key_spec, raw=key.material
        )
        service.store.create_key(record, material, {})
        service.forget(key.key_id)
        call = Call(service, "CreateKey", self.caller, new_request_id(), [record.arn])
        request = {"Description": key.description, "KeySpec": key.key_spec,
                   "KeyUsage": key.key_usage, "Tags": []}  # fmt: skip
        service.auditor.record(call, request, {"KeyMetadata": record.metadata()}, None)
        self.changes.append(f"created {key.key_id}")

    def _check_material(self, key: SeedKey, found: KeyRecord) -> None:
        material = self.service.store.get_material(key.key_id, 1)
        if material is None or not material.wrapped:
            raise _fail(key.where, "the store's key has no material of its own to compare")
        held = self.service.root_key.unwrap(material.wrapped, found.arn, 1)
        assert key.material is not None
        if not hmac.compare_digest(held, key.material):
            raise _fail(key.where, "the store has this key id with other material")

    def alias(self, where: str, name: str, key_id: str) -> None:
        found = self.service.store.get_alias(name)
        if found is None:
            self.call(where, "CreateAlias", {"AliasName": name, "TargetKeyId": key_id})
            self.changes.append(f"alias {name}")
        elif found.key_id != key_id:
            self.call(where, "UpdateAlias", {"AliasName": name, "TargetKeyId": key_id})
            self.changes.append(f"alias {name} moved")

    def grant(self, where: str, request: dict[str, Any]) -> None:
        for grant in self.service.store.key_grants(request["KeyId"]):
            if grant.name == request["Name"]:
                return  # there: a grant is found again by its name
        self.call(where, "CreateGrant", request)
        self.changes.append(f"grant {request['Name']} on {request['KeyId']}")


def _same_json(a: str | None, b: str) -> bool:
    try:
        return a is not None and json.loads(a) == json.loads(b)
    except ValueError:
        return False


def apply_seed(service: KeyService, plan: SeedPlan, caller: Caller) -> list[str]:
    """Make the store hold what ``plan`` says, all of it or (on an error) none of it.

    Args:
        service: The key service of the data dir.
        plan: A checked seed (:func:`load_seed`).
        caller: Who loads it (the data dir's admin); its permissions apply.

    Returns:
        What was changed, one line each (empty when the store had it all).

    Raises:
        SeedError: an entry cannot be applied (named); nothing was changed.
    """
    loader = _Loader(service, caller, {key.key_id for key in plan.keys})
    try:
        with service.store.transaction():
            for key in plan.keys:
                loader.key(key)
            for where, name, key_id in plan.aliases:
                if service.store.get_key(key_id) is None:
                    raise _fail(where, f"key {key_id} is neither in the file nor in the store")
                loader.alias(where, name, key_id)
            for where, request in plan.grants:
                if service.store.get_key(request["KeyId"]) is None:
                    raise _fail(
                        where, f"key {request['KeyId']} is neither in the file nor in the store"
                    )
                loader.grant(where, request)
            # Policies last: one that leaves the admin out must not stop the rest.
            for key in plan.keys:
                loader.policy(key)
    except BaseException:
        for key in plan.keys:
            service.forget(key.key_id)
        for _, name, _ in plan.aliases:
            service.forget_alias(name)
        raise
    return loader.changes


def admin_caller(service: KeyService) -> Caller:
    """The caller ``kms seed`` loads as: the admin user of the running uid.

    Raises:
        SeedError: this uid is mapped to no user of the data dir.
    """
    principal = service.principals.by_uid(os.getuid())
    if principal is None:
        raise SeedError(f"uid {os.getuid()} is no user of this data dir")
    return service.principals.caller(principal, source="kms seed", user_agent=_USER_AGENT)
