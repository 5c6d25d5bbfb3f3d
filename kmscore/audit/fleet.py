"""Trails of a fleet: one per node, each with its node id, read together.

Every node of a fleet (kmscore nodes sharing one PostgreSQL key store) keeps its
own trail in its own data dir, hash-chained and signed on its own: a node
never waits for another to append. Its node id is kept beside the trail, in
``audit.json`` (``KMS_NODE_ID`` when the trail is first opened, else the host
name and a random suffix). :func:`query_trails` merges several nodes' records
by ``eventTime``, each tagged with its ``node``; :func:`verify_trails` verifies
each trail and names the node of the first one that fails.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kmscore.audit._query import query
from kmscore.audit._verify import VerifyError, VerifyReport, verify
from kmscore.audit.setup import audit_config, new_node_id

__all__ = ["new_node_id", "node_id", "query_trails", "verify_trails"]


def node_id(data_dir: str | os.PathLike[str]) -> str:
    """The node id of a data dir's trail (its path, for a trail that has none).

    Raises:
        KMSInternalException: ``audit.json`` is unsafe or not JSON.
    """
    node = audit_config(Path(data_dir)).get("node")
    return str(node) if node else str(Path(data_dir))


def query_trails(
    data_dirs: Sequence[str | os.PathLike[str]], **filters: Any
) -> Iterator[dict[str, Any]]:
    """The records of several trails that match ``filters``, merged by time.

    Args:
        data_dirs: The nodes' data dirs.
        **filters: As :func:`kmscore.audit.query` takes them.

    Yields:
        Records, oldest first, each with a ``node`` member naming its trail.

    Raises:
        ValueError: ``since`` or ``until`` is naive.
        KMSInternalException: a trail cannot be read.
    """
    streams = [_tagged(node_id(d), query(d, **filters)) for d in data_dirs]
    return heapq.merge(*streams, key=lambda r: str(r.get("eventTime", "")))


def _tagged(node: str, records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        record["node"] = node
        yield record


def verify_trails(
    data_dirs: Sequence[str | os.PathLike[str]], **options: Any
) -> list[tuple[str, VerifyReport]]:
    """Verify several nodes' trails, each on its own.

    Args:
        data_dirs: The nodes' data dirs.
        **options: As :func:`kmscore.audit.verify` takes them (a public key
            given applies to every trail).

    Returns:
        Each node's id and report, in the order given.

    Raises:
        VerifyError: at the first trail that is not intact, naming its node.
    """
    reports = []
    for d in data_dirs:
        node = node_id(d)
        try:
            reports.append((node, verify(d, **options)))
        except VerifyError as exc:
            raise VerifyError(f"node {node} ({d}): {exc}") from None
    return reports
