"""The root of trust and the files of a data dir.

A data dir opened with the wrong root key (wrong passphrase, replaced or
damaged root.key) must fail at open with RootKeyError, never later as garbage
or as a confusing decryption error. Files are private: the data dir 0700,
root.key and the database with its side files 0600, whatever the umask.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from service_helpers import Clock, expect, mode, new_key, open_kms, raw_files, umask

from kmscore.client import LocalKMS
from kmscore.crypto.rootkey import RootKey, RootKeyError
from kmscore.errors import KMSError, KMSInternalException

FAST = {"argon2_interactive": True}


def _populate(kms: LocalKMS) -> tuple[str, bytes]:
    key_id = new_key(kms)
    return key_id, kms.encrypt(KeyId=key_id, Plaintext=b"precious")["CiphertextBlob"]


def _files_snapshot(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file()}


def test_root_key_error_is_an_internal_kms_error() -> None:
    assert issubclass(RootKeyError, KMSInternalException)
    assert RootKeyError("x").code == "KMSInternalException"


# --- passphrase-protected data dirs -----------------------------------------------------


def test_passphrase_round_trip(tmp_path: Path) -> None:
    with open_kms(tmp_path, passphrase="correct horse", **FAST) as kms:
        key_id, blob = _populate(kms)
    assert not (tmp_path / "root.key").exists()
    # str and bytes passphrases are the same passphrase.
    with open_kms(tmp_path, passphrase=b"correct horse") as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"precious"
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


@pytest.mark.parametrize("passphrase", ["wrong horse", "correct horse ", "Correct horse", "c"])
def test_wrong_passphrase_fails_at_open(tmp_path: Path, passphrase: str) -> None:
    with open_kms(tmp_path, passphrase="correct horse", **FAST) as kms:
        _, blob = _populate(kms)
    before = _files_snapshot(tmp_path)
    with pytest.raises(RootKeyError, match="wrong passphrase"):
        open_kms(tmp_path, passphrase=passphrase)
    # Nothing was written by the failed open (the WAL may be checkpointed away).
    assert _files_snapshot(tmp_path).get("root.key") == before.get("root.key")
    with open_kms(tmp_path, passphrase="correct horse") as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"precious"


def test_passphrase_dir_needs_the_passphrase(tmp_path: Path) -> None:
    with open_kms(tmp_path, passphrase="pw", **FAST):
        pass
    with pytest.raises(RootKeyError, match="passphrase"):
        open_kms(tmp_path)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RootKeyError, match="empty"):
        open_kms(tmp_path / "new", passphrase="", **FAST)
    with open_kms(tmp_path / "dir", passphrase="pw", **FAST):
        pass
    with pytest.raises(RootKeyError):
        open_kms(tmp_path / "dir", passphrase=b"")


def test_file_dir_refuses_a_passphrase(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        _, blob = _populate(kms)
    with pytest.raises(RootKeyError, match="root key file"):
        open_kms(tmp_path, passphrase="pw")
    with open_kms(tmp_path) as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"precious"


# --- root key files -----------------------------------------------------------------------


def test_replaced_root_key_fails_at_open(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        _, blob = _populate(kms)
    original = (tmp_path / "root.key").read_bytes()
    (tmp_path / "root.key").unlink()
    RootKey.create_file(tmp_path / "root.key")  # a fresh, well-formed, 0600 key
    assert (tmp_path / "root.key").read_bytes() != original
    with pytest.raises(RootKeyError, match="does not match"):
        open_kms(tmp_path)
    (tmp_path / "root.key").unlink()
    (tmp_path / "root.key").write_bytes(original)
    os.chmod(tmp_path / "root.key", 0o600)
    with open_kms(tmp_path) as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"precious"


def test_root_key_with_one_bit_changed(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        _populate(kms)
    data = bytearray((tmp_path / "root.key").read_bytes())
    data[17] ^= 0x04
    (tmp_path / "root.key").write_bytes(bytes(data))
    with pytest.raises(RootKeyError, match="does not match"):
        open_kms(tmp_path)


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_root_key_readable_by_others_is_refused(tmp_path: Path, file_mode: int) -> None:
    with open_kms(tmp_path) as kms:
        _populate(kms)
    os.chmod(tmp_path / "root.key", file_mode)
    with pytest.raises(RootKeyError, match="0600") as info:
        open_kms(tmp_path)
    assert f"{file_mode:04o}" in info.value.message
    assert mode(tmp_path / "root.key") == file_mode  # refused, not silently "fixed"
    os.chmod(tmp_path / "root.key", 0o400)  # read-only for the owner is fine
    open_kms(tmp_path).close()


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_damaged_root_key_file(tmp_path: Path, length: int) -> None:
    with open_kms(tmp_path) as kms:
        _populate(kms)
    (tmp_path / "root.key").write_bytes(os.urandom(length))
    with pytest.raises(RootKeyError, match="damaged"):
        open_kms(tmp_path)


def test_missing_root_key_file(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        _populate(kms)
    (tmp_path / "root.key").unlink()
    with pytest.raises(RootKeyError, match="does not exist"):
        open_kms(tmp_path)
    assert not (tmp_path / "root.key").exists()  # and no new key was made in its place


def test_root_key_symlink_is_refused(tmp_path: Path) -> None:
    with open_kms(tmp_path / "dir") as kms:
        _populate(kms)
    real = tmp_path / "elsewhere.key"
    os.rename(tmp_path / "dir" / "root.key", real)
    os.symlink(real, tmp_path / "dir" / "root.key")
    with pytest.raises(RootKeyError, match="is a symlink"):
        open_kms(tmp_path / "dir")


def test_root_key_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    with open_kms(tmp_path) as kms:
        _populate(kms)
    os.chown(tmp_path / "root.key", 65534, -1)
    with pytest.raises(RootKeyError, match="another user"):
        open_kms(tmp_path)


def test_missing_check_value(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        _populate(kms)
    db = sqlite3.connect(tmp_path / "kms.db")
    db.execute("DELETE FROM settings WHERE name = 'root_key_check'")
    db.commit()
    db.close()
    with pytest.raises(RootKeyError, match="damaged"):
        open_kms(tmp_path)


# --- material at rest -----------------------------------------------------------------------


def test_material_is_stored_wrapped(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        key_id, _ = _populate(kms)
        kms.rotate_key_on_demand(KeyId=key_id)
        svc = kms.service
        raws = [
            svc.root_key.unwrap(m.wrapped, svc.key_arn(key_id), m.version)
            for m in svc.store.list_materials(key_id)
        ]
        assert len(raws) == 2 and all(len(r) == 32 for r in raws)
        files = raw_files(tmp_path)
        for raw in raws:
            for name, data in files.items():
                assert raw[:16] not in data, f"plaintext key material in {name}"
                assert raw[16:] not in data, f"plaintext key material in {name}"


def test_wrapped_material_cannot_move_between_keys(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        a, blob_a = _populate(kms)
        b, _ = _populate(kms)
    db = sqlite3.connect(tmp_path / "kms.db")
    (wrapped_b,) = db.execute(
        "SELECT wrapped FROM key_materials WHERE key_id = ? AND version = 1", (b,)
    ).fetchone()
    db.execute(
        "UPDATE key_materials SET wrapped = ? WHERE key_id = ? AND version = 1", (wrapped_b, a)
    )
    db.commit()
    db.close()
    with open_kms(tmp_path) as kms:
        # The stored material no longer authenticates for key a: an internal
        # error, never a decryption under b's material.
        expect("KMSInternalException", kms.decrypt, CiphertextBlob=blob_a)
        expect("KMSInternalException", kms.encrypt, KeyId=a, Plaintext=b"x")
        assert kms.encrypt(KeyId=b, Plaintext=b"x")["KeyId"].endswith(b)


# --- file modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_file_modes(tmp_path: Path, mask: int) -> None:
    data_dir = tmp_path / "a" / "kms"
    with umask(mask), open_kms(data_dir, Clock()) as kms:
        key_id, _ = _populate(kms)
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        assert mode(data_dir) == 0o700
        for name in ("root.key", "kms.db", "kms.db-wal", "kms.db-shm"):
            assert (data_dir / name).exists(), name
            assert mode(data_dir / name) == 0o600, name
        # Whatever else the data dir holds (the admin's credentials file) is
        # private too.
        for p in data_dir.iterdir():
            assert mode(p) == (0o700 if p.is_dir() else 0o600), p.name
    for p in data_dir.iterdir():
        assert mode(p) & 0o077 == 0, p.name


def test_passphrase_dir_file_modes(tmp_path: Path) -> None:
    with umask(0), open_kms(tmp_path / "kms", passphrase="pw", **FAST) as kms:
        _populate(kms)
        assert mode(tmp_path / "kms") == 0o700
        for name in ("kms.db", "kms.db-wal", "kms.db-shm"):
            assert mode(tmp_path / "kms" / name) == 0o600, name


def test_open_data_dir_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    with open_kms(data_dir):
        assert mode(data_dir) == 0o700


def test_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    data_dir = tmp_path / "kms"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 65534, -1)
    with pytest.raises((PermissionError, KMSError)):
        open_kms(data_dir)
    assert list(data_dir.iterdir()) == []


def test_planted_side_file_symlink_is_not_followed(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    data_dir.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"do not touch")
    os.symlink(target, data_dir / "root.key")
    with pytest.raises((RootKeyError, FileExistsError, OSError)):
        open_kms(data_dir)
    assert target.read_bytes() == b"do not touch"
