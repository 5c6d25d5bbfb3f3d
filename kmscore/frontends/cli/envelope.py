"""``kms envelope encrypt|decrypt`` (also ``kms encrypt-file|decrypt-file``): any size.

Messages are in the AWS Encryption SDK format (see docs/envelope.md), so the
Encryption SDKs read what these commands write and the reverse. ``-`` is
stdin or stdout. A file output appears only when complete and verified: a
failed decrypt leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import click

from kmscore import envelope as E
from kmscore.envelope.api import atomic_output

from ._common import echo_json, key_command, parse_pairs
from .session import kms_client

__all__ = ["register"]

_SUITES = {"0578": E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384}
_SUITES["0478"] = E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY


def header_summary(header: E.Header) -> dict[str, Any]:
    """The header as JSON-ready fields (no key material)."""
    return {
        "Version": header.version,
        "AlgorithmSuiteId": f"0x{header.suite.suite_id:04X}",
        "AlgorithmSuite": header.suite.name,
        "MessageId": header.message_id.hex(),
        "FrameLength": header.frame_length,
        "EncryptionContext": header.encryption_context,
        "EncryptedDataKeys": [
            {
                "ProviderId": e.provider_id,
                "ProviderInfo": e.provider_info.decode("utf-8", "replace"),
                "CiphertextLength": len(e.ciphertext),
            }
            for e in header.encrypted_data_keys
        ],
    }


@contextlib.contextmanager
def _input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield f


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_output(Path(path)) as f:
        yield f


class _Counted(io.RawIOBase):
    """A binary input that reports how many bytes each read returned."""

    def __init__(self, src: BinaryIO, advance: Callable[[int], None]) -> None:
        self._src = src
        self._advance = advance

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        readinto = getattr(self._src, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._src.read(len(view)) or b""
            n = len(data)
            view[:n] = data
        if n:
            self._advance(n)
        return n


@contextlib.contextmanager
def _progress(src: BinaryIO, label: str) -> Iterator[BinaryIO]:
    """``src`` wrapped in a progress bar with throughput, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield src
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total: int | None = None
    with contextlib.suppress(OSError, ValueError):
        st = os.fstat(src.fileno())
        total = st.st_size if st.st_size > 0 else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield cast(BinaryIO, _Counted(src, lambda n: progress.update(task, advance=n)))


def _summary(header: E.Header, *, to_stderr: bool) -> None:
    if to_stderr:  # stdout carries the data
        click.echo(json.dumps(header_summary(header), indent=2), err=True)
    else:
        echo_json(header_summary(header))


_context = click.option(
    "--context", "context", multiple=True, help="Encryption context KEY=VALUE (repeatable)."
)


@click.command("encrypt")
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT")
@click.option("--key-id", "key_ids", multiple=True, required=True,
              help="KMS key (repeatable: the data key is wrapped under each).")  # fmt: skip
@_context
@click.option("--frame-size", type=click.IntRange(1, 2**31 - 1), default=E.DEFAULT_FRAME_LENGTH,
              show_default=True, help="Plaintext bytes per frame.")  # fmt: skip
@click.option("--suite", type=click.Choice(sorted(_SUITES)), default="0578", show_default=True,
              help="0578: with an ECDSA P-384 signature; 0478: without.")  # fmt: skip
@key_command
def encrypt_cmd(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    source: str,
    target: str,
    key_ids: tuple[str, ...],
    context: tuple[str, ...],
    frame_size: int,
    suite: str,
) -> None:
    """Encrypt IN to OUT ('-': stdin/stdout) under one or more KMS keys."""
    ctx = parse_pairs(context)
    with kms_client(data_dir, socket_path) as kms:
        ring = E.KmsKeyring(kms, list(key_ids))
        with _input(source) as raw, _progress(raw, "encrypt") as src, _output(target) as dst:
            length = None
            with contextlib.suppress(OSError, ValueError):
                st = os.fstat(raw.fileno())
                length = st.st_size if os.path.isfile(source) else None
            try:
                header = E.encrypt_stream(
                    src, dst, ring, encryption_context=ctx, suite=_SUITES[suite],
                    frame_length=frame_size, plaintext_length=length,
                )  # fmt: skip
            except (ValueError, E.EnvelopeError) as exc:
                raise click.ClickException(str(exc)) from None
    if as_json:
        _summary(header, to_stderr=target == "-")


@click.command("decrypt")
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT")
@click.option("--key-id", "key_ids", multiple=True,
              help="Decrypt only with these keys (ARNs) [any aws-kms key].")  # fmt: skip
@_context
@click.option("--allow-legacy", is_flag=True,
              help="Also read version 1 messages (suites without key commitment).")  # fmt: skip
@click.option("--max-encrypted-data-keys", type=click.IntRange(1, 65535), default=None,
              help="Refuse messages with more encrypted data keys.")  # fmt: skip
@key_command
def decrypt_cmd(
    data_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
    source: str,
    target: str,
    key_ids: tuple[str, ...],
    context: tuple[str, ...],
    allow_legacy: bool,
    max_encrypted_data_keys: int | None,
) -> None:
    """Decrypt IN to OUT ('-': stdin/stdout), checking --context pairs are in the message.

    A file OUT appears only after every frame and the signature verified. To
    stdout, each frame is written once its tag verified.
    """
    ctx = parse_pairs(context)
    with kms_client(data_dir, socket_path) as kms:
        ring = E.KmsKeyring(kms, list(key_ids), discovery=not key_ids)
        try:
            with _input(source) as raw, _progress(raw, "decrypt") as src, _output(target) as dst:
                header = E.decrypt_stream(
                    src, dst, ring, encryption_context=ctx, allow_legacy=allow_legacy,
                    max_encrypted_data_keys=max_encrypted_data_keys,
                )  # fmt: skip
        except E.EnvelopeError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        _summary(header, to_stderr=target == "-")


@click.group("envelope")
def envelope() -> None:
    """Envelope encryption of files and streams (AWS Encryption SDK format)."""


envelope.add_command(encrypt_cmd)
envelope.add_command(decrypt_cmd)


def register(group: click.Group) -> None:
    """Add ``kms envelope`` to the CLI, and its commands as ``encrypt-file``/``decrypt-file``."""
    group.add_command(envelope)
    group.add_command(encrypt_cmd, name="encrypt-file")
    group.add_command(decrypt_cmd, name="decrypt-file")
