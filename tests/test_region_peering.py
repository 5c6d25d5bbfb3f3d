"""Multi-Region keys between deployments on this machine: separate data dirs, root keys
and ports, peered with mutual authentication (kmscore.service.peering)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_awsjson_support import Endpoint, running_endpoint

from kmscore.crypto.sealing import PeerIdentity, open_sealed, seal
from kmscore.errors import AccessDeniedException, InvalidCiphertextException
from kmscore.service.peering import Peering, peering_of
from kmscore.service.regions import Deployment
from kmscore.service.replication import converge_all

EAST, WEST, SOUTH = "us-east-1", "us-west-2", "ap-south-1"


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def peering(ep: Endpoint) -> Peering:
    deployment = ep.service.deployment
    assert isinstance(deployment, Deployment)
    return peering_of(deployment)


def peer_all(eps: dict[str, Endpoint]) -> None:
    for ep in eps.values():
        for other_name, other in eps.items():
            if other is not ep:
                fingerprint = peering(other).identity.public.fingerprint
                peering(ep).add_peer(other_name, other.url, fingerprint)


@contextlib.contextmanager
def deployments(tmp: Path, regions: list[str]) -> Iterator[dict[str, Endpoint]]:
    with contextlib.ExitStack() as stack:
        eps = {
            region: stack.enter_context(running_endpoint(tmp / region, region=region))
            for region in regions
        }
        peer_all(eps)
        yield eps


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Endpoint]]:
    with deployments(tmp_path_factory.mktemp("peers"), [EAST, WEST]) as eps:
        yield eps


def clients(eps: dict[str, Endpoint]) -> dict[str, Any]:
    return {region: ep.client(region=region) for region, ep in eps.items()}


def test_replicate_to_a_peer_and_decrypt_on_either_side(pair: dict[str, Endpoint]) -> None:
    kms = clients(pair)
    # Different root keys: the deployments share nothing but the peering.
    assert pair[EAST].service.root_key.check_value() != pair[WEST].service.root_key.check_value()
    md = kms[EAST].create_key(MultiRegion=True, Description="p")["KeyMetadata"]
    out = kms[EAST].replicate_key(
        KeyId=md["KeyId"], ReplicaRegion=WEST, Description="at the peer",
        Tags=[{"TagKey": "k", "TagValue": "v"}],
    )  # fmt: skip
    assert out["ReplicaKeyMetadata"]["Arn"].split(":")[3] == WEST
    there = kms[WEST].describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert there["KeyState"] == "Enabled" and there["Description"] == "at the peer"
    assert there["MultiRegionConfiguration"]["PrimaryKey"]["Region"] == EAST
    assert kms[WEST].list_resource_tags(KeyId=md["KeyId"])["Tags"] == [
        {"TagKey": "k", "TagValue": "v"}
    ]
    for a, b in ((EAST, WEST), (WEST, EAST)):
        blob = kms[a].encrypt(KeyId=md["KeyId"], Plaintext=a.encode())["CiphertextBlob"]
        assert kms[b].decrypt(CiphertextBlob=blob)["Plaintext"] == a.encode()
    # Both sides audited it: the call at the primary, the replica's making at the peer.
    from kmscore.audit import query

    for region, ep in pair.items():
        ep.service.auditor.trail.flush()  # type: ignore[attr-defined]
        names = {r["eventName"] for r in query(ep.data_dir, key_id=md["KeyId"])}
        assert "ReplicateKey" in names, region
        if region == WEST:
            assert "SynchronizeMultiRegionKey" in names  # made usable by the primary's sync
        events = list(query(ep.data_dir, key_id=md["KeyId"], event_name="ReplicateKey"))
        assert all(b"Sealed" not in json.dumps(e).encode() for e in events)
    # A retry is refused as AWS refuses a Region that holds one; nothing changes.
    with pytest.raises(ClientError) as err:
        kms[EAST].replicate_key(KeyId=md["KeyId"], ReplicaRegion=WEST)
    assert code(err) == "AlreadyExistsException"


def test_rotation_and_primary_change_reach_the_peer(pair: dict[str, Endpoint]) -> None:
    kms = clients(pair)
    key_id = kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    kms[EAST].rotate_key_on_demand(KeyId=key_id)
    east = kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
    west = kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert west["CurrentKeyMaterialId"] == east["CurrentKeyMaterialId"]
    blob = kms[WEST].encrypt(KeyId=key_id, Plaintext=b"v2")["CiphertextBlob"]
    assert blob[18:22] == (2).to_bytes(4, "big")
    kms[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    for region in (EAST, WEST):
        config = kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        assert config["PrimaryKey"]["Region"] == WEST, region
    kms[WEST].rotate_key_on_demand(KeyId=key_id)
    v3 = kms[WEST].encrypt(KeyId=key_id, Plaintext=b"v3")["CiphertextBlob"]
    assert kms[EAST].decrypt(CiphertextBlob=v3)["Plaintext"] == b"v3"
    with pytest.raises(ClientError) as err:
        kms[EAST].rotate_key_on_demand(KeyId=key_id)
    assert code(err) == "UnsupportedOperationException"


def test_deleting_the_replica_at_the_peer_lets_the_primary_go(pair: dict[str, Endpoint]) -> None:
    kms = clients(pair)
    key_id = kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert kms[EAST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["KeyState"] == (
        "PendingReplicaDeletion"
    )
    # The replica's window passes at the peer (as maintenance would delete it).
    west = pair[WEST].service
    west.delete_expired(west.store.get_key(key_id))  # type: ignore[arg-type]
    converge_all(pair[EAST].service.deployment)
    md = kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert (
        md["KeyState"] == "PendingDeletion" and md["MultiRegionConfiguration"]["ReplicaKeys"] == []
    )


def test_a_peer_with_another_identity_is_refused(pair: dict[str, Endpoint], tmp_path: Path) -> None:
    with running_endpoint(tmp_path / "impostor", region=WEST) as impostor:
        real = peering(pair[WEST]).identity.public.fingerprint
        # Registering it under the real peer's fingerprint: refused.
        with pytest.raises(AccessDeniedException, match="fingerprint"):
            peering(pair[EAST]).add_peer("impostor", impostor.url, real)
        # Messages it signs are refused: it is not a registered peer.
        impostor_peering = peering(impostor)
        impostor_peering.add_peer(
            "east", pair[EAST].url, peering(pair[EAST]).identity.public.fingerprint
        )
        with pytest.raises(AccessDeniedException, match="not a registered peer"):
            impostor_peering.send(impostor_peering.peers()[0], "hello", {})
        # An answer signed by another key than the registered one is refused.
        east = peering(pair[EAST])
        honest = east.peers()[0]
        assert honest.name == WEST
        from dataclasses import replace

        forged = replace(honest, url=impostor.url)
        with pytest.raises(AccessDeniedException):
            east.send(forged, "hello", {})


def test_replayed_and_tampered_messages_are_refused(pair: dict[str, Endpoint]) -> None:
    import base64

    east, west = peering(pair[EAST]), peering(pair[WEST])
    captured: list[bytes] = []
    original = east.channel.post

    def spy(url: str, body: bytes, signature: bytes | None) -> tuple[bytes, str]:
        sig = base64.b64encode(signature or b"").decode()
        captured.append(json.dumps({"Message": body.decode(), "Signature": sig}).encode())
        return original(url, body, signature)

    east.channel.post = spy  # type: ignore[method-assign]
    try:
        east.send(east.peers()[0], "hello", {})
    finally:
        east.channel.post = original  # type: ignore[method-assign]
    status, body = west.handle(captured[0])
    assert status == 403 and b"replay" in body
    envelope = json.loads(captured[0])
    envelope["Message"] = envelope["Message"].replace('"hello"', '"sync"')
    status, body = west.handle(json.dumps(envelope).encode())
    assert status == 403 and b"not signed" in body


def test_sealing_is_bound_to_recipient_and_purpose() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    mine, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pub = mine.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sealed = seal(pub, b"k" * 32, b"arn|1")
    assert b"k" * 32 not in sealed
    assert open_sealed(mine, sealed, b"arn|1") == b"k" * 32
    for key, aad, blob in (
        (other, b"arn|1", sealed),
        (mine, b"arn|2", sealed),
        (mine, b"arn|1", sealed[:-1] + bytes([sealed[-1] ^ 1])),
        (mine, b"arn|1", sealed[:10]),
    ):
        with pytest.raises(InvalidCiphertextException):
            open_sealed(key, blob, aad)
    assert "k" not in repr(PeerIdentity("d", *PeerIdentity.generate()))


def test_three_deployments_replicate_rotate_and_move_the_primary(tmp_path: Path) -> None:
    with deployments(tmp_path, [EAST, WEST, SOUTH]) as eps:
        kms = clients(eps)
        key_id = kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=SOUTH)
        kms[EAST].rotate_key_on_demand(KeyId=key_id)
        kms[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=SOUTH)
        # The old primary told both; the new primary rotates and tells both.
        kms[SOUTH].rotate_key_on_demand(KeyId=key_id)
        blob = kms[SOUTH].encrypt(KeyId=key_id, Plaintext=b"3")["CiphertextBlob"]
        for region in (EAST, WEST, SOUTH):
            md = kms[region].describe_key(KeyId=key_id)["KeyMetadata"]
            config = md["MultiRegionConfiguration"]
            assert config["PrimaryKey"]["Region"] == SOUTH, region
            assert sorted(r["Region"] for r in config["ReplicaKeys"]) == [EAST, WEST], region
            assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"3"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=200)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda m, sig: json.dumps({"Message": json.dumps(m), "Signature": sig}).encode(),
        st.dictionaries(
            st.sampled_from(["From", "To", "Time", "Nonce", "Op", "Body"]), _JSON, max_size=6
        ),
        st.text(max_size=20),
    )
)
def test_any_peering_envelope_is_refused_without_raising(
    pair: dict[str, Endpoint], raw: bytes
) -> None:
    status, body = peering(pair[WEST]).handle(raw)
    answer = json.loads(body)
    if status == 200:
        # Only the unauthenticated identity request is answered, with public keys only.
        assert set(answer) == {"Message"}
        assert set(json.loads(answer["Message"])) == {"Identity", "Regions"}
    else:
        assert status in (400, 403) and answer["__type"].endswith("Exception")


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(st.sampled_from(["DeploymentId", "IdentityKey", "TransportKey"]), _JSON)
)
def test_peer_identity_parser_refuses_malformed_input(data: dict[str, Any]) -> None:
    from kmscore.crypto.sealing import PublicIdentity

    try:
        found = PublicIdentity.from_json(data)  # type: ignore[arg-type]
    except ValueError:
        return
    assert len(found.identity_pub) == 32 and len(found.transport_pub) == 32


def test_a_peer_learns_nothing_of_keys_not_related_to_it(pair: dict[str, Endpoint]) -> None:
    from kmscore.service.peering import key_view

    kms = clients(pair)
    key_id = kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east_key = pair[EAST].service.store.get_key(key_id)
    assert east_key is not None
    west = peering(pair[WEST])
    to_east = next(p for p in west.peers() if p.name == EAST)
    # West claims to hold a replica of east's unreplicated key, with a newer view.
    forged = {**key_view(east_key), "Region": WEST, "Epoch": 99, "Replicas": [WEST]}
    with pytest.raises(AccessDeniedException, match="no key related"):
        west.send(to_east, "sync", {"Key": forged, "Region": EAST})
    # Nor may it speak for a Region it does not serve.
    forged = {**key_view(east_key), "Region": SOUTH}
    with pytest.raises(AccessDeniedException, match="does not serve"):
        west.send(to_east, "sync", {"Key": forged, "Region": EAST})
    after = pair[EAST].service.store.get_key(key_id)
    assert after is not None and after.replica_regions == () and after.multi_region_epoch == 0


def test_a_key_of_imported_material_is_not_replicated_to_a_peer(pair: dict[str, Endpoint]) -> None:
    kms = clients(pair)
    md = kms[EAST].create_key(Origin="EXTERNAL", MultiRegion=True)["KeyMetadata"]
    with pytest.raises(ClientError) as err:
        kms[EAST].replicate_key(KeyId=md["KeyId"], ReplicaRegion=WEST)
    assert code(err) == "UnsupportedOperationException"
    assert "EXTERNAL" in str(err.value)
    after = kms[EAST].describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert after["MultiRegionConfiguration"]["ReplicaKeys"] == []
    with pytest.raises(ClientError) as err:
        kms[WEST].describe_key(KeyId=md["KeyId"])
    assert code(err) == "NotFoundException"
