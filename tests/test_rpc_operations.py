"""Every operation through the daemon: the same results and errors as LocalKMS.

One scenario walks every operation of the core (lifecycle, aliases, tags,
cryptography, data keys, random, rotation, policies, grants, the batch
extensions) and the errors they answer with. It runs on LocalKMS in-process,
then through the socket with the blocking client and with the asyncio client
against a real daemon process, on each event loop; the transcripts, with ids,
times and random bytes normalized, must be identical.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rpc_support import EVENT_LOOPS, DaemonProcess, Normalizer, running_daemon

import kmscore
from kmscore import errors
from kmscore.client import LocalKMS, method_name
from kmscore.client.aio import AsyncRemoteKMS
from kmscore.client.remote import RemoteConnectionError, RemoteKMS, connect
from kmscore.operations import OPERATIONS

BOB = "arn:aws:iam::111122223333:user/bob"
CTX = {"tenant": "t-42", "purpose": "parity"}


@pytest.fixture(scope="module", params=EVENT_LOOPS)
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("rpc") / "data", loop=request.param) as d:
        yield d


class AsyncAdapter:
    """Calls an AsyncRemoteKMS's methods from blocking code, on a private loop."""

    def __init__(self, socket_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: AsyncRemoteKMS = self.loop.run_until_complete(
            kmscore.connect_async(socket_path)
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(**request: Any) -> Any:
            return self.loop.run_until_complete(method(**request))

        return call

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def scenario(kms: Any) -> list[Any]:
    """Run every operation; return the normalized transcript."""
    norm = Normalizer()
    out: list[Any] = []

    def step(label: str, name: str, **request: Any) -> Any:
        try:
            result = getattr(kms, name)(**request)
        except errors.KMSError as exc:
            out.append((label, "error", type(exc).__module__, type(exc).__name__, exc.code))
            return None
        shown = dict(result)
        for opaque in ("GrantToken", "NextMarker"):
            if opaque in shown:
                shown[opaque] = f"<{opaque}>"
        out.append((label, norm(shown)))
        return result

    k1 = step("create", "create_key", Description="one", Tags=[{"TagKey": "a", "TagValue": "b"}])
    k1 = k1["KeyMetadata"]["KeyId"]
    k2 = step("create2", "create_key", Description="two")["KeyMetadata"]["KeyId"]
    step("describe", "describe_key", KeyId=k1)
    listed = kms.list_keys(Limit=1000)
    out.append(("list_keys has k1", any(k["KeyId"] == k1 for k in listed["Keys"])))
    page = kms.list_keys(Limit=1)
    out.append(("list_keys page", len(page["Keys"]), page["Truncated"], "NextMarker" in page))
    step("disable", "disable_key", KeyId=k1)
    step("encrypt disabled", "encrypt", KeyId=k1, Plaintext=b"x")
    step("enable", "enable_key", KeyId=k1)
    step("update description", "update_key_description", KeyId=k1, Description="uno")
    step("schedule", "schedule_key_deletion", KeyId=k2, PendingWindowInDays=7)
    step("encrypt pending", "encrypt", KeyId=k2, Plaintext=b"x")
    step("schedule bad window", "schedule_key_deletion", KeyId=k1, PendingWindowInDays=3)
    step("cancel", "cancel_key_deletion", KeyId=k2)
    step("enable2", "enable_key", KeyId=k2)
    step("describe missing", "describe_key", KeyId="1234abcd-12ab-34cd-56ef-1234567890ab")
    step("describe no id", "describe_key")
    step("unknown member", "describe_key", KeyId=k1, Bogus=1)

    alias = f"alias/parity-{uuid.uuid4()}"  # normalized like the key ids
    step("alias", "create_alias", AliasName=alias, TargetKeyId=k1)
    step("alias again", "create_alias", AliasName=alias, TargetKeyId=k1)
    step("alias reserved", "create_alias", AliasName="alias/aws/x", TargetKeyId=k1)
    step("describe by alias", "describe_key", KeyId=alias)
    step("update alias", "update_alias", AliasName=alias, TargetKeyId=k2)
    step("list aliases", "list_aliases", KeyId=k2)
    step("delete alias", "delete_alias", AliasName=alias)
    step("list aliases after", "list_aliases", KeyId=k2)

    step("tag", "tag_resource", KeyId=k1, Tags=[{"TagKey": "c", "TagValue": "d"}])
    step("tags", "list_resource_tags", KeyId=k1)
    step("untag", "untag_resource", KeyId=k1, TagKeys=["a"])
    step("tags after", "list_resource_tags", KeyId=k1)

    enc = step("encrypt", "encrypt", KeyId=k1, Plaintext=b"secret", EncryptionContext=CTX)
    dec = step("decrypt", "decrypt", CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=CTX)
    out.append(("round trip", dec["Plaintext"] == b"secret"))
    step("decrypt wrong context", "decrypt", CiphertextBlob=enc["CiphertextBlob"])
    step("decrypt garbage", "decrypt", CiphertextBlob=b"\x00" * 60)
    step("encrypt too long", "encrypt", KeyId=k1, Plaintext=b"x" * 4097)
    re_enc = step(
        "re-encrypt",
        "re_encrypt",
        CiphertextBlob=enc["CiphertextBlob"],
        SourceEncryptionContext=CTX,
        DestinationKeyId=k2,
    )
    dec2 = step("decrypt re-encrypted", "decrypt", CiphertextBlob=re_enc["CiphertextBlob"])
    out.append(("re-encrypt round trip", dec2["Plaintext"] == b"secret"))

    dk = step("data key", "generate_data_key", KeyId=k1, KeySpec="AES_256", EncryptionContext=CTX)
    back = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=CTX)
    out.append(("data key round trip", back["Plaintext"] == dk["Plaintext"]))
    step("data key bytes", "generate_data_key", KeyId=k1, NumberOfBytes=64)
    step("data key both", "generate_data_key", KeyId=k1, NumberOfBytes=64, KeySpec="AES_256")
    step("no plaintext", "generate_data_key_without_plaintext", KeyId=k1, KeySpec="AES_128")
    step("random", "generate_random", NumberOfBytes=32)
    step("random zero", "generate_random", NumberOfBytes=0)
    step("random too many", "generate_random", NumberOfBytes=1025)

    step("rotation on", "enable_key_rotation", KeyId=k1, RotationPeriodInDays=90)
    step("rotation status", "get_key_rotation_status", KeyId=k1)
    step("rotate", "rotate_key_on_demand", KeyId=k1)
    step("rotations", "list_key_rotations", KeyId=k1)
    old = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=CTX)
    out.append(("old version decrypts", old["Plaintext"] == b"secret"))
    step("rotation off", "disable_key_rotation", KeyId=k1)
    step("rotation bad period", "enable_key_rotation", KeyId=k1, RotationPeriodInDays=10)

    policy = step("get policy", "get_key_policy", KeyId=k1, PolicyName="default")
    step("list policies", "list_key_policies", KeyId=k1)
    step("put policy", "put_key_policy", KeyId=k1, PolicyName="default", Policy=policy["Policy"])
    step("put bad policy", "put_key_policy", KeyId=k1, PolicyName="default", Policy="{")

    grant = step(
        "grant",
        "create_grant",
        KeyId=k1,
        GranteePrincipal=BOB,
        RetiringPrincipal=BOB,
        Operations=["Decrypt", "Encrypt"],
        Constraints={"EncryptionContextSubset": {"tenant": "t-42"}},
        Name="parity",
    )
    step("grant bad op", "create_grant", KeyId=k1, GranteePrincipal=BOB, Operations=["Nope"])
    step("grants", "list_grants", KeyId=k1)
    # Not filtered by key: earlier runs on the same daemon left grants too.
    retirable = kms.list_retirable_grants(RetiringPrincipal=BOB)
    mine = [g for g in retirable["Grants"] if g["KeyId"].endswith(k1)]
    out.append(("retirable", norm(mine), retirable["Truncated"]))
    grant2 = step("grant2", "create_grant", KeyId=k1, GranteePrincipal=BOB, Operations=["Decrypt"])
    step("revoke", "revoke_grant", KeyId=k1, GrantId=grant2["GrantId"])
    step("revoke again", "revoke_grant", KeyId=k1, GrantId=grant2["GrantId"])
    step("retire", "retire_grant", KeyId=k1, GrantId=grant["GrantId"])
    step("grants after", "list_grants", KeyId=k1)

    batch = step(
        "data keys", "generate_data_keys", KeyId=k1, Count=5, KeySpec="AES_256",
        EncryptionContext=CTX,
    )  # fmt: skip
    step("data keys no plaintext", "generate_data_keys", KeyId=k2, Count=3, NumberOfBytes=16,
         WithoutPlaintext=True)  # fmt: skip
    step("data keys too many", "generate_data_keys", KeyId=k1, Count=10001, KeySpec="AES_256")
    blobs = [*batch["CiphertextBlobs"], b"\x01" * 70, enc["CiphertextBlob"]]
    many = step("decrypt many", "decrypt_many", CiphertextBlobs=blobs, EncryptionContext=CTX)
    plain = [r.get("Plaintext") for r in many["Results"]]
    out.append(("decrypt many plaintexts", plain[:5] == batch["Plaintexts"], plain[6]))
    step("dry run", "encrypt", KeyId=k1, Plaintext=b"x", DryRun=True)
    return out


@pytest.fixture(scope="module")
def local_transcript(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    with LocalKMS(tmp_path_factory.mktemp("local") / "data") as kms:
        return scenario(kms)


def test_every_operation_matches_localkms_blocking(
    daemon: DaemonProcess, local_transcript: list[Any]
) -> None:
    with connect(daemon.socket) as kms:
        remote = scenario(kms)
    assert remote == local_transcript


def test_every_operation_matches_localkms_async(
    daemon: DaemonProcess, local_transcript: list[Any]
) -> None:
    adapter = AsyncAdapter(daemon.socket)
    try:
        remote = scenario(adapter)
    finally:
        adapter.close()
    assert remote == local_transcript


def test_clients_have_exactly_localkms_operation_methods() -> None:
    names = {method_name(op) for op in OPERATIONS}
    for cls in (LocalKMS, RemoteKMS, AsyncRemoteKMS):
        public = {n for n in dir(cls) if not n.startswith("_")}
        assert names <= public, cls
    extra = {"call", "close", "socket_path", "connect"}
    assert {n for n in dir(RemoteKMS) if not n.startswith("_")} - names <= extra
    assert {n for n in dir(AsyncRemoteKMS) if not n.startswith("_")} - names <= extra
    assert asyncio.iscoroutinefunction(AsyncRemoteKMS.generate_data_key)


def test_lazy_exports() -> None:
    assert kmscore.connect is connect
    assert kmscore.RemoteKMS is RemoteKMS
    assert kmscore.AsyncRemoteKMS is AsyncRemoteKMS
    assert "connect" in kmscore.__all__ and "connect_async" in kmscore.__all__


def test_results_have_aware_datetimes_and_bytes(daemon: DaemonProcess) -> None:
    with connect(daemon.socket) as kms:
        meta = kms.create_key()["KeyMetadata"]
        assert meta["CreationDate"].utcoffset().total_seconds() == 0
        again = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
        assert again["CreationDate"] == meta["CreationDate"]
        assert type(kms.generate_random(NumberOfBytes=8)["Plaintext"]) is bytes


def test_import_through_the_daemon(daemon: DaemonProcess) -> None:
    """Key material imported through the socket, ValidTo as a msgpack Timestamp."""
    from datetime import UTC, datetime, timedelta

    from import_helpers import import_material

    material = os.urandom(32)
    valid_to = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    with connect(daemon.socket) as kms:
        key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        out = import_material(
            kms, key, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to
        )
        meta = kms.describe_key(KeyId=key)["KeyMetadata"]
        assert meta["KeyState"] == "Enabled" and meta["ValidTo"] == valid_to
        assert meta["CurrentKeyMaterialId"] == out["KeyMaterialId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
        assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["Operation"] == "Decrypt"


def test_request_members_msgpack_cannot_carry_are_validation_errors(
    daemon: DaemonProcess,
) -> None:
    with connect(daemon.socket) as kms:
        with pytest.raises(errors.ValidationException):
            kms.encrypt(KeyId="alias/x", Plaintext={1, 2})
        with pytest.raises(errors.ValidationException):
            kms.generate_random(NumberOfBytes=1 << 70)
        # A request over the 1 MiB frame limit is refused before it is sent.
        with pytest.raises(errors.ValidationException, match="1048576"):
            kms.decrypt_many(CiphertextBlobs=[b"x" * 6000] * 200)
        # The connection is still good.
        assert len(kms.generate_random(NumberOfBytes=4)["Plaintext"]) == 4


def test_threads_share_one_client(daemon: DaemonProcess) -> None:
    import threading

    with connect(daemon.socket) as kms:
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        failures: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(100):
                    ctx = {"thread": str(n), "i": str(i)}
                    blob = kms.encrypt(KeyId=key_id, Plaintext=b"%d" % i, EncryptionContext=ctx)
                    back = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=ctx)
                    assert back["Plaintext"] == b"%d" % i
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures


def test_connect_without_a_daemon(tmp_path: Path) -> None:
    with pytest.raises(RemoteConnectionError, match="No kmscore daemon"):
        connect(tmp_path / "nothing.sock")
    with pytest.raises(RemoteConnectionError):
        connect(data_dir=tmp_path)

    async def attempt() -> None:
        await kmscore.connect_async(tmp_path / "nothing.sock")

    with pytest.raises(RemoteConnectionError):
        asyncio.run(attempt())


def test_closed_client_refuses_calls(daemon: DaemonProcess) -> None:
    kms = connect(daemon.socket)
    kms.close()
    with pytest.raises(RemoteConnectionError, match="closed"):
        kms.generate_random(NumberOfBytes=1)
