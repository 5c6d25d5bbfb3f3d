"""The clients: the same KMS in this process, or served by the daemon.

- :class:`LocalKMS` (:mod:`kmscore.client.local`) serves a data dir in this
  process;
- :class:`RemoteKMS` and :func:`connect` (:mod:`kmscore.client.remote`) talk
  to the daemon over its Unix socket;
- :class:`AsyncRemoteKMS` and :func:`connect_async` (:mod:`kmscore.client.aio`)
  do so from asyncio.

All have boto3's method names and shapes. Each loads lazily: importing the
socket clients loads neither the engine nor the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kmscore.wire.operations import method_name

__all__ = [
    "AsyncRemoteKMS",
    "LocalKMS",
    "RemoteKMS",
    "connect",
    "connect_async",
    "method_name",
]

if TYPE_CHECKING:
    from kmscore.client.aio import AsyncRemoteKMS, connect_async
    from kmscore.client.local import LocalKMS
    from kmscore.client.remote import RemoteKMS, connect

_HOMES = {
    "LocalKMS": "kmscore.client.local",
    "RemoteKMS": "kmscore.client.remote",
    "connect": "kmscore.client.remote",
    "AsyncRemoteKMS": "kmscore.client.aio",
    "connect_async": "kmscore.client.aio",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kmscore.client' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
