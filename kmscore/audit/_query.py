"""Streaming search over an audit trail's records.

Queries read the segment files in order, one line at a time, without taking the
writer's lock and without verifying the chain (use :func:`kmscore.audit.verify`
for that). A torn last line left by a crash is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kmscore.audit import _format as fmt
from kmscore.errors import KMSInternalException

__all__ = ["query"]


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_log = logging.getLogger(__name__)


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment


def _touches_key(record: dict[str, Any], key_id: str) -> bool:
    suffix = "/" + key_id
    for resource in record.get("resources") or ():
        arn = resource.get("ARN") if isinstance(resource, dict) else None
        if isinstance(arn, str) and (arn == key_id or arn.endswith(suffix)):
            return True
    parameters = record.get("requestParameters")
    return isinstance(parameters, dict) and parameters.get("keyId") == key_id


def _is_principal(record: dict[str, Any], principal: str) -> bool:
    identity = record.get("userIdentity")
    if not isinstance(identity, dict):
        return False
    return principal in (identity.get("arn"), identity.get("principalId"))


def _matches_error(record: dict[str, Any], error_code: str | bool) -> bool:
    code = record.get("errorCode")
    if error_code is True:
        return code is not None
    if error_code is False:
        return code is None
    return code == error_code


def catch_up(data_dir: Path) -> list[Any]:
    """Chain what live and dead writers journaled, so a reader sees every call.

    A trail that cannot be written here (a copy given to an auditor, a witness
    that is away) is read as it is.

    Returns:
        The journals found damaged (:class:`~kmscore.audit.journal_format.JournalDamaged`).
    """
    from kmscore.audit.chainer import drain_journals

    try:
        return drain_journals(data_dir)[1]
    except (KMSInternalException, OSError) as exc:
        _log.warning("reading the audit trail without its journals: %s", exc)
        return []


def query(
    data_dir: str | os.PathLike[str],
    *,
    key_id: str | None = None,
    principal: str | None = None,
    event_name: str | None = None,
    error_code: str | bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the records that match every given filter, oldest first.

    Each record is the stored event with the trail's ``seq`` and ``prevHash``.

    Args:
        data_dir: The service's data directory (holding ``audit/``).
        key_id: A key id or key ARN; matches records whose resources name the
            key, or whose ``requestParameters.keyId`` is exactly this string
            (an alias, or a key that was not found).
        principal: A principal ARN or principal id (``userIdentity``).
        event_name: An AWS operation name, e.g. ``"Decrypt"``.
        error_code: An AWS error code; True for any failed or denied call, False
            for successful calls only.
        since: Only records at or after this time (timezone-aware).
        until: Only records before this time (timezone-aware).

    Yields:
        Matching records as dictionaries.

    Raises:
        ValueError: If ``since`` or ``until`` is naive.
        KMSInternalException: If the trail cannot be read.
    """
    since, until = _aware(since, "since"), _aware(until, "until")
    catch_up(Path(data_dir))
    audit_dir = Path(data_dir) / fmt.AUDIT_DIR
    try:
        segments = fmt.list_segments(audit_dir)
    except OSError as exc:
        raise KMSInternalException(f"cannot read the audit trail: {exc}") from exc
    return _scan(audit_dir, segments, key_id, principal, event_name, error_code, since, until)


def _scan(
    audit_dir: Path,
    segments: list[tuple[int, str]],
    key_id: str | None,
    principal: str | None,
    event_name: str | None,
    error_code: str | bool | None,
    since: datetime | None,
    until: datetime | None,
) -> Iterator[dict[str, Any]]:
    for _, name in segments:
        for record in _records(audit_dir / name):
            if event_name is not None and record.get("eventName") != event_name:
                continue
            if error_code is not None and not _matches_error(record, error_code):
                continue
            if key_id is not None and not _touches_key(record, key_id):
                continue
            if principal is not None and not _is_principal(record, principal):
                continue
            if since is not None or until is not None:
                moment = _parse_time(record.get("eventTime"))
                if moment is None:
                    continue
                if since is not None and moment < since:
                    continue
                if until is not None and moment >= until:
                    continue
            yield record


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        for _, line, complete in fmt.iter_lines(path):
            if not complete:
                return
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
    except OSError as exc:
        raise KMSInternalException(f"cannot read the audit trail: {exc}") from exc
