"""Rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
RotateKeyOnDemand, ListKeyRotations, automatic rotation by date, and rotation
forced by the AES-GCM invocation limit.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from service_helpers import Clock, all_pages, db_rows, expect, key_arn, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.model import blob as blobfmt


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(tmp_path: Path, clock: Clock) -> LocalKMS:
    with open_kms(tmp_path / "kms", clock) as k:
        yield k


@pytest.fixture
def key(kms: LocalKMS) -> str:
    return new_key(kms)


def _version(blob: bytes) -> int:
    return blobfmt.parse(blob).material_version


def _rotations(kms: LocalKMS, key: str, **request: object) -> list[dict[str, object]]:
    return all_pages(kms.list_key_rotations, "Rotations", 1000, KeyId=key, **request)[0]


# --- RotateKeyOnDemand -------------------------------------------------------------------


def test_rotate_on_demand_keeps_old_ciphertext(kms: LocalKMS, key: str, clock: Clock) -> None:
    before = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    old = kms.encrypt(KeyId=key, Plaintext=b"old", EncryptionContext={"c": "1"})["CiphertextBlob"]
    old_dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert _version(old) == 1
    clock.advance(days=1)
    assert kms.rotate_key_on_demand(KeyId=key) == {"KeyId": key_arn(key)}
    after = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert after != before
    new = kms.encrypt(KeyId=key, Plaintext=b"new")["CiphertextBlob"]
    assert _version(new) == 2
    assert _version(kms.generate_data_key(KeyId=key, KeySpec="AES_256")["CiphertextBlob"]) == 2
    out = kms.decrypt(CiphertextBlob=old, EncryptionContext={"c": "1"})
    assert out["Plaintext"] == b"old" and out["KeyMaterialId"] == before
    assert kms.decrypt(CiphertextBlob=old_dk["CiphertextBlob"])["Plaintext"] == old_dk["Plaintext"]
    out = kms.decrypt(CiphertextBlob=new)
    assert out["Plaintext"] == b"new" and out["KeyMaterialId"] == after
    # ReEncrypt moves old ciphertext to the current version.
    moved = kms.re_encrypt(
        CiphertextBlob=old, SourceEncryptionContext={"c": "1"}, DestinationKeyId=key
    )
    assert _version(moved["CiphertextBlob"]) == 2
    assert moved["SourceKeyMaterialId"] == before and moved["DestinationKeyMaterialId"] == after
    # The versions really are different key material.
    forged = blobfmt.header(key, 2) + old[blobfmt.HEADER_LENGTH :]
    expect(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=forged,
        EncryptionContext={"c": "1"},
    )


def test_rotated_material_survives_reopen(tmp_path: Path, clock: Clock) -> None:
    with open_kms(tmp_path, clock) as kms:
        key = new_key(kms)
        blobs = []
        for i in range(4):
            blobs.append(kms.encrypt(KeyId=key, Plaintext=bytes([i]))["CiphertextBlob"])
            kms.rotate_key_on_demand(KeyId=key)
    with open_kms(tmp_path, clock) as kms:
        assert [_version(b) for b in blobs] == [1, 2, 3, 4]
        assert [kms.decrypt(CiphertextBlob=b)["Plaintext"] for b in blobs] == [
            bytes([i]) for i in range(4)
        ]
        assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 5
    rows = db_rows(
        tmp_path, "SELECT version FROM key_materials WHERE key_id = ? ORDER BY 1", (key,)
    )
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]


def test_twenty_five_on_demand_rotations(kms: LocalKMS, key: str, clock: Clock) -> None:
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    clock.advance(days=91)
    kms.run_maintenance()  # one automatic rotation does not count against the limit
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key)
    err = expect("LimitExceededException", kms.rotate_key_on_demand, KeyId=key)
    assert "25" in err.message
    rotations = _rotations(kms, key)
    assert Counter(r["RotationType"] for r in rotations) == {"ON_DEMAND": 25, "AUTOMATIC": 1}
    assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 27
    # Automatic rotation goes on after the on-demand limit.
    clock.advance(days=91)
    kms.run_maintenance()
    assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 28


def test_rotate_on_demand_errors(kms: LocalKMS, key: str) -> None:
    expect("NotFoundException", kms.rotate_key_on_demand, KeyId=str(uuid.uuid4()))
    expect("ValidationException", kms.rotate_key_on_demand)
    expect("ValidationException", kms.rotate_key_on_demand, KeyId=key, RotationPeriodInDays=90)
    kms.disable_key(KeyId=key)
    expect("DisabledException", kms.rotate_key_on_demand, KeyId=key)
    kms.schedule_key_deletion(KeyId=key)
    expect("KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key)
    assert len(kms.service.store.list_materials(key)) == 1


# --- EnableKeyRotation / DisableKeyRotation / GetKeyRotationStatus ---------------------


def test_rotation_status(kms: LocalKMS, key: str, clock: Clock) -> None:
    assert kms.get_key_rotation_status(KeyId=key) == {
        "KeyRotationEnabled": False,
        "KeyId": key_arn(key),
    }
    assert kms.enable_key_rotation(KeyId=key) == {}
    status = kms.get_key_rotation_status(KeyId=key)
    assert status == {
        "KeyRotationEnabled": True,
        "KeyId": key_arn(key),
        "RotationPeriodInDays": 365,
        "NextRotationDate": clock.now + timedelta(days=365),
    }
    assert status["NextRotationDate"].tzinfo is not None
    assert kms.disable_key_rotation(KeyId=key) == {}
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in kms.get_key_rotation_status(KeyId=key)


@pytest.mark.parametrize("days", [90, 91, 365, 2559, 2560])
def test_rotation_periods(kms: LocalKMS, key: str, clock: Clock, days: int) -> None:
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=days)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["RotationPeriodInDays"] == days
    assert status["NextRotationDate"] == clock.now + timedelta(days=days)


@pytest.mark.parametrize("days", [0, 1, 89, 2561, 10_000, "90", True, 90.0])
def test_bad_rotation_periods(kms: LocalKMS, key: str, days: object) -> None:
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=200)
    err = expect(
        "ValidationException", kms.enable_key_rotation, KeyId=key, RotationPeriodInDays=days
    )
    assert "rotationPeriodInDays" in err.message
    assert kms.get_key_rotation_status(KeyId=key)["RotationPeriodInDays"] == 200


def test_rotation_settings_by_state(kms: LocalKMS, key: str) -> None:
    kms.disable_key(KeyId=key)
    expect("DisabledException", kms.enable_key_rotation, KeyId=key)
    expect("DisabledException", kms.disable_key_rotation, KeyId=key)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    kms.schedule_key_deletion(KeyId=key)
    for op in (kms.enable_key_rotation, kms.disable_key_rotation):
        err = expect("KMSInvalidStateException", op, KeyId=key)
        assert err.message.endswith("is pending deletion.")
    # AWS's key-state table: GetKeyRotationStatus reads a key pending deletion
    # (footnote [7], not [3]); ListKeyRotations is taken to do the same.
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    for op in (
        kms.enable_key_rotation,
        kms.disable_key_rotation,
        kms.get_key_rotation_status,
        kms.list_key_rotations,
    ):
        expect("NotFoundException", op, KeyId=str(uuid.uuid4()))


def test_rotation_settings_survive_reopen(tmp_path: Path, clock: Clock) -> None:
    with open_kms(tmp_path, clock) as kms:
        key = new_key(kms)
        kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)
    with open_kms(tmp_path, clock) as kms:
        status = kms.get_key_rotation_status(KeyId=key)
        assert status["RotationPeriodInDays"] == 180
        assert status["NextRotationDate"] == clock.now + timedelta(days=180)


# --- automatic rotation ------------------------------------------------------------------


def test_automatic_rotation_when_the_date_passes(kms: LocalKMS, key: str, clock: Clock) -> None:
    old = kms.encrypt(KeyId=key, Plaintext=b"old")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    due = kms.get_key_rotation_status(KeyId=key)["NextRotationDate"]
    clock.now = due - timedelta(seconds=1)
    kms.run_maintenance()
    assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 1
    assert _rotations(kms, key) == []
    clock.now = due
    kms.run_maintenance()
    assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 2
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["NextRotationDate"] == due + timedelta(days=90)
    (rotation,) = _rotations(kms, key)
    assert rotation["RotationType"] == "AUTOMATIC" and rotation["RotationDate"] == due
    # Maintenance again at the same time does nothing more.
    kms.run_maintenance()
    assert len(_rotations(kms, key)) == 1


def test_automatic_rotation_at_open(tmp_path: Path, clock: Clock) -> None:
    with open_kms(tmp_path, clock) as kms:
        key = new_key(kms)
        idle = new_key(kms)
        kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    clock.advance(days=100)
    with open_kms(tmp_path, clock) as kms:  # LocalKMS runs maintenance when it opens
        assert _version(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 2
        assert _version(kms.encrypt(KeyId=idle, Plaintext=b"x")["CiphertextBlob"]) == 1


def test_disabled_key_is_not_rotated(kms: LocalKMS, key: str, clock: Clock) -> None:
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.disable_key(KeyId=key)
    clock.advance(days=200)
    kms.run_maintenance()
    assert len(kms.service.store.list_materials(key)) == 1
    kms.enable_key(KeyId=key)
    kms.run_maintenance()
    assert len(kms.service.store.list_materials(key)) == 2


def test_disabling_rotation_stops_it(kms: LocalKMS, key: str, clock: Clock) -> None:
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.disable_key_rotation(KeyId=key)
    clock.advance(days=400)
    kms.run_maintenance()
    assert len(kms.service.store.list_materials(key)) == 1


# --- ListKeyRotations ----------------------------------------------------------------------


def test_list_key_rotations_contents(kms: LocalKMS, key: str, clock: Clock) -> None:
    assert kms.list_key_rotations(KeyId=key) == {"Rotations": [], "Truncated": False}
    materials = [kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]]
    dates = []
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    for kind in ("ON_DEMAND", "AUTOMATIC", "ON_DEMAND"):
        clock.advance(days=91)
        if kind == "ON_DEMAND":
            kms.rotate_key_on_demand(KeyId=key)
        else:
            kms.run_maintenance()
        dates.append(clock.now)
        materials.append(kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"])
    assert len(set(materials)) == 4
    rotations = _rotations(kms, key)
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "AUTOMATIC", "ON_DEMAND"]
    assert [r["RotationDate"] for r in rotations] == dates
    assert all(r["RotationDate"].tzinfo is not None for r in rotations)
    assert [r["KeyMaterialId"] for r in rotations] == materials[1:]
    assert [r["KeyMaterialState"] for r in rotations] == ["NON_CURRENT", "NON_CURRENT", "CURRENT"]
    assert {r["KeyId"] for r in rotations} <= {key, key_arn(key)}
    everything = _rotations(kms, key, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert [r["KeyMaterialId"] for r in everything] == materials
    assert "RotationDate" not in everything[0] and "RotationType" not in everything[0]
    assert everything[1:] == rotations
    assert _rotations(kms, key, IncludeKeyMaterial="ROTATIONS_ONLY") == rotations


def test_list_key_rotations_pages(kms: LocalKMS, key: str) -> None:
    for _ in range(5):
        kms.rotate_key_on_demand(KeyId=key)
    full = _rotations(kms, key)
    for limit in (1, 2, 4, 5):
        items, pages = all_pages(kms.list_key_rotations, "Rotations", limit, KeyId=key)
        assert items == full
        assert pages == -(-5 // limit)
    items, _ = all_pages(
        kms.list_key_rotations, "Rotations", 2, KeyId=key, IncludeKeyMaterial="ALL_KEY_MATERIAL"
    )
    assert len(items) == 6


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"Limit": 0}, "ValidationException"),
        ({"Limit": 1001}, "ValidationException"),
        ({"IncludeKeyMaterial": "SOME"}, "ValidationException"),
        ({"Marker": "???"}, "InvalidMarkerException"),
        ({"Marker": base64.urlsafe_b64encode(b"m1:abc").decode()}, "InvalidMarkerException"),
        ({"Marker": base64.urlsafe_b64encode(b"v9:2").decode()}, "InvalidMarkerException"),
        # str.isdigit() is True for superscript two, which int() refuses.
        ({"Marker": base64.urlsafe_b64encode("m1:²".encode()).decode()}, "InvalidMarkerException"),
    ],
)
def test_list_key_rotations_refusals(
    kms: LocalKMS, key: str, request_: dict[str, object], code: str
) -> None:
    kms.rotate_key_on_demand(KeyId=key)
    kms.rotate_key_on_demand(KeyId=key)
    expect(code, kms.list_key_rotations, KeyId=key, **request_)


# --- the AES-GCM invocation limit -------------------------------------------------------


def test_invocation_limit_rotates_and_old_blobs_decrypt(tmp_path: Path, clock: Clock) -> None:
    block, limit = 4, 10
    with open_kms(tmp_path, clock, invocation_block=block, invocation_limit=limit) as kms:
        key = new_key(kms)
        made = []
        for i in range(40):
            made.append(
                (kms.encrypt(KeyId=key, Plaintext=bytes([i]))["CiphertextBlob"], bytes([i]))
            )
        dk = kms.generate_data_keys(KeyId=key, Count=7, KeySpec="AES_128")
        made += list(zip(dk["CiphertextBlobs"], dk["Plaintexts"], strict=True))
        one = kms.generate_data_key(KeyId=key, NumberOfBytes=5)
        made.append((one["CiphertextBlob"], one["Plaintext"]))
        per_version = Counter(_version(b) for b, _ in made)
        assert len(per_version) >= 5, "the limit never forced a rotation"
        assert max(per_version.values()) <= limit
        for blob, plaintext in made:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
        materials = kms.service.store.list_materials(key)
        for m in materials:
            assert m.reserved >= per_version.get(m.version, 0)
        # The forced rotations are automatic rotations, and listed.
        rotations = _rotations(kms, key)
        assert len(rotations) == len(materials) - 1
        assert {r["RotationType"] for r in rotations} == {"AUTOMATIC"}
    with open_kms(tmp_path, clock, invocation_block=block, invocation_limit=limit) as kms:
        for blob, plaintext in made:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext


def test_reserved_counter_never_decreases_across_reopen(tmp_path: Path, clock: Clock) -> None:
    block = 4
    history: list[int] = []
    encrypted = 0
    key = None
    for round_ in range(6):
        with open_kms(tmp_path, clock, invocation_block=block, invocation_limit=10**9) as kms:
            if key is None:
                key = new_key(kms)
            for _ in range(round_ % 3 + 1):
                blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
                assert _version(blob) == 1
                encrypted += 1
                (reserved,) = db_rows(
                    tmp_path, "SELECT reserved FROM key_materials WHERE key_id = ?", (key,)
                )[0]
                # Reserved durably before use: the file already covers this one.
                assert reserved >= encrypted
        history.append(reserved)
    # Each open starts a fresh block: the count only grows, never restarts.
    assert history == sorted(history)
    assert len(set(history)) == len(history)
    assert history[-1] == block * 6


def test_invocation_limit_is_shared_by_two_services(tmp_path: Path, clock: Clock) -> None:
    """Two services on one data dir reserve disjoint blocks of the same count."""
    opts = {"invocation_block": 3, "invocation_limit": 12}
    with open_kms(tmp_path, clock, **opts) as a, open_kms(tmp_path, clock, **opts) as b:
        key = new_key(a)
        blobs = []
        for i in range(30):
            side = a if i % 2 else b
            blobs.append(side.encrypt(KeyId=key, Plaintext=bytes([i]))["CiphertextBlob"])
        per_version = Counter(_version(x) for x in blobs)
        assert max(per_version.values()) <= 12
        assert len(per_version) >= 3
        # Each service sees the other's newer versions at once, although its
        # cached key record is up to 50 ms old.
        for i, blob in enumerate(blobs):
            assert a.decrypt(CiphertextBlob=blob)["Plaintext"] == bytes([i])
            assert b.decrypt(CiphertextBlob=blob)["Plaintext"] == bytes([i])
        for side in (a, b):
            results = side.decrypt_many(CiphertextBlobs=blobs)["Results"]
            assert [r["Plaintext"] for r in results] == [bytes([i]) for i in range(30)]


def test_version_made_by_another_service_decrypts_at_once(tmp_path: Path, clock: Clock) -> None:
    with open_kms(tmp_path, clock) as a, open_kms(tmp_path, clock) as b:
        key = new_key(a)
        a.encrypt(KeyId=key, Plaintext=b"warm a's cache")
        b.encrypt(KeyId=key, Plaintext=b"warm b's cache")
        b.rotate_key_on_demand(KeyId=key)
        blob = b.encrypt(KeyId=key, Plaintext=b"v2")["CiphertextBlob"]
        assert _version(blob) == 2
        assert a.decrypt(CiphertextBlob=blob)["Plaintext"] == b"v2"
        b.rotate_key_on_demand(KeyId=key)
        blob3 = b.encrypt(KeyId=key, Plaintext=b"v3")["CiphertextBlob"]
        (result,) = a.decrypt_many(CiphertextBlobs=[blob3])["Results"]
        assert result["Plaintext"] == b"v3"
        # A version that exists nowhere is still refused.
        bogus = blobfmt.header(key, 4) + blob3[blobfmt.HEADER_LENGTH :]
        expect("InvalidCiphertextException", a.decrypt, CiphertextBlob=bogus)


def test_threads_share_the_invocation_count(tmp_path: Path, clock: Clock) -> None:
    """Threads encrypting at once never let one version pass the limit."""
    import threading

    limit = 50
    with open_kms(tmp_path, clock, invocation_block=7, invocation_limit=limit) as kms:
        key = new_key(kms)
        made: list[list[tuple[bytes, bytes]]] = [[] for _ in range(4)]
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(150):
                    plaintext = f"{t}-{i}".encode()
                    if i % 10 == 9:
                        out = kms.generate_data_keys(KeyId=key, Count=5, NumberOfBytes=8)
                        made[t] += zip(out["CiphertextBlobs"], out["Plaintexts"], strict=True)
                    else:
                        blob = kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]
                        made[t].append((blob, plaintext))
            except BaseException as exc:  # reported below, with the thread's failure
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        everything = [item for items in made for item in items]
        assert len(everything) == 4 * (135 + 15 * 5)
        per_version = Counter(_version(b) for b, _ in everything)
        assert max(per_version.values()) <= limit
        versions = [m.version for m in kms.service.store.list_materials(key)]
        assert versions == list(range(1, len(versions) + 1))
        assert len(versions) >= len(everything) // limit
        results = kms.decrypt_many(CiphertextBlobs=[b for b, _ in everything])["Results"]
        assert [r["Plaintext"] for r in results] == [p for _, p in everything]
