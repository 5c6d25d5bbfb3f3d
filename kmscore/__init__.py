"""kmscore: a self-hosted key management service modeled on AWS KMS.

``from kmscore import LocalKMS`` gives the in-process client. Submodules load
lazily, so ``import kmscore.errors`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LocalKMS", "__version__"]

if TYPE_CHECKING:
    from kmscore.client import LocalKMS


def __getattr__(name: str) -> Any:
    if name == "LocalKMS":
        from kmscore.client import LocalKMS

        return LocalKMS
    raise AttributeError(f"module 'kmscore' has no attribute {name!r}")
