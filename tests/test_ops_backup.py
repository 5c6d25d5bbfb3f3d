"""``kms backup`` under load, ``kms restore`` into a new dir: acknowledged ciphertexts decrypt."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_serve import _wait_ready

from kmscore.audit import query, verify
from kmscore.client import LocalKMS
from kmscore.client.remote import connect
from kmscore.frontends.ops.backup import (
    MAGIC,
    BackupError,
    _open_chunks,
    _Sealer,
    backup,
    restore,
)
from kmscore.service import open_service

KMS = shutil.which("kms")
KEY = bytes(range(32))


def _kms(*args: str) -> subprocess.CompletedProcess[str]:
    assert KMS is not None
    return subprocess.run([KMS, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")
def test_backup_under_load_restores_every_acknowledged_ciphertext(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key_file = tmp_path / "backup.key"
    key_file.write_bytes(KEY)
    proc = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acknowledged: list[tuple[float, str, bytes, bytes]] = []  # (when, key, plaintext, blob)
    created: list[tuple[float, str]] = []
    stop = threading.Event()
    errors: list[BaseException] = []
    try:
        _wait_ready(proc)
        with connect(data_dir / "kms.sock") as kms:
            keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]

        def load(worker: int) -> None:
            try:
                with connect(data_dir / "kms.sock") as kms:
                    n = 0
                    while not stop.is_set():
                        key = keys[n % len(keys)]
                        plaintext = f"{worker}-{n}".encode()
                        blob = kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]
                        acknowledged.append((time.monotonic(), key, plaintext, blob))
                        if n % 100 == 0:  # the store changes under the backup too
                            new = kms.create_key()["KeyMetadata"]["KeyId"]
                            created.append((time.monotonic(), new))
                        n += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        done = _kms("backup", str(tmp_path / "snap.kmsbak"), "--data-dir", str(data_dir),
                    "--key-file", str(key_file))  # fmt: skip
        finished = time.monotonic()
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert done.returncode == 0, done.stderr
        assert not errors, errors
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert (tmp_path / "snap.kmsbak").read_bytes().startswith(MAGIC)
    assert os.stat(tmp_path / "snap.kmsbak").st_mode & 0o777 == 0o600
    before = [a for a in acknowledged if a[0] < started]
    during = [a for a in acknowledged if started <= a[0] <= finished]
    assert len(before) > 50 and during, (len(before), len(during))

    restored = tmp_path / "restored"
    put = _kms("restore", str(tmp_path / "snap.kmsbak"), "--data-dir", str(restored),
               "--key-file", str(key_file))  # fmt: skip
    assert put.returncode == 0, put.stderr
    # The audit verifies, before and after the first open drains the copied journals.
    verify(restored)
    with LocalKMS(restored, audit=True) as kms:
        # Every ciphertext acknowledged before the backup began, and every one
        # made during it under a key that existed before, decrypts.
        for _, key, plaintext, blob in before + during:
            answer = kms.decrypt(CiphertextBlob=blob)
            assert answer["Plaintext"] == plaintext and answer["KeyId"].endswith(key)
        in_store: set[str] = set()
        page = kms.list_keys(Limit=1000)
        while True:
            in_store |= {k["KeyId"] for k in page["Keys"]}
            if not page.get("Truncated"):
                break
            page = kms.list_keys(Limit=1000, Marker=page["NextMarker"])
    assert set(keys) <= in_store
    assert {k for when, k in created if when < started} <= in_store
    report = verify(restored)
    assert report.records > len(before)
    # Consistent: every key in the restored store has its CreateKey record there.
    recorded = {
        e["responseElements"]["keyMetadata"]["keyId"]
        for e in query(restored, event_name="CreateKey")
        if e.get("responseElements")
    }
    assert in_store <= recorded


def test_restore_refuses_the_wrong_key_a_damaged_file_and_a_used_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    open_service(data_dir, audit=True).close()
    snap = tmp_path / "snap"
    backup(data_dir, snap, kdf=0, secret=KEY)
    with pytest.raises(BackupError, match="exists"):
        backup(data_dir, snap, kdf=0, secret=KEY)
    with pytest.raises(BackupError, match="does not open with this key"):
        restore(snap, tmp_path / "r1", secret=b"\x01" * 32)
    with pytest.raises(BackupError, match="made with a key file"):
        restore(snap, tmp_path / "r1", secret="a passphrase")
    data = snap.read_bytes()
    damaged = tmp_path / "damaged"
    damaged.write_bytes(data[:40] + bytes([data[40] ^ 1]) + data[41:])
    with pytest.raises(BackupError):
        restore(damaged, tmp_path / "r2", secret=KEY)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[:-10])
    with pytest.raises(BackupError):
        restore(truncated, tmp_path / "r3", secret=KEY)
    for name in ("r1", "r2", "r3"):
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir())
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore(snap, used, secret=KEY)
    restore(snap, tmp_path / "good", secret=KEY)
    verify(tmp_path / "good")


def test_a_passphrase_backup(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LocalKMS(data_dir, audit=True) as kms:
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    backup(data_dir, tmp_path / "snap", kdf=1, secret="correct horse")
    with pytest.raises(BackupError):
        restore(tmp_path / "snap", tmp_path / "bad", secret="wrong horse")
    restore(tmp_path / "snap", tmp_path / "back", secret="correct horse")
    with LocalKMS(tmp_path / "back", audit=True) as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_the_backup_reader_fails_only_with_a_backup_error(junk: bytes, cut: int) -> None:
    """Random files, and a real header followed by random chunks, never open."""
    import io

    sealed = io.BytesIO()
    sealer = _Sealer(sealed, 0, KEY)
    sealer.write(b"x" * 50)
    sealer.finish()
    real = sealed.getvalue()
    for data in (junk, real[:cut] + junk, real[: len(MAGIC) + 21] + junk):
        try:
            list(_open_chunks(io.BytesIO(data), KEY))
        except BackupError:
            continue
        assert data == real  # only the untouched file opens
