"""Fail closed: when the audit record cannot be written, the call fails and changes nothing.

The disk is made "full" for the audit segment file only: every write to a file
descriptor that refers to ``<data-dir>/audit/segment-*.jsonl`` raises
``OSError(ENOSPC)``, while the key store, the checkpoint file and everything
else write normally. Which write call the trail uses is its own business, so
every ``os`` write function is wrapped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import expect

from kmscore.audit import query, verify
from kmscore.client import LocalKMS

BOB = "arn:aws:iam::111122223333:user/bob"
_WRITES = ("write", "writev", "pwrite", "pwritev")


class FullDisk:
    """Refuses writes to the audit segment files while ``on``."""

    def __init__(self, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.audit_dir = (data_dir / "audit").resolve()
        self.on = False
        self.refused = 0
        for name in _WRITES:
            original = getattr(os, name, None)
            if original is not None:
                monkeypatch.setattr(os, name, self._wrap(original))

    def _is_segment(self, fd: int) -> bool:
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return False
        return target.parent == self.audit_dir and target.name.startswith("segment-")

    def _wrap(self, original: Any) -> Any:
        def write(fd: int, *args: Any, **kwargs: Any) -> Any:
            if self.on and self._is_segment(fd):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return original(fd, *args, **kwargs)

        return write


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kms"


@pytest.fixture
def kms(data_dir: Path) -> Iterator[LocalKMS]:
    client = LocalKMS(data_dir, audit=True)
    yield client
    client.close()


@pytest.fixture
def disk(data_dir: Path, kms: LocalKMS, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(data_dir, monkeypatch)


def snapshot(kms: LocalKMS, key: str) -> dict[str, Any]:
    """Everything the failed calls might have changed."""
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    return {
        "keys": sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
        "state": meta["KeyState"],
        "description": meta["Description"],
        "policy": kms.get_key_policy(KeyId=key)["Policy"],
        "grants": kms.list_grants(KeyId=key)["Grants"],
        "aliases": kms.list_aliases()["Aliases"],
    }


def test_failed_audit_write_undoes_the_change(
    data_dir: Path, kms: LocalKMS, disk: FullDisk
) -> None:
    key = kms.create_key(Description="before")["KeyMetadata"]["KeyId"]
    kms.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"])
    before = snapshot(kms, key)
    recorded = len(list(query(data_dir)))
    new_policy = before["policy"].replace("Enable IAM User Permissions", "Changed")

    disk.on = True
    expect("KMSInternalException", kms.create_key, Description="never")
    expect("KMSInternalException", kms.disable_key, KeyId=key)
    expect("KMSInternalException", kms.put_key_policy, KeyId=key, Policy=new_policy)
    expect(
        "KMSInternalException",
        kms.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
    )
    expect("KMSInternalException", kms.update_key_description, KeyId=key, Description="after")
    expect("KMSInternalException", kms.create_alias, AliasName="alias/never", TargetKeyId=key)
    disk.on = False
    assert disk.refused >= 6

    assert snapshot(kms, key) == before
    # A fresh instance reads the same from the store (no cache hides a change).
    kms.close()
    with LocalKMS(data_dir, audit=True) as again:
        assert snapshot(again, key) == before
    # None of the failed calls left a record, and the trail is intact.
    events = list(query(data_dir))
    reads = ["DescribeKey", "ListKeys", "GetKeyPolicy", "ListGrants", "ListAliases"]
    assert [e["eventName"] for e in events[recorded:]] == reads * 2  # the two snapshots
    assert not any(e.get("errorCode") for e in events)
    assert verify(data_dir).unsealed == 0


def test_failed_audit_write_returns_no_ciphertext_or_data_key(
    data_dir: Path, kms: LocalKMS, disk: FullDisk
) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    disk.on = True
    results: list[Any] = []
    for call, request in [
        (kms.encrypt, {"KeyId": key, "Plaintext": b"more secret"}),
        (kms.decrypt, {"CiphertextBlob": blob}),
        (kms.generate_data_key, {"KeyId": key, "KeySpec": "AES_256"}),
        (kms.generate_data_keys, {"KeyId": key, "Count": 3, "KeySpec": "AES_256"}),
        (kms.decrypt_many, {"CiphertextBlobs": [blob]}),
        (kms.generate_random, {"NumberOfBytes": 16}),
    ]:
        with pytest.raises(Exception) as info:
            results.append(call(**request))
        assert getattr(info.value, "code", None) == "KMSInternalException"
    disk.on = False
    assert results == []
    # The trail recovers: the next call works and is recorded.
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    assert [e["eventName"] for e in query(data_dir)] == ["CreateKey", "Encrypt", "Decrypt"]
    kms.close()
    assert verify(data_dir).records == 3


def test_denied_call_fails_too_when_its_record_cannot_be_written(
    data_dir: Path, kms: LocalKMS, disk: FullDisk
) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    disk.on = True
    # The call failed for its own reason; the record of that failure failed too.
    with pytest.raises(Exception) as info:
        kms.encrypt(KeyId=key, Plaintext=b"")
    assert getattr(info.value, "code", None) in {"KMSInternalException", "ValidationException"}
    disk.on = False
    assert [e["eventName"] for e in query(data_dir)] == ["CreateKey"]
