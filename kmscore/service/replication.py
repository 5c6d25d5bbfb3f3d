"""Multi-Region keys inside one deployment: making replicas and keeping them related.

Related multi-Region keys share one key id, their key material (every
version), key spec, usage and origin, and the automatic rotation settings;
each keeps its own policy, grants, aliases, tags, description and enabled
state (AWS's "Multi-Region keys in AWS KMS"). Each related key stores the whole
configuration (the primary's Region, the replicas' Regions) with an epoch that
moves at every change; :func:`converge` makes every related key agree with the
newest view and gives each replica the primary's material and shared settings.

A replica is made in state Creating and becomes Enabled only once its primary
lists it, so a replication cut short (a crash, a refused audit record) leaves
no usable half-replicated key; running ReplicateKey again, or the periodic
maintenance, completes it.

Material moves between namespaces unwrapped under the deployment's root key
(bound to the source key's ARN) and wrapped again for the replica's ARN; it
never leaves the process. Between deployments it travels sealed
(:mod:`kmscore.service.peering`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kmscore.errors import ConflictException, KMSError
from kmscore.model.key import KeyMaterialRecord, KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.service.importing import summarize

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = [
    "SHARED_FIELDS",
    "Convergence",
    "converge",
    "converge_all",
    "converge_quietly",
    "copy_material",
    "replica_record",
]

_log = logging.getLogger(__name__)

#: The properties related multi-Region keys share, taken from the primary.
SHARED_FIELDS = (
    "current_version",
    "rotation_enabled",
    "rotation_period_days",
    "next_rotation_date",
    "on_demand_rotation_start",
)


@dataclass
class Convergence:
    """What one :func:`converge` applied, in words (for logs and the CLI)."""

    key_id: str
    applied: list[str] = field(default_factory=list)
    #: Related Regions at peers that did not answer (a partition).
    unreached: list[str] = field(default_factory=list)


def replica_record(
    primary: KeyRecord,
    region: str,
    *,
    now_key: KeyRecord,
    description: str,
    policy: str,
) -> KeyRecord:
    """The record of a new replica of ``primary`` in ``region``, in state Creating.

    Args:
        primary: The primary key.
        region: The replica's Region.
        now_key: Supplies the creation date (a record whose ``creation_date`` is now).
        description: The replica's own description.
        policy: The replica's own key policy.
    """
    replicas = (*tuple(r for r in primary.replica_regions if r != region), region)
    return KeyRecord(
        key_id=primary.key_id,
        arn=primary.related_arn(region),
        account=primary.account,
        creation_date=now_key.creation_date,
        description=description,
        key_usage=primary.key_usage,
        key_spec=primary.key_spec,
        origin=primary.origin,
        state=KeyState.CREATING,
        current_version=primary.current_version,
        multi_region=True,
        rotation_enabled=primary.rotation_enabled,
        rotation_period_days=primary.rotation_period_days,
        next_rotation_date=primary.next_rotation_date,
        on_demand_rotation_start=primary.on_demand_rotation_start,
        policy=policy,
        primary_region=primary.region,
        replica_regions=replicas,
        multi_region_epoch=primary.multi_region_epoch + 1,
    )


def copy_material(
    source: KeyService, key: KeyRecord, material: KeyMaterialRecord, dest_arn: str, dest: KeyService
) -> KeyMaterialRecord:
    """One material version of ``key``, wrapped again for the related key ``dest_arn``."""
    raw = source.root_key.unwrap(material.wrapped, key.arn, material.version)
    try:
        wrapped = dest.root_key.wrap(raw, dest_arn, material.version)
    finally:
        del raw
    return KeyMaterialRecord(
        key_id=material.key_id,
        version=material.version,
        wrapped=wrapped,
        creation_date=material.creation_date,
        material_id=material.material_id,
        rotation_type=material.rotation_type,
    )


def _views(svc: KeyService, key_id: str) -> dict[str, tuple[KeyService, KeyRecord]]:
    """Every related key this deployment holds, by Region, from ``svc``'s outwards."""
    found: dict[str, tuple[KeyService, KeyRecord]] = {}
    todo = [svc.region]
    seen: set[str] = set()
    while todo:
        region = todo.pop()
        if region in seen:
            continue
        seen.add(region)
        other = svc.related(region)
        if other is None:
            continue
        other.recheck()
        key = other.get_key(key_id)
        if key is None or not key.multi_region:
            continue
        found[region] = (other, key)
        todo.extend(r for r in (key.primary_region or region, *key.replica_regions))
    return found


def _configured(key: KeyRecord, best: KeyRecord) -> bool:
    return (
        key.primary_region == best.primary_region
        and key.replica_regions == best.replica_regions
        and key.multi_region_epoch == best.multi_region_epoch
    )


def converge(svc: KeyService, key_id: str) -> Convergence:
    """Make every related key of ``key_id`` in this deployment agree (idempotent).

    The newest configuration (highest epoch) wins; each replica it lists gets
    the primary's missing material versions and shared settings, and a replica
    still Creating becomes Enabled. A listed replica that no longer exists
    (deleted) leaves the configuration; a primary pending replica deletion
    whose replicas are all gone starts its own waiting period.

    Returns:
        What was applied.
    """
    done = Convergence(key_id)
    for _ in range(5):
        views = _views(svc, key_id)
        if not views:
            return done
        # A replica still Creating only proposes itself: the others decide.
        settled = [k for _, k in views.values() if k.state is not KeyState.CREATING]
        best = max(settled or [k for _, k in views.values()], key=lambda k: k.multi_region_epoch)
        primary_region = best.primary_region or best.region
        if primary_region in views:
            p_svc, primary = views[primary_region]
            gone = [
                r for r in best.replica_regions if r not in views and svc.related(r) is not None
            ]
            if gone:
                # Deleted replicas leave the configuration, at a new epoch.
                _drop_replicas(p_svc, primary, best, gone)
                done.applied.append(f"replicas deleted: {', '.join(gone)}")
                continue
            for region, (r_svc, key) in views.items():
                if region == primary_region:
                    if not _configured(key, best):
                        _write(r_svc, key, functools.partial(_with_config, best=best))
                        done.applied.append(f"{region}: now the primary key")
                    continue
                if region not in best.replica_regions:
                    continue  # a replica the newest view does not list (being made)
                done.applied += _sync_replica(p_svc, primary, r_svc, key, best)
            _finish_replica_deletion(p_svc, primary, best, done)
        else:
            # The primary is at a peer: the replicas here agree among themselves.
            for _region, (r_svc, key) in views.items():
                if key.state is not KeyState.CREATING and not _configured(key, best):
                    _write(r_svc, key, functools.partial(_with_config, best=best))
        if _converge_remote(svc, views, best, done):
            continue  # a peer knew better: look again here
        return done
    return done


def _drop_replicas(svc: KeyService, primary: KeyRecord, best: KeyRecord, gone: list[str]) -> None:
    changed = primary.replace(
        primary_region=primary.region,
        replica_regions=tuple(r for r in best.replica_regions if r not in gone),
        multi_region_epoch=best.multi_region_epoch + 1,
    )
    _write(svc, primary, functools.partial(_with_config, best=changed))


def _converge_remote(
    svc: KeyService,
    views: dict[str, tuple[KeyService, KeyRecord]],
    best: KeyRecord,
    done: Convergence,
) -> bool:
    """Exchange views with the peers serving related Regions; True if this side changed."""
    if svc.deployment is None:
        return False
    primary_region = best.primary_region or best.region
    related = dict.fromkeys((primary_region, *best.replica_regions))
    remote = [r for r in related if r not in views and svc.related(r) is None]
    if not remote:
        return False
    from kmscore.service.peer_views import apply_view
    from kmscore.service.peering import peering_of

    peering = peering_of(svc.deployment)
    s_svc, s_key = views[primary_region] if primary_region in views else views[best.region]
    changed = False
    for region in remote:
        peer = peering.peer_for_region(region)
        if peer is None:
            continue
        try:
            answer = peering.sync_with(s_svc, s_key, peer, region)
        except KMSError as exc:
            done.applied.append(
                f"{region}: peer {peer.name} not reached ({exc.code}); retried later"
            )
            done.unreached.append(region)
            continue
        done.applied += [f"peer {peer.name} applied: {line}" for line in answer.get("Applied", [])]
        if answer.get("Absent"):
            if s_key.is_primary and region in s_key.replica_regions:
                _drop_replicas(s_svc, s_key, best, [region])
                done.applied.append(f"{region}: replica deleted at peer {peer.name}")
                changed = True
            continue
        got = apply_view(
            peering.identity, s_svc, s_key, answer["Key"], answer.get("Materials") or []
        )
        if got:
            peering.audit(s_svc, peer, "SynchronizeMultiRegionKey", s_key.arn, got)
            done.applied += got
            changed = True
    return changed


def _with_config(key: KeyRecord, best: KeyRecord) -> KeyRecord:
    return key.replace(
        primary_region=best.primary_region,
        replica_regions=best.replica_regions,
        multi_region_epoch=best.multi_region_epoch,
    )


def _write(svc: KeyService, key: KeyRecord, change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
    return svc.update_key(key, change)


def _sync_replica(
    p_svc: KeyService, primary: KeyRecord, r_svc: KeyService, key: KeyRecord, best: KeyRecord
) -> list[str]:
    applied: list[str] = []
    imported = primary.origin == "EXTERNAL"
    if imported:
        applied += _sync_imported(p_svc, primary, r_svc, key)
    have = {m.version for m in r_svc.store.list_materials(key.key_id)}
    for material in p_svc.store.list_materials(primary.key_id):
        if material.version in have or imported:
            continue
        copied = copy_material(p_svc, primary, material, key.arn, r_svc)
        try:
            r_svc.store.put_material(r_svc.store.get_key(key.key_id) or key, copied)
        except ConflictException:
            continue  # another thread copied it, or the key moved: the next pass sees it
        r_svc.forget(key.key_id)
        applied.append(f"{key.region}: key material version {material.version}")
    fresh = r_svc.store.get_key(key.key_id) or key

    def change(k: KeyRecord) -> KeyRecord:
        shared = {name: getattr(primary, name) for name in SHARED_FIELDS}
        out = _with_config(k.replace(**shared), best)
        if out.state is KeyState.CREATING:
            out = out.replace(state=KeyState.ENABLED)
        if imported:
            # Its own imports decide whether it is usable (PendingImport until then).
            out = summarize(out, r_svc.store.list_materials(k.key_id))
        return out

    wanted = change(fresh)
    if wanted != fresh:
        if fresh.state is KeyState.CREATING:
            applied.append(f"{key.region}: replica ready")
        if fresh.current_version != primary.current_version:
            applied.append(f"{key.region}: current version {primary.current_version}")
        _write(r_svc, fresh, change)
    return applied


def _sync_imported(
    p_svc: KeyService, primary: KeyRecord, r_svc: KeyService, key: KeyRecord
) -> list[str]:
    """A replica's imported versions take the primary's rotation facts (never its material)."""
    applied: list[str] = []
    facts = {m.version: m for m in p_svc.store.list_materials(primary.key_id)}
    for m in r_svc.store.list_materials(key.key_id):
        p = facts.get(m.version)
        if p is None or (m.rotation_type, m.creation_date) == (p.rotation_type, p.creation_date):
            continue
        moved = dataclasses.replace(m, rotation_type=p.rotation_type, creation_date=p.creation_date)
        try:
            fresh = r_svc.store.get_key(key.key_id) or key
            r_svc.store.put_material(fresh, moved)
        except ConflictException:
            continue  # the next pass sees it
        r_svc.forget(key.key_id)
        applied.append(f"{key.region}: key material version {m.version} rotated")
    return applied


def _finish_replica_deletion(
    p_svc: KeyService, primary: KeyRecord, best: KeyRecord, done: Convergence
) -> None:
    if primary.state is not KeyState.PENDING_REPLICA_DELETION or best.replica_regions:
        return
    window = primary.pending_window_days or 30
    deletion = p_svc.clock() + timedelta(days=window)

    def change(k: KeyRecord) -> KeyRecord:
        if k.state is not KeyState.PENDING_REPLICA_DELETION:
            return k
        return k.replace(state=KeyState.PENDING_DELETION, deletion_date=deletion)

    _write(p_svc, primary, change)
    done.applied.append(f"{primary.region}: replicas gone, deletion in {window} days")


def converge_quietly(svc: KeyService, key_id: str) -> None:
    """:func:`converge`, logging instead of raising (maintenance retries it)."""
    try:
        result = converge(svc, key_id)
    except KMSError as exc:
        _log.warning("multi-Region key %s did not converge yet: %s", key_id, exc.message)
        return
    for line in result.applied:
        _log.info("multi-Region key %s: %s", key_id, line)


def converge_all(deployment: Any) -> list[Convergence]:
    """Converge every multi-Region key of every namespace of ``deployment`` (``kms region sync``).

    Returns:
        What was applied, per key that changed or has an unreached peer.
    """
    results: list[Convergence] = []
    seen: set[str] = set()
    for svc in deployment.services():
        after: str | None = None
        while True:
            page = svc.store.list_keys(after, 500)
            if not page:
                break
            for key in page:
                if key.multi_region and key.key_id not in seen:
                    seen.add(key.key_id)
                    try:
                        result = converge(svc, key.key_id)
                    except KMSError as exc:
                        result = Convergence(key.key_id, [f"not converged: {exc.message}"])
                    if result.applied or result.unreached:
                        results.append(result)
            after = page[-1].key_id
    return results
