"""The root of trust: the key that wraps all key material at rest.

The root key comes from a 0600 file made at init (``root.key`` in the data
dir: 32 random bytes) or from a passphrase stretched with Argon2id (PyNaCl's
``pwhash``), whose salt and cost are kept in the store. Key material is sealed
under it with AES-256-GCM; the AAD binds each wrapped material to its key ARN
and version, so wrapped material cannot be moved to another key.

A check value (a known label sealed under the root key) is kept in the store,
so a wrong passphrase or a wrong root key file fails clearly at open, never
later as garbage.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kmscore import engine
from kmscore.errors import InvalidCiphertextException, KMSInternalException
from kmscore.fsutil import UnsafeFileError, open_private_file, write_private_file

__all__ = ["ROOT_KEY_FILE", "Argon2Params", "RootKey", "RootKeyError"]

ROOT_KEY_FILE: Final = "root.key"
_CHECK_AAD: Final = b"kmscore/root-key-check/v1"
_CHECK_LABEL: Final = b"kmscore root key check value"
_MATERIAL_AAD: Final = b"kmscore/key-material/v1\x00"
_DIGEST_LABEL: Final = b"kmscore/keyed-digest/v1"


class RootKeyError(KMSInternalException):
    """The root key cannot be had: missing, unreadable, wrong, or too open."""


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost and salt for a passphrase-derived root key."""

    salt: bytes
    opslimit: int
    memlimit: int

    @classmethod
    def new(cls, *, interactive: bool = False) -> Argon2Params:
        """Fresh parameters: MODERATE cost (about 1 s here) unless ``interactive``."""
        from nacl.pwhash import argon2id

        if interactive:
            ops, mem = argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE
        else:
            ops, mem = argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE
        return cls(os.urandom(argon2id.SALTBYTES), ops, mem)


class RootKey:
    """Wraps and unwraps key material. Never shows its own bytes."""

    __slots__ = ("_aead", "_digest_key")

    def __init__(self, key: bytes) -> None:
        """Use 32 raw bytes as the root key.

        Raises:
            RootKeyError: the key is not 32 bytes.
        """
        if len(key) != engine.KEY_LENGTH:
            raise RootKeyError("The root key must be 32 bytes.")
        self._aead = engine.AesGcmKey(key)
        # A separate key for keyed digests, so no digest is ever made under
        # the AES key itself.
        self._digest_key = hmac.digest(key, _DIGEST_LABEL, "sha256")

    def __repr__(self) -> str:
        return "<RootKey>"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("RootKey cannot be pickled")

    # --- making and loading ------------------------------------------------

    @classmethod
    def create_file(cls, path: Path) -> RootKey:
        """Make a new random root key in a new 0600 file.

        Raises:
            FileExistsError: the file exists already.
        """
        key = os.urandom(engine.KEY_LENGTH)
        write_private_file(path, key)
        return cls(key)

    @classmethod
    def load_file(cls, path: Path) -> RootKey:
        """Load the root key file made by :meth:`create_file`.

        Raises:
            RootKeyError: the file is missing, not a regular file of this user,
                readable by others, or not 32 bytes.
        """
        try:
            fd = open_private_file(path)
        except FileNotFoundError:
            raise RootKeyError(f"The root key file {path} does not exist.") from None
        except UnsafeFileError as exc:
            raise RootKeyError(f"The root key file {path} {exc.reason}.") from None
        except OSError as exc:
            raise RootKeyError(
                f"The root key file {path} cannot be opened: {exc.strerror}."
            ) from None
        try:
            data = os.read(fd, engine.KEY_LENGTH + 1)
        finally:
            os.close(fd)
        if len(data) != engine.KEY_LENGTH:
            raise RootKeyError(f"The root key file {path} is damaged (not 32 bytes).")
        return cls(data)

    @classmethod
    def from_passphrase(cls, passphrase: bytes, params: Argon2Params) -> RootKey:
        """Stretch a passphrase with Argon2id into the root key.

        Raises:
            RootKeyError: the passphrase is empty.
        """
        from nacl.pwhash import argon2id

        if not passphrase:
            raise RootKeyError("The passphrase must not be empty.")
        key = argon2id.kdf(
            engine.KEY_LENGTH,
            passphrase,
            params.salt,
            opslimit=params.opslimit,
            memlimit=params.memlimit,
        )
        return cls(key)

    # --- check value -------------------------------------------------------

    def check_value(self) -> bytes:
        """A value that proves, later, that the same root key is in use."""
        iv = os.urandom(engine.IV_LENGTH)
        return iv + self._aead.seal(iv, _CHECK_LABEL, _CHECK_AAD)

    def verify_check_value(self, value: bytes) -> None:
        """Confirm this is the root key that made ``value``.

        Raises:
            RootKeyError: it is not (wrong passphrase or wrong key file).
        """
        try:
            label = self._aead.open(
                value[: engine.IV_LENGTH], value[engine.IV_LENGTH :], _CHECK_AAD
            )
        except InvalidCiphertextException:
            label = b""
        if not engine.constant_time_equals(label, _CHECK_LABEL):
            raise RootKeyError(
                "The root key does not match this data directory "
                "(wrong passphrase or wrong root key file)."
            )

    # --- keyed digests -----------------------------------------------------

    def digest(self, purpose: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under a key derived from the root key.

        For identifiers that must recognise a secret without storing it (the
        KeyMaterialId of imported material). ``purpose`` separates uses.
        """
        return hmac.digest(self._digest_key, purpose + b"\x00" + data, "sha256")

    # --- wrapping ----------------------------------------------------------

    def wrap_secret(self, secret: bytes, aad: bytes) -> bytes:
        """Seal any other secret (an access key's) for storage, bound to ``aad``."""
        iv = os.urandom(engine.IV_LENGTH)
        return iv + self._aead.seal(iv, secret, aad)

    def unwrap_secret(self, wrapped: bytes, aad: bytes) -> bytes:
        """Open a secret sealed by :meth:`wrap_secret`.

        Raises:
            KMSInternalException: it does not authenticate (damaged store).
        """
        try:
            return self._aead.open(wrapped[: engine.IV_LENGTH], wrapped[engine.IV_LENGTH :], aad)
        except InvalidCiphertextException:
            raise KMSInternalException("A stored secret failed to authenticate.") from None

    @staticmethod
    def _aad(key_arn: str, version: int) -> bytes:
        return _MATERIAL_AAD + key_arn.encode() + b"\x00" + version.to_bytes(4, "big")

    def wrap(self, material: bytes, key_arn: str, version: int) -> bytes:
        """Seal key material for storage: IV || ciphertext || tag."""
        iv = os.urandom(engine.IV_LENGTH)
        return iv + self._aead.seal(iv, material, self._aad(key_arn, version))

    def unwrap(self, wrapped: bytes, key_arn: str, version: int) -> bytes:
        """Open stored key material.

        Raises:
            KMSInternalException: the stored material does not authenticate
                (damaged store, or material moved between keys).
        """
        try:
            return self._aead.open(
                wrapped[: engine.IV_LENGTH],
                wrapped[engine.IV_LENGTH :],
                self._aad(key_arn, version),
            )
        except InvalidCiphertextException:
            raise KMSInternalException(
                f"Stored key material for {key_arn} version {version} failed to authenticate."
            ) from None
