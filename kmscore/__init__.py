"""kmscore: a self-hosted key management service modeled on AWS KMS.

``from kmscore import LocalKMS`` gives the in-process client, ``connect()`` (and
``connect_async()``) the client of the socket daemon. Submodules load lazily, so
``import kmscore.errors`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "AsyncRemoteKMS",
    "LocalKMS",
    "RemoteKMS",
    "__version__",
    "connect",
    "connect_async",
]

if TYPE_CHECKING:
    from kmscore.client import AsyncRemoteKMS, LocalKMS, RemoteKMS, connect, connect_async

_CLIENT = frozenset({"AsyncRemoteKMS", "LocalKMS", "RemoteKMS", "connect", "connect_async"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from kmscore import client

        return getattr(client, name)
    raise AttributeError(f"module 'kmscore' has no attribute {name!r}")
