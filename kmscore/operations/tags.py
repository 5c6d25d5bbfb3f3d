"""Tags: TagResource, UntagResource, ListResourceTags."""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import TagException
from kmscore.model.validation import List, String, Structure
from kmscore.operations.common import KEY_ID, LIMIT, MARKER, page_args, page_result
from kmscore.operations.registry import operation
from kmscore.service import Call

#: AWS allows 50 tags per KMS key.
MAX_TAGS: Final = 50
TAG: Final = Structure(
    members={
        "TagKey": String(required=True, min_len=1, max_len=128),
        "TagValue": String(required=True, min_len=0, max_len=256),
    }
)
TAG_LIST: Final = List(item=TAG)


def check_new_tags(tags: list[dict[str, str]]) -> dict[str, str]:
    """Turn a request's tag list into a dict, with AWS's rules.

    Raises:
        TagException: a reserved ``aws:`` key, a repeated key, or too many tags.
    """
    out: dict[str, str] = {}
    for tag in tags:
        k = tag["TagKey"]
        if k.lower().startswith("aws:"):
            raise TagException(f"Tag key {k!r} uses the reserved prefix 'aws:'.")
        if k in out:
            raise TagException(f"Tag key {k!r} appears more than once.")
        out[k] = tag["TagValue"]
    if len(out) > MAX_TAGS:
        raise TagException(f"A key can have at most {MAX_TAGS} tags.")
    return out


def request_tag_conditions(tags: dict[str, str]) -> dict[str, Any]:
    """``aws:RequestTag/<key>`` and ``aws:TagKeys`` for a request that sets tags.

    No tags, no keys: ``Null`` finds them absent, as in AWS.
    """
    if not tags:
        return {}
    out: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    out["aws:TagKeys"] = tuple(tags)
    return out


@operation("TagResource", {"KeyId": KEY_ID, "Tags": List(item=TAG, required=True)})
def tag_resource(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """TagResource: add or overwrite tags."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    tags = check_new_tags(req["Tags"])
    call.authorize(key, conditions=request_tag_conditions(tags))
    svc.store.put_tags(key.key_id, tags, MAX_TAGS)
    svc.access_changed()  # aws:ResourceTag decisions change at once (ABAC)
    return {}


@operation(
    "UntagResource",
    {"KeyId": KEY_ID, "TagKeys": List(item=String(min_len=1, max_len=128), required=True)},
)
def untag_resource(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UntagResource: remove tags by key; absent keys are ignored."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    for k in req["TagKeys"]:
        if k.lower().startswith("aws:"):
            raise TagException(f"Tag key {k!r} uses the reserved prefix 'aws:'.")
    call.authorize(key, conditions={"aws:TagKeys": tuple(dict.fromkeys(req["TagKeys"]))})
    svc.store.remove_tags(key.key_id, req["TagKeys"])
    svc.access_changed()  # aws:ResourceTag decisions change at once (ABAC)
    return {}


@operation("ListResourceTags", {"KeyId": KEY_ID, "Limit": LIMIT, "Marker": MARKER})
def list_resource_tags(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListResourceTags: a key's tags in tag key order, paged."""
    svc = call.service
    limit, after = page_args(req)
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    tags = [(k, v) for k, v in svc.store.list_tags(key.key_id) if after is None or k > after]
    items = [{"TagKey": k, "TagValue": v} for k, v in tags[: limit + 1]]
    last = tags[limit - 1][0] if len(tags) > limit else None
    return page_result(items, limit, last, "Tags")
