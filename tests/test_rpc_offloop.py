"""Where the daemon runs a request: RSA private-key work never on the event loop."""

from __future__ import annotations

import pytest

from kmscore.frontends.rpc.protocol import parse_request


def _weight(method: str, params: dict[str, object]) -> int:
    request = parse_request([0, 1, method, params], 100)
    assert request.error is None
    return request.weight


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
        ("Decrypt", {"CiphertextBlob": b"x", "KeyId": "k",
                     "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
        ("ReEncrypt", {"CiphertextBlob": b"x", "DestinationKeyId": "k",
                       "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
        ("ReEncrypt", {"CiphertextBlob": b"x", "DestinationKeyId": "k",
                       "DestinationEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
        ("Sign", {"KeyId": "k", "Message": b"x", "SigningAlgorithm": "ECDSA_SHA_256"}),
    ],
)  # fmt: skip
def test_asymmetric_work_goes_to_a_worker(method: str, params: dict[str, object]) -> None:
    assert _weight(method, params) > 0


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("Encrypt", {"KeyId": "k", "Plaintext": b"x"}),
        ("Encrypt", {"KeyId": "k", "Plaintext": b"x", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ("Decrypt", {"CiphertextBlob": b"x"}),
        ("GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_256"}),
    ],
)
def test_symmetric_data_plane_stays_on_the_loop(method: str, params: dict[str, object]) -> None:
    assert _weight(method, params) == 0
