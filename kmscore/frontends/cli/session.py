"""The client behind every key command: the daemon when one runs, else the data dir."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kmscore.client import LocalKMS
from kmscore.client.remote import connect
from kmscore.wire.rpc import SOCKET_FILE

from ._common import existing_data_dir

__all__ = ["SOCKET_FILE", "kms_client"]


def _daemon(data_dir: Path, socket_path: Path | None) -> Any | None:
    """A connected socket client, or None when no daemon answers."""
    path = socket_path or data_dir / SOCKET_FILE
    if not path.exists():
        return None
    try:
        return connect(path)
    except OSError:
        return None  # a stale socket file: nobody listens


@contextlib.contextmanager
def kms_client(data_dir: Path | None, socket_path: Path | None = None) -> Iterator[Any]:
    """Yield a boto3-shaped client: the running daemon's, or an in-process one.

    Raises:
        click.UsageError: no data dir there (and no daemon on ``socket_path``).
    """
    if socket_path is not None and data_dir is None:
        remote = _daemon(Path("/nonexistent"), socket_path)
        if remote is not None:
            with contextlib.closing(remote):
                yield remote
            return
    path = existing_data_dir(data_dir)
    remote = _daemon(path, socket_path)
    if remote is not None:
        with contextlib.closing(remote):
            yield remote
        return
    passphrase = os.environ.get("KMS_PASSPHRASE") or None
    with LocalKMS(path, passphrase=passphrase, audit=True) as local:
        yield local


# END
