"""Asymmetric and HMAC operations through the socket daemon (issue 8).

The same requests as in-process, over msgpack-RPC to a real daemon process:
results, blobs and AWS error codes come through unchanged, and an RSA_4096 key
being made does not hold up the daemon's other callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from test_rpc_support import DaemonProcess, running_daemon

import kmscore
from kmscore import errors
from kmscore.client.remote import RemoteKMS


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("rpc-asym") / "data") as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[RemoteKMS]:
    remote = kmscore.connect(daemon.socket)
    try:
        yield remote
    finally:
        remote.close()


def test_sign_verify_mac_and_rsa_over_the_socket(client: RemoteKMS) -> None:
    ed = client.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")
    ed_id = ed["KeyMetadata"]["KeyId"]
    assert ed["KeyMetadata"]["SigningAlgorithms"] == ["ED25519_SHA_512", "ED25519_PH_SHA_512"]
    sig = client.sign(KeyId=ed_id, Message=b"m", SigningAlgorithm="ED25519_SHA_512")["Signature"]
    public = serialization.load_der_public_key(client.get_public_key(KeyId=ed_id)["PublicKey"])
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(sig, b"m")
    out = client.verify(
        KeyId=ed_id, Message=b"m", Signature=sig, SigningAlgorithm="ED25519_SHA_512"
    )
    assert out["SignatureValid"] is True
    with pytest.raises(errors.KMSInvalidSignatureException):
        client.verify(KeyId=ed_id, Message=b"n", Signature=sig, SigningAlgorithm="ED25519_SHA_512")
    with pytest.raises(errors.InvalidKeyUsageException):
        client.sign(KeyId=ed_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")

    mac_id = client.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]
    mac = client.generate_mac(KeyId=mac_id, Message=b"m", MacAlgorithm="HMAC_SHA_512")["Mac"]
    assert len(mac) == 64
    with pytest.raises(errors.KMSInvalidMacException):
        client.verify_mac(KeyId=mac_id, Message=b"n", Mac=mac, MacAlgorithm="HMAC_SHA_512")

    rsa_id = client.create_key(KeySpec="RSA_2048")["KeyMetadata"]["KeyId"]
    rsa_public = serialization.load_der_public_key(client.get_public_key(KeyId=rsa_id)["PublicKey"])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ct = rsa_public.encrypt(b"offline", oaep)  # type: ignore[union-attr,call-arg]
    got = client.decrypt(KeyId=rsa_id, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert got["Plaintext"] == b"offline"

    agree = client.create_key(KeySpec="ECC_NIST_P521", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    peer = ec.generate_private_key(ec.SECP521R1())
    peer_der = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = client.derive_shared_secret(
        KeyId=agree["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer_der
    )["SharedSecret"]
    kms_public = serialization.load_der_public_key(
        client.get_public_key(KeyId=agree["KeyId"])["PublicKey"]
    )
    assert secret == peer.exchange(ec.ECDH(), kms_public)  # type: ignore[arg-type]


def test_rsa_4096_creation_does_not_stall_the_daemon(daemon: DaemonProcess) -> None:
    slow = kmscore.connect(daemon.socket)
    fast = kmscore.connect(daemon.socket)
    try:
        key = fast.create_key()["KeyMetadata"]["KeyId"]
        made: list[str] = []
        worker = threading.Thread(
            target=lambda: made.append(
                slow.create_key(KeySpec="RSA_4096", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"][
                    "KeyId"
                ]
            )
        )
        worst = 0.0
        worker.start()
        calls = 0
        while worker.is_alive():
            start = time.perf_counter()
            fast.describe_key(KeyId=key)
            fast.encrypt(KeyId=key, Plaintext=b"x")
            worst = max(worst, time.perf_counter() - start)
            calls += 1
        worker.join()
        assert made and calls > 0
        assert worst < 0.25, f"a call waited {worst:.3f} s while an RSA_4096 key was made"
    finally:
        slow.close()
        fast.close()
