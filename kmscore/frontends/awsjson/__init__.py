"""The AWS KMS JSON endpoint: boto3, the aws cli and the AWS Encryption SDK, unchanged.

Serves AWS KMS's wire protocol (``POST /``, ``X-Amz-Target:
TrentService.<Operation>``, ``application/x-amz-json-1.1``) with SigV4
authentication against the data dir's access keys, so code written for AWS KMS
points here by setting one endpoint URL (``AWS_ENDPOINT_URL_KMS``).

    server = await start_http_server(service, "127.0.0.1", 4599)
    print(server.env_line)          # AWS_ENDPOINT_URL_KMS=http://127.0.0.1:4599
    ...
    await server.close()

Beside the Unix-socket daemon, :func:`http_startup` makes the hook its
``run(..., extra_startup=[...])`` takes.

Modules: :mod:`.sigv4` (signature verification), :mod:`.wire` (JSON to
requests and answers, driven by the operations' shapes), :mod:`.app` (the
request handler), :mod:`.server` (binding it on an event loop).
"""

from .app import KMSHandler
from .server import HttpServer, endpoint_url, http_startup, start_http_server
from .sigv4 import SigV4Verifier

__all__ = [
    "HttpServer",
    "KMSHandler",
    "SigV4Verifier",
    "endpoint_url",
    "http_startup",
    "start_http_server",
]
