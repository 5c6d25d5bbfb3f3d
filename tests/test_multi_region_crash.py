"""ReplicateKey cut short (kill -9 at each step, a refused audit record): no usable
half-replicated key, and a retry completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kmscore.errors import KMSError, KMSInternalException, KMSInvalidStateException
from kmscore.model.caller import Caller
from kmscore.model.keystate import KeyState
from kmscore.operations import dispatch
from kmscore.service import KeyService, open_service
from kmscore.service.regions import Deployment

HOME = "us-east-1"
WEST = "us-west-2"
ACCOUNT = "111122223333"
ROOT = Caller(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, principal_id=ACCOUNT)

# Runs in a child: ReplicateKey, killed with SIGKILL at the step named by argv[2].
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from kmscore.model.caller import Caller
    from kmscore.operations import dispatch
    from kmscore.service import open_service, replication
    from kmscore.service.key_service import KeyService
    from kmscore.service.regions import Deployment

    data_dir, step, key_id = sys.argv[1:4]
    home = open_service(data_dir, audit=False)
    Deployment(home)
    from kmscore.service.maintenance import maintain_if_due
    maintain_if_due(home, force=True)  # not due again during the call below
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if step == "before-primary":
        original = KeyService.update_key
        def update_key(self, key, change):
            if self is home:
                die()
            return original(self, key, change)
        KeyService.update_key = update_key
    else:
        replication.converge_quietly = die
    caller = Caller(arn="arn:aws:iam::111122223333:root", account="111122223333",
                    principal_id="111122223333")
    dispatch(home, "ReplicateKey", {"KeyId": key_id, "ReplicaRegion": "us-west-2"}, caller)
    print("not killed")
    """
)


def _open(data_dir: Path) -> tuple[KeyService, Deployment]:
    home = open_service(data_dir, audit=False)
    deployment = Deployment(home)
    return home, deployment


def _close(home: KeyService, deployment: Deployment) -> None:
    deployment.close()
    home.close()


def _call(svc: KeyService, name: str, **request: object) -> dict[str, object]:
    return dispatch(svc, name, request, ROOT)


def _unusable(west: KeyService, key_id: str) -> None:
    # Before maintenance (which would complete the replica) runs.
    west.mark_maintained()
    md = _call(west, "DescribeKey", KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Creating"  # type: ignore[index]
    with pytest.raises(KMSInvalidStateException):
        _call(west, "Encrypt", KeyId=key_id, Plaintext=b"x")


@pytest.mark.parametrize("step", ["before-primary", "before-convergence"])
def test_kill_9_during_replicate_key_then_retry(tmp_path: Path, step: str) -> None:
    data_dir = tmp_path / "data"
    home, deployment = _open(data_dir)
    deployment.add_region(WEST)
    key_id = str(_call(home, "CreateKey", MultiRegion=True)["KeyMetadata"]["KeyId"])  # type: ignore[index]
    blob = _call(home, "Encrypt", KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    _close(home, deployment)
    env = dict(os.environ)  # the installed kmscore, never the source tree
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), step, key_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    home, deployment = _open(data_dir)
    home.mark_maintained()
    try:
        west = deployment.service(ACCOUNT, WEST)
        assert west is not None
        _unusable(west, key_id)
        primary = home.store.get_key(key_id)
        assert primary is not None
        assert primary.replica_regions == (() if step == "before-primary" else (WEST,))
        out = _call(home, "ReplicateKey", KeyId=key_id, ReplicaRegion=WEST)
        assert out["ReplicaKeyMetadata"]["KeyId"] == key_id  # type: ignore[index]
        assert west.get_key(key_id).state is KeyState.ENABLED  # type: ignore[union-attr]
        assert _call(west, "Decrypt", CiphertextBlob=blob)["Plaintext"] == b"before"
        assert home.store.get_key(key_id).replica_regions == (WEST,)  # type: ignore[union-attr]
    finally:
        _close(home, deployment)


def test_a_refused_audit_record_leaves_no_usable_replica(tmp_path: Path) -> None:
    home, deployment = _open(tmp_path / "data")
    try:
        west = deployment.add_region(WEST)
        key_id = str(_call(home, "CreateKey", MultiRegion=True)["KeyMetadata"]["KeyId"])  # type: ignore[index]

        class Refusing:
            def record(self, call: object, *args: object) -> None:
                if getattr(call, "operation", "") == "ReplicateKey":
                    raise KMSInternalException("the audit trail is full")

        auditor, home.auditor = home.auditor, Refusing()
        with pytest.raises(KMSError):
            _call(home, "ReplicateKey", KeyId=key_id, ReplicaRegion=WEST)
        home.auditor = auditor
        _unusable(west, key_id)
        assert home.store.get_key(key_id).replica_regions == ()  # type: ignore[union-attr]
        _call(home, "ReplicateKey", KeyId=key_id, ReplicaRegion=WEST)
        _call(west, "Encrypt", KeyId=key_id, Plaintext=b"x")
    finally:
        _close(home, deployment)


def test_maintenance_completes_a_replica_its_primary_lists(tmp_path: Path) -> None:
    from kmscore.service import replication
    from kmscore.service.maintenance import run_maintenance

    home, deployment = _open(tmp_path / "data")
    try:
        west = deployment.add_region(WEST)
        key_id = str(_call(home, "CreateKey", MultiRegion=True)["KeyMetadata"]["KeyId"])  # type: ignore[index]
        original = replication.converge_quietly
        replication.converge_quietly = lambda svc, key_id: None  # type: ignore[assignment]
        try:
            _call(home, "ReplicateKey", KeyId=key_id, ReplicaRegion=WEST)
        finally:
            replication.converge_quietly = original
        _unusable(west, key_id)
        run_maintenance(home)
        _call(west, "Encrypt", KeyId=key_id, Plaintext=b"x")
    finally:
        _close(home, deployment)


def test_a_local_client_reaches_the_regions_of_its_data_dir(tmp_path: Path) -> None:
    from kmscore.client import LocalKMS

    home = open_service(tmp_path / "data", audit=False)
    Deployment(home).add_region(WEST)
    home.close()  # closes the other Regions too
    with LocalKMS(tmp_path / "data", audit=False, principal=ROOT.arn) as kms:
        key_id = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        kms.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        west = kms.in_region(WEST)
        assert west.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
        blob = west.encrypt(KeyId=key_id, Plaintext=b"w")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"w"


def test_a_thread_converges_only_the_keys_its_own_call_changed(tmp_path: Path) -> None:
    # Another thread finishing first must not converge a change still uncommitted.
    import threading

    home, deployment = _open(tmp_path / "data")
    try:
        noted, finish, done = threading.Event(), threading.Event(), threading.Event()

        def call_in_progress() -> None:
            home.note_replication("1234abcd-12ab-34cd-56ef-1234567890ab")
            noted.set()
            finish.wait(10)
            home.replicate_due()
            done.set()

        worker = threading.Thread(target=call_in_progress)
        worker.start()
        assert noted.wait(10)
        home.replicate_due()  # this thread noted nothing
        assert len(home.replication_due) == 1
        finish.set()
        assert done.wait(10)
        worker.join(10)
        assert home.replication_due == set()
    finally:
        _close(home, deployment)
