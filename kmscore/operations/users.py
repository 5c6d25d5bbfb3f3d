"""Users of this KMS: CreateUser, DeleteUser, ListUsers, TagUser, UntagUser.

kmscore is its own identity provider: the principals that policies name and
that sign requests are users of the data dir. These operations manage them in
IAM's words. They go through the dispatcher like every other call, so each is
authorized (``iam:CreateUser``, ... as account-level actions: the account
root may do them all, a user only when its identity policy allows it) and
recorded in the audit trail with ``eventSource`` ``iam.amazonaws.com``. The
secret of a new access key is in the response only; the scrubber drops
``SecretAccessKey`` from the record.

They are kmscore's own shapes, close to IAM's: a user has at most one
inline identity policy (``PolicyDocument``) and may be mapped to a Unix uid
(``Uid``) for the socket daemon's peer credentials. Errors are the KMS ones
the rest of the service answers with (``AlreadyExistsException``,
``NotFoundException``, ``TagException``, ``MalformedPolicyDocumentException``).
"""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import NotFoundException, TagException
from kmscore.model.principal import Principal
from kmscore.model.validation import Integer, List, String, Structure
from kmscore.operations.registry import operation
from kmscore.service import Call

USER_NAME: Final = String(required=True, min_len=1, max_len=64)
USER_TAG: Final = Structure(
    members={
        "Key": String(required=True, min_len=1, max_len=128),
        "Value": String(required=True, min_len=0, max_len=256),
    }
)
USER_TAGS: Final = List(item=USER_TAG, max_len=50)


def _tags(tags: list[dict[str, str]]) -> dict[str, str]:
    """A request's tag list as a dict; a key given twice is refused.

    The other rules (case-folded repeats, the ``aws:`` prefix, the limits) are
    ``check_principal_tags``'s, applied by the principals.
    """
    out: dict[str, str] = {}
    for tag in tags:
        if tag["Key"] in out:
            raise TagException(f"Tag key {tag['Key']!r} appears more than once.")
        out[tag["Key"]] = tag["Value"]
    return out


def _user(call: Call, user: Principal) -> dict[str, Any]:
    """A user as the responses show it (never a secret)."""
    return {
        "UserName": user.name,
        "UserId": user.principal_id,
        "Arn": user.arn,
        "CreateDate": user.creation_date,
        "Uid": user.uid,
        "HasIdentityPolicy": user.identity_policy is not None,
        "AccessKeyIds": call.service.store.list_access_key_ids(user.name),
        "Tags": [{"Key": k, "Value": v} for k, v in user.tags.items()],
    }


def _existing(call: Call, name: str) -> Principal:
    user = call.service.store.get_principal(name)
    if user is None:
        raise NotFoundException(f"User {name} does not exist.")
    return user


@operation(
    "CreateUser",
    {
        "UserName": USER_NAME,
        "Uid": Integer(min_value=0, max_value=2**32 - 2),
        "PolicyDocument": String(min_len=1, max_len=131072),
        "Tags": USER_TAGS,
    },
)
def create_user(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateUser: a user with one access key; the secret is in this response only."""
    call.authorize(None, action="iam:CreateUser")
    user, access_key_id, secret = call.service.principals.add(
        req["UserName"],
        uid=req.get("Uid"),
        policy=req.get("PolicyDocument"),
        tags=_tags(req.get("Tags", [])),
    )
    return {
        "User": _user(call, user),
        "AccessKey": {
            "UserName": user.name,
            "AccessKeyId": access_key_id,
            "Status": "Active",
            "SecretAccessKey": secret,
            "CreateDate": user.creation_date,
        },
    }


@operation("DeleteUser", {"UserName": USER_NAME})
def delete_user(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """DeleteUser: remove a user and its access keys; it can no longer call."""
    call.authorize(None, action="iam:DeleteUser")
    call.service.principals.remove(req["UserName"])
    return {}


@operation("ListUsers", {})
def list_users(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListUsers: every user of this KMS, by name."""
    call.authorize(None, action="iam:ListUsers")
    return {"Users": [_user(call, user) for user in call.service.principals.list()]}


@operation("TagUser", {"UserName": USER_NAME, "Tags": List(item=USER_TAG, required=True)})
def tag_user(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """TagUser: add or overwrite tags of a user (keys case-insensitive); policies see them."""
    call.authorize(None, action="iam:TagUser")
    user = _existing(call, req["UserName"])
    new = _tags(req["Tags"])
    folded = {k.lower() for k in new}
    kept = {k: v for k, v in user.tags.items() if k.lower() not in folded}
    call.service.principals.set_tags(user.name, {**kept, **new})
    return {}


@operation(
    "UntagUser",
    {
        "UserName": USER_NAME,
        "TagKeys": List(item=String(min_len=1, max_len=128), required=True, max_len=50),
    },
)
def untag_user(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UntagUser: remove tags of a user by key (case-insensitive); absent keys are ignored."""
    call.authorize(None, action="iam:UntagUser")
    user = _existing(call, req["UserName"])
    folded = {k.lower() for k in req["TagKeys"]}
    kept = {k: v for k, v in user.tags.items() if k.lower() not in folded}
    call.service.principals.set_tags(user.name, kept)
    return {}
