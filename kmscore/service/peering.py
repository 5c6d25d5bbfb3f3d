"""Peering between deployments: mutually authenticated, material sealed in transit.

Two deployments (other machines, data dirs, root keys) peer when each
operator registers the other (``kms region peer URL --fingerprint FP``): the
peer's identity (an Ed25519 signing key and an X25519 transport key,
:mod:`kmscore.crypto.sealing`) is fetched from its endpoint and kept only if its
fingerprint is the one the operator was given out of band. From then on every
message either way is signed by its sender and checked against the registered
key, answers included (bound to the request's nonce and time), so a peer
whose identity does not match is refused in both directions.

ReplicateKey to a Region a peer serves sends the key's material sealed to the
peer's transport key, never in the clear and never under a key the transport
can read. The peer makes the replica in state Creating, wraps the material under
its own root key, records the replication in its audit trail, and answers;
the primary lists the replica, records its own event, and a ``sync`` message
makes the replica usable. Every step is idempotent, so a retry (the caller's,
or the periodic maintenance's) completes a replication cut short anywhere.

``sync`` carries a multi-Region key's view (its configuration and epoch, its
shared properties and, from the primary, its sealed material versions); the
receiver applies whatever is newer and answers with its own view, so after a
partition the side with older knowledge catches up in one exchange, and both
report what they applied. During a partition each side serves its own keys.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from kmscore.crypto.sealing import PeerIdentity, PublicIdentity
from kmscore.errors import (
    AccessDeniedException,
    AlreadyExistsException,
    KMSError,
    NotFoundException,
    ValidationException,
)
from kmscore.fsutil import open_private_file, replace_private_file
from kmscore.model.caller import Caller
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.service.call import Call, new_request_id
from kmscore.service.peer_channel import BACKOFF, PEER_PATH, Peer, PeerChannel
from kmscore.service.peer_views import (
    apply_view,
    key_view,
    open_materials,
    seal_materials,
    shared_from_view,
)

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService
    from kmscore.service.regions import Deployment

__all__ = [
    "BACKOFF",
    "PEERS_FILE",
    "PEER_PATH",
    "Peer",
    "Peering",
    "key_view",
]

#: Where a home data dir keeps its peers (0600).
PEERS_FILE: Final = "peers.json"
_SIGNING_AAD: Final = b"kmscore peer signing key"
_TRANSPORT_AAD: Final = b"kmscore peer transport key"


def _load_identity(home: KeyService) -> PeerIdentity:
    """The home's peering keys, made (once, whoever opens first) on first use."""
    store, root = home.store, home.root_key
    if store.get_setting("peer_id") is None:
        signing, transport = PeerIdentity.generate()
        store.init_settings(
            {
                "peer_id": str(uuid.uuid4()).encode(),
                "peer_signing": root.wrap_secret(signing, _SIGNING_AAD),
                "peer_transport": root.wrap_secret(transport, _TRANSPORT_AAD),
            }
        )
        del signing, transport
    deployment_id = (store.get_setting("peer_id") or b"").decode()
    signing = root.unwrap_secret(store.get_setting("peer_signing") or b"", _SIGNING_AAD)
    transport = root.unwrap_secret(store.get_setting("peer_transport") or b"", _TRANSPORT_AAD)
    try:
        return PeerIdentity(deployment_id, signing, transport)
    finally:
        del signing, transport


class Peering:
    """This deployment's identity, its peers, and the messages between them."""

    def __init__(self, deployment: Deployment) -> None:
        """Load (or make) the identity and the registered peers."""
        self.deployment = deployment
        self.home = deployment.home
        self.identity = _load_identity(self.home)
        self._path = self.home.data_dir / PEERS_FILE
        self.channel = PeerChannel(self.identity)
        self._lock = threading.Lock()
        self._peers = self._read()

    # --- the registry ----------------------------------------------------------------

    def _read(self) -> dict[str, Peer]:
        try:
            fd = open_private_file(self._path)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read() or b"[]")
        return {
            p["Name"]: Peer(
                p["Name"], p["Url"], PublicIdentity.from_json(p), tuple(p.get("Regions", ()))
            )
            for p in data
        }

    def _write(self) -> None:
        data = json.dumps([p.to_json() for p in self._peers.values()], indent=1)
        replace_private_file(self._path, data.encode() + b"\n")

    def peers(self) -> list[Peer]:
        """The registered peers, by name."""
        with self._lock:
            self._peers = self._read()
            return sorted(self._peers.values(), key=lambda p: p.name)

    def peer_for_region(self, region: str) -> Peer | None:
        """The peer serving ``region``, if one does (and this deployment does not)."""
        for peer in self.peers():
            if region in peer.regions:
                return peer
        return None

    def _peer_by_id(self, deployment_id: str) -> Peer | None:
        for peer in self.peers():
            if peer.identity.deployment_id == deployment_id:
                return peer
        return None

    def add_peer(self, name: str, url: str, fingerprint: str) -> Peer:
        """Register the deployment at ``url`` as peer ``name`` (``kms region peer``).

        Its identity is fetched from its endpoint and kept only if it has
        ``fingerprint`` (given by its operator, out of band). The other side
        must register this deployment too before replication flows.

        Raises:
            AccessDeniedException: the identity at ``url`` has another fingerprint.
            DependencyTimeoutException: ``url`` does not answer.
            ValidationException: a bad name.
        """
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValidationException(f"Peer name {name!r} must be letters, digits, - and _.")
        found = self._hello(url)
        if found["Identity"]["Fingerprint"] != fingerprint.strip().lower():
            raise AccessDeniedException(
                f"The deployment at {url} has fingerprint {found['Identity']['Fingerprint']}, "
                f"not {fingerprint}: refused."
            )
        identity = PublicIdentity.from_json(found["Identity"])
        if identity.fingerprint != found["Identity"]["Fingerprint"]:
            raise AccessDeniedException(f"The deployment at {url} sent an inconsistent identity.")
        peer = Peer(name, url.rstrip("/"), identity, tuple(found["Regions"]))
        with self._lock:
            self._peers = self._read()
            self._peers[name] = peer
            self._write()
        return peer

    def refresh(self, name: str) -> Peer:
        """Ask a peer again which Regions it serves (its identity must not change).

        Raises:
            NotFoundException: no such peer.
            AccessDeniedException: its identity changed.
        """
        peer = next((p for p in self.peers() if p.name == name), None)
        if peer is None:
            raise NotFoundException(f"No peer named {name}.")
        answer = self.send(peer, "hello", {})
        updated = Peer(peer.name, peer.url, peer.identity, tuple(answer["Regions"]))
        with self._lock:
            self._peers = self._read()
            self._peers[name] = updated
            self._write()
        return updated

    def _hello(self, url: str) -> dict[str, Any]:
        body = json.dumps({"Op": "identity"}).encode()
        data, _ = self.channel.post(url, body, None)
        answer: dict[str, Any] = json.loads(data)
        return answer

    def _regions(self) -> list[str]:
        return sorted({r for a in self.deployment.accounts() for r in self.deployment.regions(a)})

    def public_info(self) -> dict[str, Any]:
        """What an unauthenticated ``identity`` request learns (public keys only)."""
        return {"Identity": self.identity.public.to_json(), "Regions": self._regions()}

    # --- receiving -------------------------------------------------------------------

    def handle(self, raw: bytes) -> tuple[int, bytes]:
        """Answer one peering envelope: (HTTP status, answer envelope).

        Never raises: refusals answer 4xx with an AWS-style error body.
        """
        status, body, signature = self._handle(raw)
        if status != 200:
            return status, body
        envelope = {"Message": body.decode()}
        if signature is not None:
            envelope["Signature"] = signature
        return 200, json.dumps(envelope).encode()

    def _handle(self, raw: bytes) -> tuple[int, bytes, str | None]:
        try:
            envelope = json.loads(raw)
            if not isinstance(envelope, dict) or not isinstance(envelope.get("Message"), str):
                raise ValidationException("A peering envelope is a JSON object with a Message.")
            body = envelope["Message"].encode()
            signature = envelope.get("Signature")
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValidationException("A peering message is a JSON object.")
            if message.get("Op") == "identity" and signature is None:
                return 200, json.dumps(self.public_info()).encode(), None
            sender = self._peer_by_id(str(message.get("From")))
            peer = self.channel.authenticate(sender, message, body, signature)
            out = self._dispatch(peer, str(message.get("Op")), message.get("Body") or {})
            return 200, *self.channel.answer(peer, str(message["Nonce"]), out)
        except KMSError as exc:
            status = 403 if isinstance(exc, AccessDeniedException) else 400
            return status, json.dumps({"__type": exc.code, "message": exc.message}).encode(), None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            error = {
                "__type": "ValidationException",
                "message": f"Bad peering message: {type(exc).__name__}",
            }
            return 400, json.dumps(error).encode(), None

    def _dispatch(self, peer: Peer, op: str, body: dict[str, Any]) -> dict[str, Any]:
        if op == "hello":
            return {"Regions": self._regions()}
        if op == "replicate":
            return self._receive_replica(peer, body)
        if op == "sync":
            return self._receive_sync(peer, body)
        raise ValidationException(f"Unknown peering operation {op!r}.")

    def _service(self, account: str, region: str) -> KeyService:
        svc = self.deployment.service(account, region)
        if svc is None:
            raise NotFoundException(f"This deployment does not serve {region} of {account}.")
        return svc

    def audit(
        self, svc: KeyService, peer: Peer, operation: str, arn: str, applied: list[str]
    ) -> None:
        """Record what a peer's message (or answer) made this side apply."""
        caller = Caller(
            arn=f"arn:aws:iam::{svc.account}:root",
            account=svc.account,
            principal_id=f"peer:{peer.name}",
            kind="Root",
            source=f"peer:{peer.name}",
            user_agent="kmscore-peer",
        )
        call = Call(svc, operation, caller, new_request_id(), [arn])
        svc.auditor.record(call, {"KeyId": arn, "Peer": peer.name}, {"Applied": applied}, None)

    # --- replication -------------------------------------------------------------------

    def send(
        self, peer: Peer, op: str, body: Mapping[str, Any], *, patient: bool = True
    ) -> dict[str, Any]:
        """Send one signed message to ``peer``; its checked answer (see :class:`PeerChannel`).

        Raises:
            DependencyTimeoutException: the peer does not answer (a partition).
            AccessDeniedException: its answer is not signed by its registered key.
            KMSError: the peer's refusal.
        """
        return self.channel.send(peer, op, body, patient=patient)

    def replicate_to(
        self,
        svc: KeyService,
        key: KeyRecord,
        peer: Peer,
        region: str,
        *,
        policy: str | None,
        description: str,
        tags: Mapping[str, str],
    ) -> dict[str, Any]:
        """Have ``peer`` make the replica of ``key`` in ``region`` (state Creating).

        Raises:
            AlreadyExistsException: the peer's Region holds a related key already.
            DependencyTimeoutException: the peer does not answer; nothing changed here.
        """
        return self.send(
            peer,
            "replicate",
            {
                "Key": {
                    **key_view(key),
                    "Replicas": [*[r for r in key.replica_regions if r != region], region],
                    "Epoch": key.multi_region_epoch + 1,
                },
                "ReplicaRegion": region,
                "Policy": policy,
                "Description": description,
                "Tags": dict(tags),
                "Materials": seal_materials(svc, key, peer.identity.transport_pub, region),
            },
        )

    def _serves(self, peer: Peer, region: str) -> None:
        """Refuse a message about a Region the sending peer does not serve."""
        if region in peer.regions:
            return
        if region in self.send(peer, "hello", {})["Regions"]:
            self.refresh(peer.name)
            return
        raise AccessDeniedException(f"Peer {peer.name} does not serve {region}: refused.")

    def _receive_replica(self, peer: Peer, body: dict[str, Any]) -> dict[str, Any]:
        view = body["Key"]
        region = str(body["ReplicaRegion"])
        # A peer makes replicas only of its own keys (whose primary it serves).
        self._serves(peer, str(view["PrimaryRegion"]))
        svc = self._service(str(view["Account"]), region)
        key_id = str(view["KeyId"])
        arn = svc.key_arn(key_id)
        existing = svc.store.get_key(key_id)
        if existing is not None:
            if existing.primary_region == view["PrimaryRegion"] and (
                existing.state is KeyState.CREATING or existing.multi_region_epoch >= view["Epoch"]
            ):
                return {"Applied": [], "KeyState": existing.state.value}  # a retry: done already
            raise AlreadyExistsException(
                f"{arn} already exists: {region} holds a related multi-Region key."
            )
        materials = open_materials(self.identity, svc, arn, body.get("Materials") or [])
        replica = KeyRecord(
            key_id=key_id,
            arn=arn,
            account=svc.account,
            creation_date=svc.clock(),
            description=str(body.get("Description") or ""),
            key_usage=str(view["KeyUsage"]),
            key_spec=str(view["KeySpec"]),
            origin=str(view["Origin"]),
            state=KeyState.CREATING,
            current_version=int(view["CurrentVersion"]),
            multi_region=True,
            policy=body.get("Policy") or svc.default_key_policy,
            primary_region=str(view["PrimaryRegion"]),
            replica_regions=tuple(view["Replicas"]),
            multi_region_epoch=int(view["Epoch"]),
            **shared_from_view(view),
        )
        tags = {str(k): str(v) for k, v in (body.get("Tags") or {}).items()}
        with svc.store.transaction():
            svc.store.create_key(replica, materials[0] if materials else None, tags)
            stored = svc.store.get_key(key_id) or replica
            for material in materials[1:]:
                stored = svc.store.put_material(stored, material)
            applied = [f"{region}: replica of {view['PrimaryRegion']} made (Creating)"]
            self.audit(svc, peer, "ReplicateKey", arn, applied)
        svc.forget(key_id)
        return {"Applied": applied, "KeyState": KeyState.CREATING.value}

    def sync_with(
        self, svc: KeyService, key: KeyRecord, peer: Peer, region: str, *, patient: bool = False
    ) -> dict[str, Any]:
        """Exchange views of ``key`` with its related key in ``region`` at ``peer``."""
        body: dict[str, Any] = {"Key": key_view(key), "Region": region}
        if key.is_primary:
            body["Materials"] = seal_materials(svc, key, peer.identity.transport_pub, region)
        return self.send(peer, "sync", body, patient=patient)

    def _receive_sync(self, peer: Peer, body: dict[str, Any]) -> dict[str, Any]:
        view = body["Key"]
        region = str(body["Region"])
        svc = self._service(str(view["Account"]), region)
        key = svc.get_key(str(view["KeyId"]))
        sender_region = str(view["Region"])
        self._serves(peer, sender_region)
        if key is None or not key.multi_region:
            return {"Absent": True, "Applied": []}
        related = {key.primary_region or key.region, *key.replica_regions}
        if sender_region not in related:
            # Only a related key's holder learns anything of this key.
            raise AccessDeniedException(f"{sender_region} holds no key related to this one.")
        applied = apply_view(self.identity, svc, key, view, body.get("Materials") or [])
        if applied:
            self.audit(svc, peer, "SynchronizeMultiRegionKey", key.arn, applied)
        fresh = svc.get_key(key.key_id) or key
        out: dict[str, Any] = {"Key": key_view(fresh), "Applied": applied}
        if fresh.is_primary and fresh.multi_region_epoch >= int(view["Epoch"]):
            out["Materials"] = seal_materials(
                svc, fresh, peer.identity.transport_pub, str(view["Region"])
            )
        return out


def peering_of(deployment: Deployment) -> Peering:
    """The deployment's peering (made on first use)."""
    found: Peering | None = getattr(deployment, "peering", None)
    if found is None:
        found = Peering(deployment)
        deployment.peering = found
    return found
