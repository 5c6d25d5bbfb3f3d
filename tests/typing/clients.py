"""Typing tests of the clients, checked by ``nox -s typecheck`` (mypy --strict).

Each ``# type: ignore[code]`` marks a line mypy must reject. The session runs
with ``--warn-unused-ignores``, so if a client's methods went back to ``Any``
(or a misspelt name became a method) the ignore would be unused and the
check would fail. The lines without an ignore must type-check as they are.
"""

from __future__ import annotations

from kmscore.client import AsyncRemoteKMS, LocalKMS, RemoteKMS


def in_process(kms: LocalKMS) -> bytes:
    out = kms.generate_data_key(KeyId="alias/app", KeySpec="AES_256")
    kms.encrypt(KeyId="alias/app", Plaintext=b"x", EncryptionContext={"tenant": "a"})
    kms.generate_data_keys(KeyId="alias/app", Count=10, KeySpec="AES_256")
    kms.call("Encrypt", KeyId="alias/app", Plaintext=b"x")  # the untyped escape hatch
    kms.generate_data_kye(KeyId="alias/app")  # type: ignore[attr-defined]
    kms.encrypt(KeyId="alias/app")  # type: ignore[call-arg]
    kms.encrypt(KeyId="k", Plaintext=b"x", EncryptionContex={})  # type: ignore[call-arg]
    kms.generate_data_key(KeyId="k", KeySpec="AES_512")  # type: ignore[arg-type]
    kms.generate_data_key(KeyId="k", NumberOfBytes="32")  # type: ignore[arg-type]
    kms.encrypt(KeyId="k", Plaintext="not bytes")  # type: ignore[arg-type]
    kms.create_grant(  # type: ignore[call-arg]
        KeyId="k", GranteePrincipal="arn:aws:iam::111122223333:user/a"
    )
    plaintext = out["Plaintext"]
    assert isinstance(plaintext, bytes)
    return plaintext


def over_the_socket(kms: RemoteKMS) -> None:
    kms.decrypt(CiphertextBlob=b"blob")
    kms.decrypt_many(CiphertextBlobs=[b"a", b"b"])
    kms.decrpyt(CiphertextBlob=b"blob")  # type: ignore[attr-defined]
    kms.decrypt(CiphertextBlob=b"blob", KeyID="k")  # type: ignore[call-arg]


async def from_asyncio(kms: AsyncRemoteKMS) -> None:
    await kms.generate_data_key(KeyId="alias/app", KeySpec="AES_256")
    await kms.generate_data_kye(KeyId="alias/app")  # type: ignore[attr-defined]
    await kms.sign(KeyId="k", Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_9")  # type: ignore[arg-type]
