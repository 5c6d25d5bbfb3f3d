"""Wrapping key material for ImportKeyMaterial, as a customer would.

Two independent wrappers: the ``cryptography`` library, and the openssl CLI
with the commands of AWS's developer guide ("Encrypt key material"). Neither
uses kmscore's own unwrapping code.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    return hashes.SHA256() if algorithm.endswith("SHA_256") else hashes.SHA1()


def wrap(public_der: bytes, algorithm: str, material: bytes) -> bytes:
    """Wrap ``material`` under a wrapping public key with ``cryptography``."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    h = _hash(algorithm)
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def wrap_with_openssl(public_der: bytes, algorithm: str, material: bytes, work: Path) -> bytes:
    """Wrap ``material`` with the openssl CLI, as AWS's developer guide does it."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "WrappingPublicKey.bin").write_bytes(public_der)
    (work / "PlaintextKeyMaterial.bin").write_bytes(material)
    md = "sha256" if algorithm.endswith("SHA_256") else "sha1"

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)

    def pkeyutl(src: str, dst: str) -> None:
        run(
            "pkeyutl", "-encrypt", "-in", src, "-out", dst,
            "-inkey", "WrappingPublicKey.bin", "-keyform", "DER", "-pubin",
            "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
        )  # fmt: skip

    if algorithm.startswith("RSAES_OAEP"):
        pkeyutl("PlaintextKeyMaterial.bin", "EncryptedKeyMaterial.bin")
        return (work / "EncryptedKeyMaterial.bin").read_bytes()
    run("rand", "-out", "aes-key.bin", "32")
    aes_hex = (work / "aes-key.bin").read_bytes().hex()
    run(
        "enc", "-id-aes256-wrap-pad", "-K", aes_hex, "-iv", "A65959A6",
        "-in", "PlaintextKeyMaterial.bin", "-out", "key-material-wrapped.bin",
    )  # fmt: skip
    pkeyutl("aes-key.bin", "aes-key-wrapped.bin")
    return (work / "aes-key-wrapped.bin").read_bytes() + (
        work / "key-material-wrapped.bin"
    ).read_bytes()


def import_material(
    kms: Any,
    key_id: str,
    material: bytes,
    *,
    algorithm: str = "RSAES_OAEP_SHA_256",
    spec: str = "RSA_2048",
    **request: Any,
) -> dict[str, Any]:
    """The whole flow: parameters, wrap, import (no expiry unless asked)."""
    params = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec
    )
    if "ValidTo" not in request:
        request.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return kms.import_key_material(
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material),
        **request,
    )
