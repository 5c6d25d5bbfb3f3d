"""HMAC (RFC 2104) for HMAC KMS keys: ``GenerateMac`` and ``VerifyMac``.

Each HMAC key spec allows exactly one MAC algorithm (HMAC_256 with
HMAC_SHA_256, and so on); another algorithm is ``InvalidKeyUsageException``.
MACs are never truncated: ``VerifyMac`` with a shorter or longer MAC fails.
Verification compares in constant time (``cryptography``'s ``HMAC.verify``).
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

from kmscore.crypto.asymmetric._common import check_message_length, require_algorithm
from kmscore.crypto.asymmetric.material import LoadedKey
from kmscore.model.keyspecs import MacAlgorithm, parse_enum

__all__ = ["MAC_HASHES", "generate_mac", "verify_mac"]

MAC_HASHES: Final[dict[MacAlgorithm, type[hashes.HashAlgorithm]]] = {
    MacAlgorithm.HMAC_SHA_224: hashes.SHA224,
    MacAlgorithm.HMAC_SHA_256: hashes.SHA256,
    MacAlgorithm.HMAC_SHA_384: hashes.SHA384,
    MacAlgorithm.HMAC_SHA_512: hashes.SHA512,
}


def _context(key: LoadedKey, mac_algorithm: str, message: bytes) -> _hmac.HMAC:
    algorithm = parse_enum(MacAlgorithm, mac_algorithm, "macAlgorithm")
    require_algorithm(key.key_spec, key.info.mac_algorithms, algorithm)
    check_message_length(message)
    context = _hmac.HMAC(key.hmac_secret(), MAC_HASHES[algorithm]())
    context.update(message)
    return context


def generate_mac(key: LoadedKey, mac_algorithm: str, message: bytes) -> bytes:
    """Compute the HMAC of a message, as ``GenerateMac`` does.

    Args:
        key: An HMAC key.
        mac_algorithm: The key spec's MAC algorithm, e.g. HMAC_SHA_256.
        message: Up to 4096 bytes.

    Returns:
        The full-length HMAC tag.

    Raises:
        ValidationException: Unknown algorithm, or a message over 4096 bytes.
        InvalidKeyUsageException: The algorithm does not fit the key spec.
    """
    return _context(key, mac_algorithm, message).finalize()


def verify_mac(key: LoadedKey, mac_algorithm: str, message: bytes, mac: bytes) -> bool:
    """Check an HMAC in constant time, as ``VerifyMac`` does.

    Args:
        key: An HMAC key.
        mac_algorithm: The key spec's MAC algorithm.
        message: Up to 4096 bytes.
        mac: The tag to check; any bytes.

    Returns:
        True when ``mac`` is exactly the HMAC of ``message``; the service raises
        ``KMSInvalidMacException`` on False.

    Raises:
        ValidationException: Unknown algorithm, or a message over 4096 bytes.
        InvalidKeyUsageException: The algorithm does not fit the key spec.
    """
    context = _context(key, mac_algorithm, message)
    try:
        context.verify(bytes(mac))
    except InvalidSignature:
        return False
    return True
