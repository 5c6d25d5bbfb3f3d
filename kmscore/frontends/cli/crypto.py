"""``kms encrypt``, ``kms decrypt`` and ``kms generate-data-key``."""

from __future__ import annotations

import base64
import binascii
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click

from ._common import key_command, parse_pairs, show
from .session import kms_client

__all__ = ["register"]

_context = click.option("--context", "context", multiple=True, help="Encryption context KEY=VALUE.")


def _read(source: Path | None) -> bytes:
    stream: BinaryIO = sys.stdin.buffer if source is None else source.open("rb")
    try:
        return stream.read()
    finally:
        if source is not None:
            stream.close()


def _write(data: bytes, target: Path | None, as_base64: bool) -> None:
    out = base64.b64encode(data) + b"\n" if as_base64 else data
    if target is None:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    else:
        target.write_bytes(out)


_in = click.option(
    "--in", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None, help="Read from this file [stdin].",
)  # fmt: skip
_out = click.option(
    "--out", "target", type=click.Path(dir_okay=False, path_type=Path),
    default=None, help="Write to this file [stdout].",
)  # fmt: skip


@click.command()
@click.argument("key")
@_context
@_in
@_out
@click.option("--base64", "as_base64", is_flag=True, help="Write the ciphertext as base64.")
@key_command
def encrypt(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    context: tuple[str, ...],
    source: Path | None,
    target: Path | None,
    as_base64: bool,
) -> None:
    """Encrypt stdin (at most 4096 bytes) under KEY; the ciphertext blob goes to stdout."""
    request: dict[str, Any] = {"KeyId": key, "Plaintext": _read(source)}
    if context:
        request["EncryptionContext"] = parse_pairs(context)
    with kms_client(data_dir, socket_path) as kms:
        response = kms.encrypt(**request)
    if as_json:
        show(response, True)
    else:
        _write(response["CiphertextBlob"], target, as_base64)


@click.command()
@click.option("--key", default=None, help="Require this key (id, ARN or alias).")
@_context
@_in
@_out
@click.option("--base64", "as_base64", is_flag=True, help="The ciphertext input is base64.")
@key_command
def decrypt(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str | None,
    context: tuple[str, ...],
    source: Path | None,
    target: Path | None,
    as_base64: bool,
) -> None:
    """Decrypt a ciphertext blob from stdin; the plaintext goes to stdout."""
    data = _read(source)
    if as_base64:
        try:
            # Line breaks anywhere: `base64` and MIME wrap at 76 columns.
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise click.BadParameter("the input is not valid base64", param_hint="stdin") from None
    request: dict[str, Any] = {"CiphertextBlob": data}
    if key is not None:
        request["KeyId"] = key
    if context:
        request["EncryptionContext"] = parse_pairs(context)
    with kms_client(data_dir, socket_path) as kms:
        response = kms.decrypt(**request)
    if as_json:
        show(response, True)
    else:
        _write(response["Plaintext"], target, False)


@click.command("generate-data-key")
@click.argument("key")
@click.option("--key-spec", default=None, help="AES_256 (default) or AES_128.")
@click.option("--bytes", "number_of_bytes", type=int, default=None, help="1-1024 bytes instead.")
@click.option("--without-plaintext", is_flag=True, help="Only the encrypted data key.")
@_context
@key_command
def generate_data_key(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    key: str,
    key_spec: str | None,
    number_of_bytes: int | None,
    without_plaintext: bool,
    context: tuple[str, ...],
) -> None:
    """Make a data key under KEY: plaintext and ciphertext blob, base64."""
    request: dict[str, Any] = {"KeyId": key}
    if number_of_bytes is not None:
        request["NumberOfBytes"] = number_of_bytes
    else:
        request["KeySpec"] = key_spec or "AES_256"
    if context:
        request["EncryptionContext"] = parse_pairs(context)
    with kms_client(data_dir, socket_path) as kms:
        if without_plaintext:
            response = kms.generate_data_key_without_plaintext(**request)
        else:
            response = kms.generate_data_key(**request)
    rows = [("KeyId", response["KeyId"])]
    if "Plaintext" in response:
        rows.append(("Plaintext", base64.b64encode(response["Plaintext"]).decode()))
    rows.append(("CiphertextBlob", base64.b64encode(response["CiphertextBlob"]).decode()))
    show(response, as_json, rows)


def register(group: click.Group) -> None:
    """Add these commands to the ``kms`` group."""
    for command in (encrypt, decrypt, generate_data_key):
        group.add_command(command)
