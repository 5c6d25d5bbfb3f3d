"""The Unix-socket daemon: msgpack-RPC over ``<data-dir>/kms.sock``.

``run()`` serves the key service until SIGINT or SIGTERM (``kms serve`` calls
it); the client is :func:`kmscore.connect`. The protocol, identity, limits and
shutdown are described in ``docs/daemon.md``.
"""

from .server import run

__all__ = ["run"]
