"""``kms import``: bring your own key material in one command.

It runs the whole flow of AWS's developer guide for a person: asks the KMS
for a wrapping public key and import token (GetParametersForImport), wraps
the material from FILE on this machine with them, and sends it
(ImportKeyMaterial). FILE holds what the key's spec takes: 32 raw bytes for a
symmetric key, the raw key for an HMAC key, a PKCS#8 private key (DER or PEM)
for an asymmetric key. The plaintext material never leaves this process
unwrapped, and is never printed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from ._common import key_command, show
from .session import kms_client

__all__ = ["register", "wrap_key_material"]

_ALGORITHMS = (
    "RSA_AES_KEY_WRAP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSAES_OAEP_SHA_1",
)


def wrap_key_material(public_der: bytes, algorithm: str, material: bytes) -> bytes:
    """Wrap material for ImportKeyMaterial under a wrapping public key.

    Raises:
        click.ClickException: the public key is not RSA, or the material is
            too long for an RSAES_OAEP algorithm (use RSA_AES_KEY_WRAP).
    """
    public = serialization.load_der_public_key(public_der)
    if not isinstance(public, rsa.RSAPublicKey):
        raise click.ClickException("The wrapping public key is not an RSA key.")
    digest: hashes.HashAlgorithm = (
        hashes.SHA256() if algorithm.endswith("SHA_256") else hashes.SHA1()  # noqa: S303
    )
    oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
    try:
        if algorithm.startswith("RSAES_OAEP"):
            return public.encrypt(material, oaep)
        aes_key = os.urandom(32)
        return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)
    except ValueError:
        raise click.ClickException(
            f"The key material is too long for {algorithm}; use an RSA_AES_KEY_WRAP algorithm."
        ) from None


def _material(path: Path) -> bytes:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise click.BadParameter(
                "a PEM file that is not a private key", param_hint="FILE"
            ) from None
        return key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return data


@click.command("import")
@click.argument("key")
@click.argument(
    "material_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--wrapping-algorithm",
    type=click.Choice(_ALGORITHMS),
    default=_ALGORITHMS[0],
    show_default=True,
)
@click.option(
    "--wrapping-key-spec",
    type=click.Choice(["RSA_4096", "RSA_3072", "RSA_2048"]),
    default="RSA_4096",
    show_default=True,
)
@click.option(
    "--valid-days",
    type=click.IntRange(1, 365),
    default=None,
    help="The material expires after this many days [default: never].",
)
@click.option(
    "--new",
    "new_material",
    is_flag=True,
    help="New material for on-demand rotation (ImportType NEW_KEY_MATERIAL).",
)
@click.option("--description", default=None, help="KeyMaterialDescription (symmetric keys).")
@key_command
def import_material(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    material_file: Path,
    wrapping_algorithm: str,
    wrapping_key_spec: str,
    valid_days: int | None,
    new_material: bool,
    description: str | None,
) -> None:
    """Import key material from FILE into KEY (a key created with --origin EXTERNAL)."""
    material = _material(material_file)
    request: dict[str, Any] = {}
    if valid_days is None:
        request["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE"
    else:
        request["ExpirationModel"] = "KEY_MATERIAL_EXPIRES"
        request["ValidTo"] = datetime.now(UTC).replace(microsecond=0) + timedelta(days=valid_days)
    if new_material:
        request["ImportType"] = "NEW_KEY_MATERIAL"
    if description is not None:
        request["KeyMaterialDescription"] = description
    with kms_client(data_dir, socket_path) as kms:
        params = kms.get_parameters_for_import(
            KeyId=key, WrappingAlgorithm=wrapping_algorithm, WrappingKeySpec=wrapping_key_spec
        )
        wrapped = wrap_key_material(params["PublicKey"], wrapping_algorithm, material)
        del material
        response = kms.import_key_material(
            KeyId=key,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrapped,
            **request,
        )
        md = kms.describe_key(KeyId=key)["KeyMetadata"]
    show(
        response,
        as_json,
        [
            ("KeyId", response["KeyId"]),
            ("KeyMaterialId", response["KeyMaterialId"]),
            ("KeyState", md.get("KeyState")),
            ("ValidTo", md.get("ValidTo")),
        ],
    )


@click.command("delete-imported-material")
@click.argument("key")
@click.option("--key-material-id", default=None, help="[default: the current material]")
@key_command
def delete_imported_material(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    key_material_id: str | None,
) -> None:
    """Delete KEY's imported material; the key waits for it again (PendingImport)."""
    request: dict[str, Any] = {"KeyId": key}
    if key_material_id is not None:
        request["KeyMaterialId"] = key_material_id
    with kms_client(data_dir, socket_path) as kms:
        response = kms.delete_imported_key_material(**request)
    show(
        response,
        as_json,
        [("KeyId", response["KeyId"]), ("KeyMaterialId", response.get("KeyMaterialId"))],
    )


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    group.add_command(import_material)
    group.add_command(delete_imported_material)
