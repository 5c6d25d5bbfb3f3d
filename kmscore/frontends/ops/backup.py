"""``kms backup DEST`` and ``kms restore``: a data dir as one encrypted file.

What is in it: the SQLite store (its online backup API, so a live daemon
keeps serving), the audit trail (segments, checkpoints, and the journals'
entries not yet chained) and the data dir's settings and keys (root key file,
audit signing key, credentials, the saved store URL and audit settings). A
PostgreSQL store is not copied (its URL is): take it with ``pg_dump``
(docs/operations.md).

Consistency while the service runs: the backup holds the audit journals'
``DRAIN`` lock and the trail's ``LOCK`` (so nothing moves between journals
and trail), takes the store's snapshot, and only then lists and copies the
journals and the trail. Every change to the store is journaled before it
commits, so every change in the snapshot has its audit record in the copy.
Calls keep being answered meanwhile: appending to a journal takes neither
lock. A journal is copied from its start to its end, and an entry's commit
word (its length) is stored after its body, so a copy holds whole entries
followed by an end mark, as a ``kill -9`` would leave it.

The file: ``KMSBACKUP1`` and a newline, the key's derivation (0: a 32-byte key file;
1: scrypt of a passphrase, n=2**15, r=8, p=1), a 16-byte salt and a 4-byte
nonce prefix; then chunks of at most :data:`CHUNK` bytes of a tar stream,
each ``u32 length || AES-256-GCM(chunk)`` with the nonce ``prefix || u64
index`` and the header plus a last-chunk flag as associated data. A
truncated, reordered or altered file fails to open, and nothing is restored
from a file that does not open to its last chunk.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import io
import os
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kmscore.audit.chainer import DRAIN_LOCK
from kmscore.audit.journal_format import _COUNT_AT, ENTRY_HEAD, HEADER_BYTES, SUFFIX, journal_dir
from kmscore.fsutil import create_private_file, ensure_private_dir, open_private_file
from kmscore.store.sqlite import DB_FILE

__all__ = ["CHUNK", "MAGIC", "BackupError", "backup", "backup_key", "restore"]

MAGIC: Final = b"KMSBACKUP1\n"
CHUNK: Final = 1 << 20
KDF_KEY_FILE: Final = 0
KDF_SCRYPT: Final = 1
_HEADER: Final = struct.Struct(">B16s4s")
_LENGTH: Final = struct.Struct(">I")
_TAG: Final = 16
#: Never copied: sockets, SQLite's side files (the store is copied through
#: its backup API) and the state of running processes.
_SKIPPED: Final = frozenset(
    {"kms.sock", "CHAINER", f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal"}
)


class BackupError(Exception):
    """A backup that cannot be made or restored; the message says why."""


def backup_key(*, key_file: Path | None, passphrase: str | None) -> tuple[int, bytes | str]:
    """The operator's key: 32 bytes from a file (raw, hex or base64), or a passphrase.

    Raises:
        BackupError: neither or both given, or the key file holds no 32-byte key.
    """
    if (key_file is None) == (passphrase is None):
        raise BackupError("give the backup key: --key-file FILE or --passphrase-env VAR")
    if passphrase is not None:
        return KDF_SCRYPT, passphrase
    assert key_file is not None
    try:
        raw = key_file.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read the key file {key_file}: {exc.strerror}") from None
    if len(raw) == 32:
        return KDF_KEY_FILE, raw
    text = raw.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            key = decode(text.decode("ascii"))
            if len(key) == 32:
                return KDF_KEY_FILE, key
    raise BackupError(f"{key_file} holds no 32-byte key (raw, hex or base64)")


def _derive(kdf: int, secret: bytes | str, salt: bytes) -> bytes:
    if kdf == KDF_SCRYPT:
        assert isinstance(secret, str)
        return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(secret.encode())
    assert isinstance(secret, bytes)
    return secret


class _Sealer(io.RawIOBase):
    """A write-only stream that seals what it is given, chunk by chunk, into ``out``."""

    def __init__(self, out: BinaryIO, kdf: int, secret: bytes | str) -> None:
        super().__init__()
        salt, prefix = os.urandom(16), os.urandom(4)
        self._header = MAGIC + _HEADER.pack(kdf, salt, prefix)
        self._aead = AESGCM(_derive(kdf, secret, salt))
        self._prefix = prefix
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        nonce = self._prefix + struct.pack(">Q", self._index)
        sealed = self._aead.encrypt(nonce, chunk, self._header + (b"\1" if last else b"\0"))
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1

    def finish(self) -> None:
        """Seal what is left as the last chunk."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()


def _open_chunks(data: BinaryIO, secret: bytes | str) -> Iterator[bytes]:
    """The plaintext chunks of a backup, each checked; the last must be there.

    Raises:
        BackupError: not a backup, the wrong key, or altered or truncated.
    """
    header = data.read(len(MAGIC) + _HEADER.size)
    if not header.startswith(MAGIC) or len(header) != len(MAGIC) + _HEADER.size:
        raise BackupError("not a kmscore backup")
    kdf, salt, prefix = _HEADER.unpack(header[len(MAGIC) :])
    if kdf not in (KDF_KEY_FILE, KDF_SCRYPT):
        raise BackupError("not a kmscore backup (unknown key derivation)")
    wanted = "a passphrase" if kdf == KDF_SCRYPT else "a key file"
    if (kdf == KDF_SCRYPT) != isinstance(secret, str):
        raise BackupError(f"this backup was made with {wanted}")
    aead = AESGCM(_derive(kdf, secret, salt))
    index = 0
    while True:
        head = data.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            raise BackupError("the backup is truncated (its last chunk is missing)")
        (length,) = _LENGTH.unpack(head)
        if not _TAG <= length <= CHUNK + _TAG:
            raise BackupError(f"the backup is damaged (chunk {index})")
        sealed = data.read(length)
        nonce = prefix + struct.pack(">Q", index)
        for last in (False, True):
            try:
                chunk = aead.decrypt(nonce, sealed, header + (b"\1" if last else b"\0"))
            except InvalidTag:
                continue
            yield chunk
            if last:
                if data.read(1):
                    raise BackupError("the backup has data after its last chunk")
                return
            break
        else:
            if index == 0:
                raise BackupError(f"the backup does not open with this key (made with {wanted})")
            raise BackupError(f"the backup is damaged (chunk {index} does not authenticate)")
        index += 1


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (made if missing, 0600)."""
    try:
        fd = open_private_file(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        ensure_private_dir(path.parent)
        try:
            fd = create_private_file(path, os.O_RDWR | os.O_CLOEXEC)
        except FileExistsError:
            fd = open_private_file(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _journal_copy(data: bytes) -> bytes:
    """A journal read while its writer appends, with its count made the entries it holds.

    The header is read before the entries, and a writer stores the count
    once per call, after all the entries of the call; so the count read may
    be short of the entries copied, or of the chained cursor a drainer left.
    The copy's count is the number of entries walked by their commit words.
    """
    copy = bytearray(data)
    offset, entries = HEADER_BYTES, 0
    while offset + ENTRY_HEAD <= len(copy):
        (length,) = struct.unpack_from("<I", copy, offset)
        end = offset + ENTRY_HEAD + length
        if length == 0 or end > len(copy):
            break
        offset = (end + 7) & ~7
        entries += 1
    if len(copy) >= HEADER_BYTES:
        struct.pack_into("<Q", copy, _COUNT_AT, entries)
    return bytes(copy)


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> None:
    """Add what ``path`` holds now (a file being appended: up to where it is read)."""
    with open(path, "rb") as f:
        data = f.read()
    if name.startswith("audit/journal/") and name.endswith(SUFFIX):
        data = _journal_copy(data)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(path.stat().st_mtime)
    tar.addfile(info, io.BytesIO(data))


def backup(data_dir: Path, dest: Path, *, kdf: int, secret: bytes | str) -> list[str]:
    """Write a consistent, encrypted snapshot of ``data_dir`` to ``dest`` (made new, 0600).

    Returns:
        The names of what was copied.

    Raises:
        BackupError: not a data dir, or ``dest`` exists or cannot be written
            (then nothing is left at ``dest``).
    """
    if not (data_dir / DB_FILE).exists() and not (data_dir / "store.url").exists():
        raise BackupError(f"no kmscore data dir at {data_dir}")
    try:
        fd = create_private_file(dest)
    except FileExistsError:
        raise BackupError(f"{dest} exists; a backup never overwrites") from None
    except OSError as exc:
        raise BackupError(f"cannot create {dest}: {exc.strerror}") from None
    names: list[str] = []
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryDirectory(prefix="kms-backup-") as tmp:
            sealer = _Sealer(out, kdf, secret)
            with tarfile.open(fileobj=sealer, mode="w|") as tar:
                _snapshot(data_dir, tar, Path(tmp), names)
            sealer.finish()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    return names


def _snapshot(data_dir: Path, tar: tarfile.TarFile, tmp: Path, names: list[str]) -> None:
    audit = data_dir / "audit"
    journals = journal_dir(data_dir)
    # The drainers' lock, then the trail's, in the order a drainer takes them.
    with _locked(journals / DRAIN_LOCK), _locked(audit / "LOCK"):
        if (data_dir / DB_FILE).exists():
            copy = tmp / DB_FILE
            source = sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True)
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            _add_file(tar, copy, DB_FILE)
            names.append(DB_FILE)
        # After the store's snapshot: every change in it has its entry in these.
        for path in sorted(journals.iterdir()):
            if path.is_file() and path.name not in _SKIPPED:
                _add_file(tar, path, f"audit/journal/{path.name}")
                names.append(f"audit/journal/{path.name}")
        for path in sorted(audit.iterdir()):
            if path.is_file() and path.name not in _SKIPPED:
                _add_file(tar, path, f"audit/{path.name}")
                names.append(f"audit/{path.name}")
    # The settings and keys: every other file at the top (root key, audit
    # signing key, credentials, the saved store URL and audit settings).
    for path in sorted(data_dir.iterdir()):
        if path.is_file() and path.name != DB_FILE and path.name not in _SKIPPED:
            _add_file(tar, path, path.name)
            names.append(path.name)


def restore(source: Path, data_dir: Path, *, secret: bytes | str) -> list[str]:
    """Restore a backup into a new data dir (absent or empty), all or nothing.

    The whole file is opened and authenticated before anything is put in
    ``data_dir``.

    Returns:
        The names of what was restored.

    Raises:
        BackupError: ``data_dir`` has files, or the backup does not open.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty; restore into a new data dir")
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from None
    parent = data_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    with handle, tempfile.TemporaryDirectory(prefix=".kms-restore-", dir=parent) as tmp:
        plain = Path(tmp) / "backup.tar"
        with open(create_private_file(plain), "wb") as out:
            for chunk in _open_chunks(handle, secret):
                out.write(chunk)
        staged = Path(tmp) / "data"
        ensure_private_dir(staged)
        names = _extract(plain, staged)
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(staged, data_dir)
    return names


def _extract(archive: Path, into: Path) -> list[str]:
    names: list[str] = []
    with tarfile.open(archive, mode="r:") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts:
                raise BackupError(f"the backup holds an unexpected entry {member.name!r}")
            target = into.joinpath(*parts)
            ensure_private_dir(target.parent)
            extracted = tar.extractfile(member)
            assert extracted is not None
            with open(create_private_file(target), "wb") as out:
                shutil.copyfileobj(extracted, out)
            names.append(member.name)
    return names
