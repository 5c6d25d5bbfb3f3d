"""Multi-Region key operations: ReplicateKey and UpdatePrimaryRegion.

CreateKey with ``MultiRegion=true`` makes a primary key (:mod:`.keys`); these
make its replicas in other Regions of the deployment and move the primary
between them. The related keys' shared properties follow the primary
(:mod:`kmscore.service.replication`).
"""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import (
    AlreadyExistsException,
    KMSInvalidStateException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.model.validation import Boolean, String
from kmscore.operations.common import KEY_ID
from kmscore.operations.registry import operation
from kmscore.operations.tags import TAG_LIST, check_new_tags, request_tag_conditions
from kmscore.service import Call, KeyService
from kmscore.service.peering import Peer, peering_of
from kmscore.service.replication import copy_material, replica_record

#: AWS's RegionType: ``us-west-2``, ``us-gov-west-1``.
REGION: Final = String(required=True, min_len=1, max_len=32, pattern=r"^([a-z]+-){2,3}\d+$")

_REPLICATE_SHAPE: Final = {
    "KeyId": KEY_ID,
    "ReplicaRegion": REGION,
    "Policy": String(min_len=1, max_len=131072, pattern=r"[\u0009\u000A\u000D\u0020-\u00FF]+"),
    "BypassPolicyLockoutSafetyCheck": Boolean(),
    "Description": String(min_len=0, max_len=8192),
    "Tags": TAG_LIST,
}


def _multi_region_primary(key: KeyRecord, operation: str) -> None:
    if not key.multi_region:
        raise UnsupportedOperationException(
            f"{key.arn} is not a multi-Region key; {operation} works on multi-Region keys only."
        )
    if key.is_replica:
        raise UnsupportedOperationException(
            f"{key.arn} is a replica key; {operation} works on the primary key "
            f"{key.related_arn(key.primary_region or key.region)}."
        )


def _peer_for(svc: KeyService, region: str) -> Peer | None:
    if svc.deployment is None:
        return None
    found: Peer | None = peering_of(svc.deployment).peer_for_region(region)
    return found


def _region_service(svc: KeyService, region: str, key: KeyRecord) -> KeyService | Peer:
    """The Region's namespace here, or the peer deployment serving it."""
    if region == svc.region:
        raise ValidationException(
            f"ReplicaRegion {region} is the Region of {key.arn}; a replica goes to another Region."
        )
    dest = svc.related(region)
    if dest is not None:
        return dest
    peer = _peer_for(svc, region)
    if peer is None:
        raise ValidationException(
            f"{region} is not a Region of this deployment or of its peers "
            f"(add it with kms region add {region}, or peer with a deployment serving it)."
        )
    return peer


def _remote_checks(
    call: Call, req: dict[str, Any], key: KeyRecord, peer: Peer
) -> tuple[KeyRecord, Peer, dict[str, str]]:
    # The peer trusts this deployment for its own keys' replicas (docs/regions.md);
    # here the caller needs kms:ReplicateKey on the primary, and kms:CreateKey.
    tags = check_new_tags(req.get("Tags", []))
    call.authorize(key, conditions={"kms:ReplicaRegion": req["ReplicaRegion"]})
    call.service.authorizer.authorize(
        call, "kms:CreateKey", None, {"kms:MultiRegion": True, "kms:MultiRegionKeyType": "REPLICA"}
    )
    return key, peer, tags


def _checks(call: Call, req: dict[str, Any]) -> tuple[KeyRecord, KeyService | Peer, dict[str, str]]:
    """Every check of a ReplicateKey request, authorization in both Regions included."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    _multi_region_primary(key, "ReplicateKey")
    region = req["ReplicaRegion"]
    if key.origin not in ("AWS_KMS", "EXTERNAL"):
        raise UnsupportedOperationException(
            f"{key.arn} has {key.origin} key material; only AWS_KMS and EXTERNAL keys replicate."
        )
    dest = _region_service(svc, region, key)
    if isinstance(dest, Peer):
        if key.origin == "EXTERNAL":
            # The peer would have to check imports against this side's material ids.
            raise UnsupportedOperationException(
                f"{key.arn} has imported key material (Origin EXTERNAL): kmscore replicates "
                f"it only to Regions of this deployment, and {region} is served by peer "
                f"{dest.name}."
            )
        return _remote_checks(call, req, key, dest)
    tags = check_new_tags(req.get("Tags", []))
    call.authorize(key, conditions={"kms:ReplicaRegion": region})
    # As AWS: kms:CreateKey (and kms:TagResource with tags) in the replica Region.
    there = Call(dest, "ReplicateKey", call.caller, call.request_id, [key.related_arn(region)])
    dest.authorizer.authorize(
        there,
        "kms:CreateKey",
        None,
        {
            "kms:KeySpec": key.key_spec,
            "kms:KeyUsage": key.key_usage,
            "kms:KeyOrigin": key.origin,
            "kms:MultiRegion": True,
            "kms:MultiRegionKeyType": "REPLICA",
            **request_tag_conditions(tags),
        },
    )
    if tags:
        dest.authorizer.authorize(there, "kms:TagResource", None, request_tag_conditions(tags))
    return key, dest, tags


def _prepare_replicate(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """Make the replica (state Creating) in its Region, before the primary's transaction.

    The replica's store is another than the primary's: it commits first, and
    the replica becomes usable only when the primary lists it.
    """
    key, dest, tags = _checks(call, req)
    region = req["ReplicaRegion"]
    if isinstance(dest, Peer):
        return _prepare_remote(call, req, key, dest, tags)
    existing = dest.store.get_key(key.key_id)
    if existing is not None:
        if existing.state is KeyState.CREATING and existing.primary_region == key.region:
            return req  # cut short before: complete it
        raise AlreadyExistsException(
            f"{key.related_arn(region)} already exists: {region} holds a related "
            "multi-Region key of this key."
        )
    if region in key.replica_regions:
        raise AlreadyExistsException(f"{key.arn} already has a replica in {region}.")
    arn = key.related_arn(region)
    policy = req.get("Policy")
    there = Call(dest, "ReplicateKey", call.caller, call.request_id, [arn])
    if policy is not None:
        from kmscore.operations.policies import checked_policy

        checked_policy(there, policy, arn, bool(req.get("BypassPolicyLockoutSafetyCheck")))
    now = dest.clock()
    replica = replica_record(
        key,
        region,
        now_key=key.replace(creation_date=now),
        description=req.get("Description", ""),
        policy=policy or dest.default_key_policy,
    )
    # Imported material is not copied: the operator imports the same material
    # into each related key (AWS's "Importing key material into multi-Region keys").
    materials = (
        []
        if key.origin == "EXTERNAL"
        else [
            copy_material(call.service, key, m, arn, dest)
            for m in call.service.store.list_materials(key.key_id)
        ]
    )
    with dest.store.transaction():
        dest.store.create_key(replica, materials[0] if materials else None, tags)
        stored = dest.store.get_key(key.key_id) or replica
        for material in materials[1:]:
            stored = dest.store.put_material(stored, material)
    dest.forget(key.key_id)
    return req


def _prepare_remote(
    call: Call, req: dict[str, Any], key: KeyRecord, peer: Peer, tags: dict[str, str]
) -> dict[str, Any]:
    """Have the peer make the replica (Creating), before the primary's transaction."""
    region = req["ReplicaRegion"]
    peering = peering_of(call.service.deployment)
    if region in key.replica_regions:
        # Listed already: complete a replication cut short, or refuse as AWS.
        answer = peering.sync_with(call.service, key, peer, region, patient=True)
        finished = any("replica ready" in line for line in answer.get("Applied", []))
        if answer.get("Absent") or not finished:
            raise AlreadyExistsException(f"{key.arn} already has a replica in {region}.")
        return {**req, _REMOTE: answer["Key"]["State"]}
    answer = peering.replicate_to(
        call.service,
        key,
        peer,
        region,
        policy=req.get("Policy"),
        description=req.get("Description", ""),
        tags=tags,
    )
    return {**req, _REMOTE: answer.get("KeyState", "Creating")}


#: Where the remote replica's state travels in the request (no wire member has this name).
_REMOTE: Final = "_RemoteReplicaState"


def _remote_replica(call: Call, req: dict[str, Any], key: KeyRecord) -> dict[str, Any]:
    svc = call.service
    region = req["ReplicaRegion"]
    if _REMOTE not in req:
        raise KMSInvalidStateException(f"The replica of {key.arn} in {region} was not made; retry.")
    if region not in key.replica_regions:

        def change(k: KeyRecord) -> KeyRecord:
            call.check_state(k)
            return k.replace(
                replica_regions=(*[r for r in k.replica_regions if r != region], region),
                multi_region_epoch=k.multi_region_epoch + 1,
            )

        key = svc.update_key(key, change)
    svc.note_replication(key.key_id)
    stand_in = replica_record(
        key,
        region,
        now_key=key.replace(creation_date=svc.clock()),
        description=req.get("Description", ""),
        policy=req.get("Policy") or svc.default_key_policy,
    ).replace(replica_regions=key.replica_regions, multi_region_epoch=key.multi_region_epoch)
    call.resources.append(stand_in.arn)
    return {
        "ReplicaKeyMetadata": stand_in.metadata(svc.keyring.material_id(key, key.current_version)),
        "ReplicaPolicy": stand_in.policy,
        "ReplicaTags": [
            {"TagKey": t["TagKey"], "TagValue": t["TagValue"]} for t in req.get("Tags", [])
        ],
    }


def _material_id(svc: KeyService, key: KeyRecord) -> str | None:
    """The current KeyMaterialId of ``key``; none for imported material not (yet) there."""
    if key.origin != "EXTERNAL":
        found: str = svc.keyring.material_id(key, key.current_version)
        return found
    current = svc.store.get_material(key.key_id, key.current_version)
    return current.material_id if current is not None and current.import_state else None


@operation("ReplicateKey", _REPLICATE_SHAPE, prepare=_prepare_replicate)
def replicate_key(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ReplicateKey: a replica of a multi-Region primary key in another Region."""
    svc = call.service
    key, dest, _ = _checks(call, req)
    region = req["ReplicaRegion"]
    if isinstance(dest, Peer):
        return _remote_replica(call, req, key)
    replica = dest.store.get_key(key.key_id)
    if replica is None or replica.primary_region != key.region:
        raise KMSInvalidStateException(f"The replica of {key.arn} in {region} was not made; retry.")
    if region not in key.replica_regions:

        def change(k: KeyRecord) -> KeyRecord:
            call.check_state(k)
            return k.replace(
                replica_regions=(*tuple(r for r in k.replica_regions if r != region), region),
                multi_region_epoch=max(k.multi_region_epoch + 1, replica.multi_region_epoch),
            )

        svc.update_key(key, change)
    svc.note_replication(key.key_id)
    call.resources.append(replica.arn)
    return {
        "ReplicaKeyMetadata": replica.metadata(_material_id(dest, replica)),
        "ReplicaPolicy": replica.policy or dest.default_key_policy,
        "ReplicaTags": [{"TagKey": k, "TagValue": v} for k, v in dest.store.list_tags(key.key_id)],
    }


@operation("UpdatePrimaryRegion", {"KeyId": KEY_ID, "PrimaryRegion": REGION})
def update_primary_region(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """UpdatePrimaryRegion: make the replica in PrimaryRegion the primary key."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    _multi_region_primary(key, "UpdatePrimaryRegion")
    region = req["PrimaryRegion"]
    call.authorize(key, conditions={"kms:PrimaryRegion": region})
    if region == key.region:
        return {}
    dest = svc.related(region)
    if dest is None and region in key.replica_regions:
        peer = _peer_for(svc, region)
        if peer is not None:
            return _update_remote_primary(call, key, peer, region)
    replica = dest.get_key(key.key_id) if dest is not None else None
    if dest is None or replica is None or region not in key.replica_regions:
        raise NotFoundException(f"{key.arn} has no replica key in {region}.")
    there = Call(dest, "UpdatePrimaryRegion", call.caller, call.request_id, [replica.arn])
    there.states = call.states
    there.check_state(replica)
    dest.authorizer.authorize(
        there, "kms:UpdatePrimaryRegion", replica, {"kms:PrimaryRegion": region}
    )
    call.resources.append(replica.arn)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        return k.replace(
            primary_region=region,
            replica_regions=(*tuple(r for r in k.replica_regions if r != region), k.region),
            multi_region_epoch=max(k.multi_region_epoch, replica.multi_region_epoch) + 1,
        )

    svc.update_key(key, change)
    svc.note_replication(key.key_id)
    return {}


def _update_remote_primary(call: Call, key: KeyRecord, peer: Peer, region: str) -> dict[str, Any]:
    """UpdatePrimaryRegion to a Region a peer serves: the replica there must be ready.

    This side becomes a replica at once; the peer learns it is the primary
    at the next convergence (at once when it answers, after a partition
    otherwise): meanwhile neither side rotates, and both serve.
    """
    svc = call.service
    peering = peering_of(svc.deployment)
    answer = peering.sync_with(svc, key, peer, region, patient=True)
    if answer.get("Absent"):
        raise NotFoundException(f"{key.arn} has no replica key in {region}.")
    if answer.get("Key", {}).get("State") == "Creating":
        raise KMSInvalidStateException(f"The replica of {key.arn} in {region} is Creating.")

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        return k.replace(
            primary_region=region,
            replica_regions=(*[r for r in k.replica_regions if r != region], k.region),
            multi_region_epoch=max(k.multi_region_epoch, int(answer["Key"]["Epoch"])) + 1,
        )

    svc.update_key(key, change)
    svc.note_replication(key.key_id)
    return {}
