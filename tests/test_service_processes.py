"""Several processes on one data dir, and processes killed mid-work.

Children are real Python processes (``sys.executable``) that open the data dir
with ``LocalKMS``; they talk to the test over stdin/stdout, one JSON object or
one word per line.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Clock, db_rows, expect, new_key, open_kms, subprocess_env

from kmscore.model import blob as blobfmt


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _run(script: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- reopening in another process ----------------------------------------------------


READER = r"""
import base64, json, sys
from service_helpers import open_kms
data_dir, blobs = sys.argv[1], json.loads(sys.argv[2])
with open_kms(data_dir) as kms:
    keys = [k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]]
    plain = [base64.b64encode(kms.decrypt(CiphertextBlob=base64.b64decode(b))["Plaintext"]).decode()
             for b in blobs]
    key = keys[0]
    mine = kms.encrypt(KeyId=key, Plaintext=b"from the child", EncryptionContext={"by": "child"})
print(json.dumps({"keys": keys, "plain": plain,
                  "blob": base64.b64encode(mine["CiphertextBlob"]).decode()}))
"""


def test_second_process_sees_keys_and_decrypts(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        keys = sorted(new_key(kms) for _ in range(3))
        kms.rotate_key_on_demand(KeyId=keys[0])
        made = {_b64(kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"]): k for k in keys}
        # The parent stays open while the child works: both share the dir.
        out = json.loads(_run(READER, str(tmp_path), json.dumps(list(made))))
        assert out["keys"] == keys
        assert [_unb64(p).decode() for p in out["plain"]] == list(made.values())
        child_blob = _unb64(out["blob"])
        back = kms.decrypt(CiphertextBlob=child_blob, EncryptionContext={"by": "child"})
        assert back["Plaintext"] == b"from the child"
    with open_kms(tmp_path) as kms:  # and after everyone closed
        back = kms.decrypt(CiphertextBlob=child_blob, EncryptionContext={"by": "child"})
        assert back["Plaintext"] == b"from the child"


# --- concurrent writers ---------------------------------------------------------------


WRITER = r"""
import base64, json, sys
from service_helpers import open_kms
data_dir, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = []
with open_kms(data_dir, invocation_block=5, invocation_limit=23) as kms:
    shared = kms.describe_key(KeyId="alias/shared")["KeyMetadata"]["KeyId"]
    for i in range(count):
        key = kms.create_key(Description=f"{name}-{i}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/{name}-{i}", TargetKeyId=key)
        kms.tag_resource(KeyId=key, Tags=[{"TagKey": "by", "TagValue": name}])
        for target in (key, shared, "alias/shared"):
            text = f"{name}-{i}-{target}".encode()
            blob = kms.encrypt(KeyId=target, Plaintext=text)["CiphertextBlob"]
            out.append([key, base64.b64encode(blob).decode(), base64.b64encode(text).decode()])
        if i % 5 == 4:
            kms.rotate_key_on_demand(KeyId=key)
print(json.dumps(out))
"""


def test_two_processes_create_and_encrypt_concurrently(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        shared = new_key(kms)
        kms.create_alias(AliasName="alias/shared", TargetKeyId=shared)
    count = 25
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), name, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for name in ("alpha", "beta")
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    with open_kms(tmp_path) as kms:
        listed = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
        created = {key for result in results for key, _, _ in result}
        assert len(created) == 2 * count
        assert listed == created | {shared}
        aliases = {a["AliasName"] for a in kms.list_aliases(Limit=1000)["Aliases"]}
        assert aliases == {"alias/shared"} | {
            f"alias/{n}-{i}" for n in ("alpha", "beta") for i in range(count)
        }
        blobs = [(_unb64(b), _unb64(p)) for result in results for _, b, p in result]
        assert len(blobs) == 2 * count * 3
        for blob, plaintext in blobs:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
        # Both processes counted invocations of the shared key in one durable
        # count: no version served more than the limit between them.
        shared_versions = Counter(
            blobfmt.parse(b).material_version for b, _ in blobs if blobfmt.parse(b).key_id == shared
        )
        assert sum(shared_versions.values()) == 2 * count * 2
        assert max(shared_versions.values()) <= 23
        for m in kms.service.store.list_materials(shared):
            assert m.reserved >= shared_versions.get(m.version, 0)


# --- the cross-process cache -------------------------------------------------------------


SERVER = r"""
import json, sys
from service_helpers import open_kms
from kmscore.errors import KMSError
with open_kms(sys.argv[1]) as kms:
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            out = kms.call(request.pop("op"), **request)
            answer = {"ok": out.get("KeyId")}
        except KMSError as exc:
            answer = {"error": exc.code}
        print(json.dumps(answer), flush=True)
"""


class Peer:
    """A child process that runs one operation per line it is sent."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the peer died"
        return line.strip()

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.readline())

    def encrypt(self, key: str) -> dict[str, Any]:
        # Plaintext travels as a str over JSON; the peer encrypts its bytes.
        return self.call("GenerateDataKeyWithoutPlaintext", KeyId=key, NumberOfBytes=16)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_other_process_notices_changes_within_a_short_time(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        key = new_key(kms)
        other = new_key(kms)
        kms.create_alias(AliasName="alias/moving", TargetKeyId=key)
        peer = Peer(tmp_path)
        try:
            assert peer.encrypt(key)["ok"].endswith(key)  # warms the peer's caches
            assert peer.encrypt("alias/moving")["ok"].endswith(key)
            kms.disable_key(KeyId=key)
            time.sleep(0.2)  # the service rechecks the store at most every 50 ms
            assert peer.encrypt(key) == {"error": "DisabledException"}
            assert peer.encrypt("alias/moving") == {"error": "DisabledException"}
            kms.enable_key(KeyId=key)
            time.sleep(0.2)
            assert peer.encrypt(key)["ok"].endswith(key)
            kms.update_alias(AliasName="alias/moving", TargetKeyId=other)
            time.sleep(0.2)
            assert peer.encrypt("alias/moving")["ok"].endswith(other)
            kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
            time.sleep(0.2)
            assert peer.encrypt(key) == {"error": "KMSInvalidStateException"}
            kms.delete_alias(AliasName="alias/moving")
            time.sleep(0.2)
            assert peer.encrypt("alias/moving") == {"error": "NotFoundException"}
            # And the other way round: the peer changes, this process notices.
            assert peer.call("DisableKey", KeyId=other) == {"ok": None}
            time.sleep(0.2)
            expect("DisabledException", kms.encrypt, KeyId=other, Plaintext=b"x")
        finally:
            peer.close()


def test_alternating_processes_reserve_no_block_in_steady_state(tmp_path: Path) -> None:
    # A reservation by one process must not make the other drop its cached key
    # version: it would reserve a fresh block (2**20 invocations of the
    # version's 2**32) on its next encryption, after every call of the other.
    with open_kms(tmp_path) as kms:
        key = new_key(kms)
        peer = Peer(tmp_path)
        try:
            for _ in range(2):  # warm both: a block each, and the peer's opening seen
                kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=16)
                assert peer.encrypt(key)["ok"].endswith(key)
                time.sleep(0.07)
            ((warm,),) = db_rows(tmp_path, "SELECT reserved FROM key_materials")
            for _ in range(6):
                kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=16)
                time.sleep(0.07)  # past the 50 ms recheck of the store
                assert peer.encrypt(key)["ok"].endswith(key)
                time.sleep(0.07)
            ((after,),) = db_rows(tmp_path, "SELECT reserved FROM key_materials")
            assert after == warm
            # A real change is still noticed across the reservations.
            assert peer.call("DisableKey", KeyId=key) == {"ok": None}
            time.sleep(0.2)
            expect("DisabledException", kms.encrypt, KeyId=key, Plaintext=b"x")
        finally:
            peer.close()


def test_other_process_sees_a_key_deleted_after_its_window(tmp_path: Path) -> None:
    clock = Clock()
    with open_kms(tmp_path, clock) as kms:
        key = new_key(kms)
        peer = Peer(tmp_path)
        try:
            assert peer.encrypt(key)["ok"].endswith(key)
            kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
            clock.advance(days=8)
            kms.run_maintenance()
            time.sleep(0.2)
            assert peer.encrypt(key) == {"error": "NotFoundException"}
        finally:
            peer.close()


# --- crashes -------------------------------------------------------------------------------


CRASHER = r"""
import base64, os, sys
from service_helpers import open_kms
data_dir, round_ = sys.argv[1], sys.argv[2]
kms = open_kms(data_dir, invocation_block=8, invocation_limit=40)
keys = [k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]][:3]
os.write(1, b"ready\n")
i = 0
while True:
    if i % 7 == 0 or not keys:
        key = kms.create_key(Description=f"crash {round_} {i}")["KeyMetadata"]["KeyId"]
        keys.append(key)
        os.write(1, f"key {key}\n".encode())
    key = keys[i % len(keys)]
    plaintext = os.urandom(1 + i % 40)
    if i % 3 == 0:
        out = kms.generate_data_key(KeyId=key, NumberOfBytes=len(plaintext))
        plaintext, blob = out["Plaintext"], out["CiphertextBlob"]
    else:
        blob = kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]
    line = f"blob {key} {base64.b64encode(blob).decode()} {base64.b64encode(plaintext).decode()}\n"
    os.write(1, line.encode())
    i += 1
"""


def _crash_round(data_dir: Path, round_: int, delay: float) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(data_dir), str(round_)],
        stdout=subprocess.PIPE,
        env=subprocess_env(),
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    output = child.stdout.read()
    child.wait()
    assert child.returncode == -signal.SIGKILL
    # The last line may have been cut mid-write: only whole lines were told.
    return [line.decode() for line in output.split(b"\n")[:-1]]


def test_sigkill_never_loses_an_acknowledged_key_or_blob(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    keys: set[str] = set()
    blobs: list[tuple[str, bytes, bytes]] = []
    open_kms(tmp_path).close()  # initialize before the first child
    for round_ in range(5):
        lines = _crash_round(tmp_path, round_, rng.uniform(0.3, 1.5))
        told = 0
        for line in lines:
            kind, *fields = line.split(" ")
            if kind == "key":
                keys.add(fields[0])
            else:
                blobs.append((fields[0], _unb64(fields[1]), _unb64(fields[2])))
                told += 1
        assert told > 0, f"seed {seed}, round {round_}: the child acknowledged nothing"
        with open_kms(tmp_path) as kms:
            listed = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
            missing = keys - listed
            assert not missing, f"seed {seed}, round {round_}: lost keys {sorted(missing)[:3]}"
            for key, blob, plaintext in blobs:
                out = kms.decrypt(CiphertextBlob=blob)
                assert out["Plaintext"] == plaintext, f"seed {seed}, round {round_}"
                assert out["KeyId"].endswith(key)
    # Durable invocation counts cover every acknowledged encryption, and no
    # version served more than the limit, across all the crashes.
    per_version = Counter((k, blobfmt.parse(b).material_version) for k, b, _ in blobs)
    assert max(per_version.values()) <= 40, f"seed {seed}"
    rows = db_rows(tmp_path, "SELECT key_id, version, reserved FROM key_materials")
    reserved = {(k, v): r for k, v, r in rows}
    for (key, version), used in per_version.items():
        assert reserved[(key, version)] >= used, f"seed {seed}: {key} v{version}"
    assert len(blobs) > 50, f"seed {seed}: too little work to mean anything"


@pytest.mark.parametrize("stage", ["after-create", "mid-rotation-loop"])
def test_sigkill_during_rotation_loses_no_version(tmp_path: Path, stage: str) -> None:
    script = r"""
import base64, os, sys
from service_helpers import open_kms
kms = open_kms(sys.argv[1])
key = kms.create_key()["KeyMetadata"]["KeyId"]
os.write(1, f"key {key}\n".encode())
for i in range(24):
    blob = kms.encrypt(KeyId=key, Plaintext=bytes([i]))["CiphertextBlob"]
    os.write(1, f"blob {base64.b64encode(blob).decode()}\n".encode())
    kms.rotate_key_on_demand(KeyId=key)
    os.write(1, b"rotated\n")
os.write(1, b"done\n")
import time; time.sleep(60)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=subprocess_env()
    )
    assert child.stdout is not None
    first = child.stdout.readline().decode().split()
    key = first[1]
    if stage == "mid-rotation-loop":
        time.sleep(random.uniform(0.0, 0.05))
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read().split(b"\n")[:-1]
    child.wait()
    blobs = [_unb64(line.split()[1].decode()) for line in rest if line.startswith(b"blob ")]
    rotations = sum(1 for line in rest if line == b"rotated")
    with open_kms(tmp_path) as kms:
        versions = [m.version for m in kms.service.store.list_materials(key)]
        assert versions == list(range(1, len(versions) + 1))
        assert len(versions) >= rotations + 1
        for i, blob in enumerate(blobs):
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == bytes([i])
        current = kms.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]
        assert blobfmt.parse(current).material_version == versions[-1]


# --- first opens at the same moment ----------------------------------------------------


FIRST_OPEN = r"""
import base64, json, os, sys, time
data_dir, go = sys.argv[1], sys.argv[2]
from service_helpers import open_kms
while not os.path.exists(go):
    time.sleep(0.0005)
with open_kms(data_dir) as kms:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=key.encode())["CiphertextBlob"]
print(json.dumps([key, base64.b64encode(blob).decode()]))
"""


def test_processes_opening_a_new_data_dir_at_once(tmp_path: Path) -> None:
    for round_ in range(3):
        data_dir, go = tmp_path / f"kms{round_}", tmp_path / f"go{round_}"
        children = [
            subprocess.Popen(
                [sys.executable, "-c", FIRST_OPEN, str(data_dir), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=subprocess_env(),
            )
            for _ in range(4)
        ]
        time.sleep(0.4)  # let them all import and wait at the line
        go.touch()
        made = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            made.append(json.loads(out))
        with open_kms(data_dir) as kms:
            for key, blob in made:
                assert kms.decrypt(CiphertextBlob=_unb64(blob))["Plaintext"] == key.encode()
            assert len(kms.list_keys()["Keys"]) == 4
        rows = db_rows(data_dir, "SELECT COUNT(*) FROM settings WHERE name = 'root_key_check'")
        assert rows == [(1,)]
        assert os.stat(data_dir / "root.key").st_size == 32
