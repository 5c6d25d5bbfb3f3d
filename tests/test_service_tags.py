"""Tags: TagResource, UntagResource, ListResourceTags."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from service_helpers import Clock, all_pages, db_rows, expect, new_key, open_kms

from kmscore.client import LocalKMS


@pytest.fixture
def kms(tmp_path: Path) -> LocalKMS:
    with open_kms(tmp_path / "kms", Clock()) as k:
        yield k


def _tags(kms: LocalKMS, key_id: str) -> dict[str, str]:
    items, _ = all_pages(kms.list_resource_tags, "Tags", 1000, KeyId=key_id)
    return {t["TagKey"]: t["TagValue"] for t in items}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in tags.items()]


def test_tag_untag_and_overwrite(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    assert kms.tag_resource(KeyId=key_id, Tags=_tag_list({"a": "1", "b": "2"})) == {}
    assert _tags(kms, key_id) == {"a": "1", "b": "2"}
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"b": "two", "c": ""}))
    assert _tags(kms, key_id) == {"a": "1", "b": "two", "c": ""}
    assert kms.untag_resource(KeyId=key_id, TagKeys=["a", "absent"]) == {}
    assert _tags(kms, key_id) == {"b": "two", "c": ""}
    kms.tag_resource(KeyId=key_id, Tags=[])
    assert _tags(kms, key_id) == {"b": "two", "c": ""}


def test_tags_are_per_key(kms: LocalKMS) -> None:
    k1, k2 = new_key(kms), new_key(kms)
    kms.tag_resource(KeyId=k1, Tags=_tag_list({"x": "1"}))
    assert _tags(kms, k2) == {}


def test_unicode_tags_and_order(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    tags = {"z": "last", "Ä": "umlaut", "é🔑": "emoji", "A": "first", "ü" * 128: "v" * 256}
    kms.tag_resource(KeyId=key_id, Tags=_tag_list(tags))
    listed = kms.list_resource_tags(KeyId=key_id)["Tags"]
    assert {t["TagKey"]: t["TagValue"] for t in listed} == tags
    keys = [t["TagKey"] for t in listed]
    assert keys == sorted(keys, key=lambda k: k.encode())
    for limit in (1, 2, 4):
        items, pages = all_pages(kms.list_resource_tags, "Tags", limit, KeyId=key_id)
        assert [t["TagKey"] for t in items] == keys
        assert pages == -(-len(tags) // limit)


@pytest.mark.parametrize(
    "tags",
    [
        [{"TagKey": "aws:x", "TagValue": "1"}],
        [{"TagKey": "ok", "TagValue": "1"}, {"TagKey": "Aws:x", "TagValue": "1"}],
        [{"TagKey": "dup", "TagValue": "1"}, {"TagKey": "dup", "TagValue": "2"}],
        [{"TagKey": f"n{i}", "TagValue": "v"} for i in range(51)],
    ],
)
def test_tag_exception_adds_nothing(kms: LocalKMS, tmp_path: Path, tags: list[object]) -> None:
    key_id = new_key(kms)
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"keep": "me"}))
    expect("TagException", kms.tag_resource, KeyId=key_id, Tags=tags)
    assert _tags(kms, key_id) == {"keep": "me"}
    assert db_rows(tmp_path / "kms", "SELECT tag_key FROM tags") == [("keep",)]


def test_fifty_tags_per_key(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({f"t{i:02}": "v" for i in range(48)}))
    before = _tags(kms, key_id)
    # Overwriting existing tags does not count against the limit.
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"t00": "new", "t47": "new"}))
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"t48": "v", "t49": "v"}))
    assert len(_tags(kms, key_id)) == 50
    before = _tags(kms, key_id)
    err = expect(
        "LimitExceededException",
        kms.tag_resource,
        KeyId=key_id,
        Tags=_tag_list({"t00": "changed", "extra": "v"}),
    )
    assert "50" in err.message
    assert _tags(kms, key_id) == before  # the overwrite in the failed call did not happen


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"Tags": [{"TagKey": "k", "TagValue": "v"}]},  # no KeyId
        {"KeyId": "K"},  # no Tags
        {"KeyId": "K", "Tags": [{"TagKey": "", "TagValue": "v"}]},
        {"KeyId": "K", "Tags": [{"TagKey": "k" * 129, "TagValue": "v"}]},
        {"KeyId": "K", "Tags": [{"TagKey": "k", "TagValue": "v" * 257}]},
        {"KeyId": "K", "Tags": [{"TagKey": "k", "TagValue": None}]},
        {"KeyId": "K", "Tags": [{"TagKey": "k", "TagValue": 1}]},
        {"KeyId": "K", "Tags": ["k=v"]},
        {"KeyId": "K", "Tags": "k=v"},
        {"KeyId": "K", "Tags": [], "Extra": True},
    ],
)
def test_tag_resource_validation(kms: LocalKMS, request_: dict[str, object]) -> None:
    key_id = new_key(kms)
    request = {k: (key_id if v == "K" else v) for k, v in request_.items()}
    expect("ValidationException", kms.tag_resource, **request)
    assert _tags(kms, key_id) == {}


def test_untag_resource_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"a": "1", "b": "2"}))
    expect("TagException", kms.untag_resource, KeyId=key_id, TagKeys=["a", "aws:b"])
    expect("ValidationException", kms.untag_resource, KeyId=key_id)
    expect("ValidationException", kms.untag_resource, KeyId=key_id, TagKeys=[""])
    expect("ValidationException", kms.untag_resource, KeyId=key_id, TagKeys="a")
    expect("NotFoundException", kms.untag_resource, KeyId=str(uuid.uuid4()), TagKeys=["a"])
    assert _tags(kms, key_id) == {"a": "1", "b": "2"}


def test_tags_by_key_state(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.disable_key(KeyId=key_id)
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"a": "1"}))
    kms.untag_resource(KeyId=key_id, TagKeys=["a"])
    kms.tag_resource(KeyId=key_id, Tags=_tag_list({"b": "1"}))
    kms.schedule_key_deletion(KeyId=key_id)
    expect("KMSInvalidStateException", kms.tag_resource, KeyId=key_id, Tags=_tag_list({"c": "1"}))
    expect("KMSInvalidStateException", kms.untag_resource, KeyId=key_id, TagKeys=["b"])
    # ListResourceTags works in every state.
    assert _tags(kms, key_id) == {"b": "1"}


def test_list_resource_tags_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    expect("NotFoundException", kms.list_resource_tags, KeyId=str(uuid.uuid4()))
    expect("ValidationException", kms.list_resource_tags)
    expect("ValidationException", kms.list_resource_tags, KeyId=key_id, Limit=0)
    expect("ValidationException", kms.list_resource_tags, KeyId=key_id, Limit=1001)
    expect("InvalidMarkerException", kms.list_resource_tags, KeyId=key_id, Marker="%%%")
    assert kms.list_resource_tags(KeyId=key_id) == {"Tags": [], "Truncated": False}


def test_tags_survive_reopen(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        key_id = new_key(kms, Tags=[{"TagKey": "a", "TagValue": "1"}])
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "b", "TagValue": "2"}])
    with open_kms(tmp_path) as kms:
        assert _tags(kms, key_id) == {"a": "1", "b": "2"}
