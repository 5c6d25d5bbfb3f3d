"""Identity from SO_PEERCRED: clients running as other Unix users.

The daemon runs as root; clients run under other uids (``setpriv``, or a forked
child that drops to the uid where that uid cannot read this interpreter; root
needed, else skipped): one uid mapped to a user with an identity policy, one
mapped to nobody, which may call GenerateRandom and nothing else. The socket
sits in a directory everyone may traverse, with mode 0666: opening the socket
grants nothing by itself.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rpc_support import DaemonProcess, run_as_uid, running_daemon, shared_socket_dir

import kmscore.client.remote  # noqa: F401  (loaded before a forked client drops its uid)
from kmscore import audit
from kmscore.client import LocalKMS

MAPPED_UID = 4242
UNMAPPED_UID = 4343
APP_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            }
        ],
    }
)

# Runs as the other uid: every call, its outcome as JSON on stdout.
CLIENT = textwrap.dedent(
    """
    import json, os, sys
    from kmscore import connect, errors
    kms = connect(sys.argv[1])
    key_id = sys.argv[2]
    calls = {
        "GenerateRandom": lambda: kms.generate_random(NumberOfBytes=8),
        "DescribeKey": lambda: kms.describe_key(KeyId=key_id),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
        "Encrypt": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"),
        "GenerateDataKeys": lambda: kms.generate_data_keys(KeyId=key_id, Count=2, NumberOfBytes=8),
        "CreateKey": lambda: kms.create_key(),
        "ListKeys": lambda: kms.list_keys(),
        "DisableKey": lambda: kms.disable_key(KeyId=key_id),
    }
    out = {"uid": os.getuid()}
    for name, call in calls.items():
        try:
            call()
            out[name] = "ok"
        except errors.KMSError as exc:
            out[name] = exc.code
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    data_dir = tmp_path_factory.mktemp("rpc") / "data"
    with LocalKMS(data_dir) as kms:
        key_id = kms.create_key(Description="shared")["KeyMetadata"]["KeyId"]
        kms.service.principals.add("app", uid=MAPPED_UID, policy=APP_POLICY)
    with (
        shared_socket_dir() as socket_dir,
        running_daemon(data_dir, socket_dir / "kms.sock", mode=0o666) as daemon,
    ):
        yield daemon, key_id


def run_as(uid: int, daemon: DaemonProcess, key_id: str) -> dict[str, Any]:
    status, stdout, stderr = run_as_uid(uid, CLIENT, [str(daemon.socket), key_id])
    assert status == 0, stderr
    result: dict[str, Any] = json.loads(stdout)
    return result


def test_socket_is_open_to_everyone_as_asked(setup: tuple[DaemonProcess, str]) -> None:
    daemon, _ = setup
    assert stat.S_IMODE(os.lstat(daemon.socket).st_mode) == 0o666


def test_mapped_uid_gets_what_its_policy_allows(setup: tuple[DaemonProcess, str]) -> None:
    daemon, key_id = setup
    result = run_as(MAPPED_UID, daemon, key_id)
    assert result == {
        "uid": MAPPED_UID,
        "GenerateRandom": "AccessDeniedException",  # not in its identity policy
        "DescribeKey": "ok",
        "GenerateDataKey": "ok",
        "Encrypt": "ok",
        "GenerateDataKeys": "ok",  # authorized as kms:GenerateDataKey
        "CreateKey": "AccessDeniedException",
        "ListKeys": "AccessDeniedException",
        "DisableKey": "AccessDeniedException",
    }
    records = list(audit.query(daemon.data_dir, principal="arn:aws:iam::111122223333:user/app"))
    described = [r for r in records if r["eventName"] == "DescribeKey"]
    assert described and described[-1]["userAgent"] == "kmscore-rpc"
    assert described[-1]["sourceIPAddress"].startswith("unix:")


def test_unmapped_uid_may_only_generate_random(setup: tuple[DaemonProcess, str]) -> None:
    daemon, key_id = setup
    result = run_as(UNMAPPED_UID, daemon, key_id)
    assert result.pop("uid") == UNMAPPED_UID
    assert result.pop("GenerateRandom") == "ok"
    assert set(result.values()) == {"AccessDeniedException"}


def test_a_private_socket_refuses_other_users(tmp_path: Path) -> None:
    with (
        shared_socket_dir() as socket_dir,
        running_daemon(tmp_path / "data", socket_dir / "kms.sock") as daemon,
    ):
        assert stat.S_IMODE(os.lstat(daemon.socket).st_mode) == 0o600
        probe = (
            "import sys\nfrom kmscore import connect\nfrom kmscore.client.remote import "
            "RemoteConnectionError\ntry:\n    connect(sys.argv[1])\nexcept "
            "RemoteConnectionError as exc:\n    print(exc)\n"
        )
        status, stdout, stderr = run_as_uid(UNMAPPED_UID, probe, [str(daemon.socket)])
        assert status == 0 and "Permission denied" in stdout, stdout + stderr
