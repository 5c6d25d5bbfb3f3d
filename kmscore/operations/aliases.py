"""Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import (
    AlreadyExistsException,
    LimitExceededException,
    NotFoundException,
    ValidationException,
)
from kmscore.model.arn import validate_alias_name
from kmscore.model.key import AliasRecord, KeyRecord
from kmscore.model.validation import String
from kmscore.operations.common import KEY_ID, LIMIT, MARKER, OPTIONAL_KEY_ID, page_args, page_result
from kmscore.operations.registry import operation
from kmscore.service import Call

ALIAS_NAME: Final = String(
    required=True, min_len=1, max_len=256, pattern=r"^[a-zA-Z0-9:/_-]+$", shown=True
)
#: AWS allows 50 aliases per KMS key.
MAX_ALIASES_PER_KEY: Final = 50


def _target(call: Call, ref: str) -> KeyRecord:
    """The key an alias may point at: named by key id or key ARN only."""
    return call.resolve(ref, allow_alias=False)


@operation("CreateAlias", {"AliasName": ALIAS_NAME, "TargetKeyId": KEY_ID})
def create_alias(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateAlias: a new alias for a key (``alias/aws/`` is reserved)."""
    svc = call.service
    name = req["AliasName"]
    validate_alias_name(name)
    key = _target(call, req["TargetKeyId"])
    call.check_state(key)
    call.authorize(key)
    call.authorize(None, conditions={"kms:AliasName": name}, action="kms:CreateAlias")
    if (
        len(svc.store.list_aliases(key.key_id, None, MAX_ALIASES_PER_KEY + 1))
        >= MAX_ALIASES_PER_KEY
    ):
        raise LimitExceededException(f"{key.arn} already has {MAX_ALIASES_PER_KEY} aliases.")
    now = svc.clock()
    try:
        svc.store.create_alias(AliasRecord(name, key.key_id, now, now))
    except AlreadyExistsException:
        # AWS names the alias by its ARN here; the store knows only the name.
        raise AlreadyExistsException(
            f"An alias with the name {svc.alias_arn(name)} already exists"
        ) from None
    svc.forget_alias(name)
    return {}


@operation("UpdateAlias", {"AliasName": ALIAS_NAME, "TargetKeyId": KEY_ID})
def update_alias(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UpdateAlias: point an alias at another key of the same type and usage."""
    svc = call.service
    name = req["AliasName"]
    validate_alias_name(name)
    alias = svc.store.get_alias(name)
    if alias is None:
        raise NotFoundException(f"Alias {svc.alias_arn(name)} is not found.")
    key = _target(call, req["TargetKeyId"])
    call.check_state(key)
    old = svc.get_key(alias.key_id)
    if old is not None and (old.key_spec, old.key_usage) != (key.key_spec, key.key_usage):
        raise ValidationException(
            f"Alias {name} must point at a key with key spec {old.key_spec} and "
            f"key usage {old.key_usage}."
        )
    if old is not None:
        call.authorize(old)
    call.authorize(key)
    svc.store.update_alias(AliasRecord(name, key.key_id, alias.creation_date, svc.clock()))
    svc.forget_alias(name)
    return {}


@operation("DeleteAlias", {"AliasName": ALIAS_NAME})
def delete_alias(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DeleteAlias."""
    svc = call.service
    name = req["AliasName"]
    validate_alias_name(name, for_create=False)
    alias = svc.store.get_alias(name)
    if alias is None:
        raise NotFoundException(f"Alias {svc.alias_arn(name)} is not found.")
    key = svc.get_key(alias.key_id)
    if key is not None:
        call.check_state(key)
    call.authorize(key)
    svc.store.delete_alias(name)
    svc.forget_alias(name)
    return {}


@operation("ListAliases", {"KeyId": OPTIONAL_KEY_ID, "Limit": LIMIT, "Marker": MARKER})
def list_aliases(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListAliases: all aliases, or one key's, in name order, paged."""
    svc = call.service
    limit, after = page_args(req)
    key_id = None
    if "KeyId" in req:
        key = call.resolve(req["KeyId"], allow_alias=False)
        key_id = key.key_id
        call.authorize(key)
    else:
        call.authorize(None)
    while True:
        aliases = svc.store.list_aliases(key_id, after, limit + 1)
        # get_key deletes a key past its deletion window (and its aliases with
        # it); then read the page again, so no alias of a deleted key shows.
        if all(svc.get_key(k) is not None for k in {a.key_id for a in aliases}):
            break
    items = [
        {
            "AliasName": a.alias_name,
            "AliasArn": svc.alias_arn(a.alias_name),
            "TargetKeyId": a.key_id,
            "CreationDate": a.creation_date,
            "LastUpdatedDate": a.last_updated_date,
        }
        for a in aliases
    ]
    last = aliases[limit - 1].alias_name if len(aliases) > limit else None
    return page_result(items, limit, last, "Aliases")
