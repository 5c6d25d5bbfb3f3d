"""Periodic housekeeping of a data dir.

Deletes keys whose deletion window has ended and rotates keys whose automatic
rotation date has passed. :func:`kmscore.operations.dispatch` runs it when it
is due (every minute); the daemon runs it on a timer as well.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kmscore.errors import KMSError
from kmscore.model.keystate import KeyState
from kmscore.service.importing import expire_imported
from kmscore.service.rotation import AUTOMATIC, rotate

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = ["maintain_if_due", "run_maintenance"]

_log = logging.getLogger(__name__)


def maintain_if_due(service: KeyService, *, force: bool = False) -> None:
    """Run maintenance when due (or ``force``), never failing the caller.

    It runs once per period whatever happens; it is skipped while the store
    says it is offline (PostgreSQL unreachable), so calls served from caches
    do not wait on it, and a failure is logged and retried next period.
    """
    if not force and not service.maintenance_due():
        return
    service.mark_maintained()
    if not getattr(service.store, "online", True):
        return
    try:
        run_maintenance(service)
    except KMSError as exc:
        _log.warning("maintenance failed; retried in a minute: %s", exc.message)


def run_maintenance(service: KeyService) -> None:
    """Delete keys past their deletion date and imported material past its ValidTo.

    Then rotate keys past their rotation date.
    """
    now = service.clock()
    after: str | None = None
    while True:
        page = service.store.list_keys(after, 500)
        if not page:
            break
        for key in page:
            if key.multi_region:
                # Replicas catch up with their primary after any interruption.
                service.note_replication(key.key_id)
            if key.valid_to is not None and key.valid_to <= now:
                key = expire_imported(service, key, now)
            if key.state is KeyState.PENDING_DELETION:
                if key.deletion_date is not None and key.deletion_date <= now:
                    service.delete_expired(key)
            elif (
                key.state is KeyState.ENABLED
                and not key.is_replica  # a replica rotates with its primary
                and key.rotation_enabled
                and key.next_rotation_date is not None
                and key.next_rotation_date <= now
            ):
                rotate(service, key, AUTOMATIC)
        after = page[-1].key_id
    service.replicate_due()
    service.mark_maintained()
