"""``kms serve --dev``: a throwaway KMS for CI and laptops.

A temporary data dir (removed at exit), HTTP on :data:`DEV_HTTP`, a user with
the well-known test credentials below (AWS's own documentation example key,
which no real account has) and full access, requests signed for any Region
taken, and the ``export`` lines printed for a shell to ``eval``.
"""

from __future__ import annotations

import asyncio
from typing import Final

from kmscore.service import KeyService
from kmscore.service.principals import admin_policy

__all__ = [
    "DEV_ACCESS_KEY_ID",
    "DEV_HTTP",
    "DEV_SECRET_ACCESS_KEY",
    "DEV_USER",
    "dev_user_startup",
    "export_lines",
]

DEV_ACCESS_KEY_ID: Final = "AKIAIOSFODNN7EXAMPLE"
DEV_SECRET_ACCESS_KEY: Final = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - public test key
DEV_USER: Final = "dev"
DEV_HTTP: Final = "127.0.0.1:4599"


async def dev_user_startup(service: KeyService, loop: asyncio.AbstractEventLoop) -> None:
    """A startup hook: make the dev user with the test credentials, unless it exists."""
    if service.principals.by_access_key(DEV_ACCESS_KEY_ID) is not None:
        return
    service.principals.add(
        DEV_USER, policy=admin_policy(), access_key=(DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY)
    )


def export_lines(url: str, region: str) -> list[str]:
    """The shell lines that point the AWS SDKs and CLI at the dev endpoint."""
    return [
        f"export AWS_ENDPOINT_URL_KMS={url}",
        f"export AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY_ID}",
        f"export AWS_SECRET_ACCESS_KEY={DEV_SECRET_ACCESS_KEY}",
        f"export AWS_DEFAULT_REGION={region}",
        f"export AWS_REGION={region}",
    ]
