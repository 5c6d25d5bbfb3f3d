"""Fail closed: when the audit record cannot be written, the call fails and changes nothing.

A call's record is durable once it is in this process's journal, a file that is
preallocated when it is made (:mod:`kmscore.audit.journal`). So a full disk
fails a call when the journal needs a new file: the test makes the current file
full (rolls it) and makes ``posix_fallocate`` of journal files raise
``OSError(ENOSPC)``, while the key store and everything else write normally.

A full disk under the trail's segments is the other case: the records wait in
the journal, calls go on, and the trail gets every record once it can write.
Which write call the trail uses is its own business, so every ``os`` write
function is wrapped for that.
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
    """Refuses new journal files, or writes to the trail's segments, while ``on``."""

    def __init__(self, data_dir: Path, kms: LocalKMS, monkeypatch: pytest.MonkeyPatch) -> None:
        self.audit_dir = (data_dir / "audit").resolve()
        self.kms = kms
        self._on = False
        self.segments = False
        self.refused = 0
        for name in _WRITES:
            original = getattr(os, name, None)
            if original is not None:
                monkeypatch.setattr(os, name, self._wrap(original, segments=True))
        monkeypatch.setattr(os, "posix_fallocate", self._wrap(os.posix_fallocate, segments=False))

    @property
    def on(self) -> bool:
        return self._on

    @on.setter
    def on(self, value: bool) -> None:
        if value and not self.segments:
            # The journal's file is full: the next record needs a new one.
            self.kms.service.auditor.trail.journal.roll()  # type: ignore[attr-defined]
        self._on = value

    def _target(self, fd: int) -> Path | None:
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return None

    def _refuses(self, fd: int, segments: bool) -> bool:
        if not self._on or segments != self.segments:
            return False
        target = self._target(fd)
        if target is None:
            return False
        if segments:
            return target.parent == self.audit_dir and target.name.startswith("segment-")
        return target.parent == self.audit_dir / "journal"

    def _wrap(self, original: Any, *, segments: bool) -> Any:
        def call(fd: int, *args: Any, **kwargs: Any) -> Any:
            if self._refuses(fd, segments):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return original(fd, *args, **kwargs)

        return call


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
    return FullDisk(data_dir, kms, monkeypatch)


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


def test_a_full_disk_under_the_trail_loses_no_record(
    data_dir: Path, kms: LocalKMS, disk: FullDisk
) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    disk.segments = True
    disk.on = True
    blobs = [kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"] for _ in range(5)]
    # The drainer cannot write the trail: the records wait in the journal.
    with pytest.raises(Exception) as info:
        kms.service.auditor.trail.drain()  # type: ignore[attr-defined]
    assert getattr(info.value, "code", None) == "KMSInternalException"
    assert disk.refused >= 1
    disk.on = False
    assert all(kms.decrypt(CiphertextBlob=b)["Plaintext"] == b"x" for b in blobs)
    names = [e["eventName"] for e in query(data_dir)]
    assert names == ["CreateKey"] + ["Encrypt"] * 5 + ["Decrypt"] * 5
    kms.close()
    report = verify(data_dir)
    assert report.records == 11 and report.unsealed == 0
