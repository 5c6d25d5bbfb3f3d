"""The XKS Proxy API over HTTPS: ``kms serve --xks HOST:PORT``.

:mod:`.handler` answers requests (paths, SigV4 of the ``kms-xks-proxy``
service, JSON, the specification's error names and statuses);
:mod:`.server` listens. The operations are :mod:`kmscore.service.xks_proxy`'s.
"""

from .handler import XksHandler, xks_error
from .server import XksServer, start_xks_server, xks_startup

__all__ = ["XksHandler", "XksServer", "start_xks_server", "xks_error", "xks_startup"]
