"""Sealing key material to another deployment, and its peer identity.

Key material crosses between peered deployments only sealed to the
destination's X25519 transport key, by an ECIES built from ``cryptography``'s
primitives (the shape of HPKE's base mode, RFC 9180, with its DHKEM/HKDF/AEAD
choices X25519, HKDF-SHA256 and AES-256-GCM):

    eph = fresh X25519 key pair
    shared = X25519(eph, recipient)
    key = HKDF-SHA256(shared, salt=None, info=LABEL || eph_pub || recipient_pub)
    sealed = eph_pub (32) || nonce (12) || AES-256-GCM(key, nonce, material, aad)

Only the holder of the recipient's private key opens it; the transport (HTTP,
a proxy) sees only ciphertext. The ``aad`` binds the sealed material to what
it is for (the destination key's ARN and the material version), so it cannot
be replayed as another key's material.

A deployment's :class:`PeerIdentity` is an Ed25519 signing key (which
authenticates every peering message and answer) and the X25519 transport key.
Their private halves are kept wrapped under the root key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kmscore.errors import InvalidCiphertextException

__all__ = ["PeerIdentity", "PublicIdentity", "open_sealed", "seal", "verify_signature"]

_LABEL: Final = b"kmscore peer seal v1"
_RAW: Final = serialization.Encoding.Raw
_RAW_PUBLIC: Final = serialization.PublicFormat.Raw
_RAW_PRIVATE: Final = serialization.PrivateFormat.Raw
_NO_ENCRYPTION: Final = serialization.NoEncryption()


def _raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, _RAW_PUBLIC)


def _derive(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL + eph_pub + recipient_pub
    )
    return hkdf.derive(shared)


def seal(recipient_pub: bytes, material: bytes, aad: bytes) -> bytes:
    """Seal ``material`` to the X25519 public key ``recipient_pub`` (32 raw bytes)."""
    eph = X25519PrivateKey.generate()
    eph_pub = _raw_public(eph.public_key())
    key = _derive(
        eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub)), eph_pub, recipient_pub
    )
    nonce = os.urandom(12)
    return eph_pub + nonce + AESGCM(key).encrypt(nonce, material, aad)


def open_sealed(private: X25519PrivateKey, sealed: bytes, aad: bytes) -> bytes:
    """Open what :func:`seal` made for ``private``'s public key.

    Raises:
        InvalidCiphertextException: not sealed to this key, altered, or for another ``aad``.
    """
    if len(sealed) < 32 + 12 + 16:
        raise InvalidCiphertextException()
    eph_pub, nonce, body = sealed[:32], sealed[32:44], sealed[44:]
    mine = _raw_public(private.public_key())
    try:
        key = _derive(private.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, mine)
        return AESGCM(key).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError):
        raise InvalidCiphertextException() from None


def verify_signature(identity_pub: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``data`` by ``identity_pub``."""
    try:
        Ed25519PublicKey.from_public_bytes(identity_pub).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What a deployment shows its peers: its id, signing key and transport key."""

    deployment_id: str
    identity_pub: bytes
    transport_pub: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of both public keys, hex: what operators compare before peering."""
        return hashlib.sha256(
            self.deployment_id.encode() + b"\0" + self.identity_pub + self.transport_pub
        ).hexdigest()

    def to_json(self) -> dict[str, str]:
        """The identity as JSON members (base64 keys)."""
        return {
            "DeploymentId": self.deployment_id,
            "IdentityKey": base64.b64encode(self.identity_pub).decode(),
            "TransportKey": base64.b64encode(self.transport_pub).decode(),
            "Fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> PublicIdentity:
        """Parse :meth:`to_json`'s members.

        Raises:
            ValueError: a member is missing or malformed.
        """
        try:
            found = cls(
                str(data["DeploymentId"]),
                base64.b64decode(data["IdentityKey"], validate=True),
                base64.b64decode(data["TransportKey"], validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a peer identity: {exc}") from None
        if len(found.identity_pub) != 32 or len(found.transport_pub) != 32:
            raise ValueError("not a peer identity: keys must be 32 bytes")
        return found


class PeerIdentity:
    """A deployment's private peering keys (never shown, never logged)."""

    def __init__(self, deployment_id: str, signing: bytes, transport: bytes) -> None:
        """Load the raw 32-byte private keys."""
        self._signing = Ed25519PrivateKey.from_private_bytes(signing)
        self._transport = X25519PrivateKey.from_private_bytes(transport)
        self.public = PublicIdentity(
            deployment_id,
            _raw_public(self._signing.public_key()),
            _raw_public(self._transport.public_key()),
        )

    def __repr__(self) -> str:
        return f"PeerIdentity({self.public.deployment_id!r})"

    @staticmethod
    def generate() -> tuple[bytes, bytes]:
        """Fresh raw private keys (signing, transport)."""
        return (
            Ed25519PrivateKey.generate().private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION),
            X25519PrivateKey.generate().private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION),
        )

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self._signing.sign(data)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Open material sealed to this deployment (see :func:`open_sealed`).

        Raises:
            InvalidCiphertextException: as :func:`open_sealed`.
        """
        return open_sealed(self._transport, sealed, aad)
