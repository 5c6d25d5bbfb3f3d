"""A trail its own host cannot rewrite: the witness, the auditor's key, the export.

The witness runs as its own process (``kms witness serve``) on its own socket
with its own directory; the KMS signs checkpoints through it. The attack is
done with everything the daemon's uid can reach: the records, the checkpoints,
the data dir's own signing key, and the witness's socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from service_helpers import subprocess_env

from kmscore.audit import VerifyError, verify
from kmscore.audit import _format as fmt
from kmscore.audit.witness import (
    WITNESS_PUB_FILE,
    WITNESS_STATE_FILE,
    Witness,
    WitnessClient,
    WitnessRefused,
    checkpoint_times,
    read_frame,
    write_frame,
)
from kmscore.client import LocalKMS

_CLI = "import sys; from kmscore.frontends.cli.main import main; sys.argv[0] = 'kms'; main()"


class WitnessProcess:
    """``kms witness serve`` in a child process."""

    def __init__(self, directory: Path, sock: Path) -> None:
        self.directory, self.socket = directory, sock
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CLI, "witness", "serve", "--dir", str(self.directory),
             "--socket", str(self.socket)],
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert b"listening on" in line, line + self.proc.stderr.read()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def public_key_file(self) -> Path:
        return self.directory / WITNESS_PUB_FILE


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[WitnessProcess]:
    directory = tmp_path / "witness"
    made = subprocess.run(
        [sys.executable, "-c", _CLI, "witness", "init", "--dir", str(directory), "--json"],
        env=subprocess_env(), capture_output=True, check=True,
    )  # fmt: skip
    public = json.loads(made.stdout)["PublicKey"]
    assert (directory / WITNESS_PUB_FILE).read_text().strip() == public
    proc = WitnessProcess(directory, tmp_path / "witness.sock")
    proc.start()
    yield proc
    proc.stop()


def open_witnessed(data_dir: Path, witness: WitnessProcess, **options: Any) -> LocalKMS:
    return LocalKMS(data_dir, audit_witness=str(witness.socket), **options)


def some_calls(kms: LocalKMS, n: int = 5) -> str:
    key = str(kms.create_key()["KeyMetadata"]["KeyId"])
    for _ in range(n):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    return key


def trail(kms: LocalKMS) -> Any:
    return kms.service.auditor.trail  # type: ignore[attr-defined]


def test_witness_directory_is_private(witness: WitnessProcess) -> None:
    assert stat.S_IMODE(witness.directory.stat().st_mode) == 0o700
    for name in ("witness.key", WITNESS_PUB_FILE):
        assert stat.S_IMODE((witness.directory / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(witness.socket.stat().st_mode) == 0o600


def test_witnessed_trail_verifies_with_the_auditors_key(
    tmp_path: Path, witness: WitnessProcess
) -> None:
    data = tmp_path / "kms"
    with open_witnessed(data, witness) as kms:
        some_calls(kms)
        trail(kms).checkpoint()
        some_calls(kms)
    report = verify(data, public_key=bytes.fromhex(witness.public_key_file.read_text()))
    assert report.checkpoints == 2 and report.unsealed == 0
    # The local key signed none of them (none was made); the pinned witness key verifies.
    assert not (data / fmt.SIGNING_KEY_FILE).exists()
    assert verify(data).checkpoints == 2
    with pytest.raises(VerifyError, match="bad signature"):
        verify(data, public_key=SigningKey.generate().verify_key)
    state = json.loads((witness.directory / WITNESS_STATE_FILE).read_text())
    assert state["seq"] == report.sealed_through and state["signature"] == report.last_signature
    # The choice is kept: a later open (no option) signs through the witness too.
    assert json.loads((data / "audit.json").read_text())["witness"]["socket"] == str(witness.socket)
    with LocalKMS(data) as again:
        some_calls(again, 2)
    assert verify(data, public_key=bytes.fromhex(witness.public_key_file.read_text())).unsealed == 0


def _forge(data: Path, target_seq: int) -> None:
    """The attack, as the daemon's uid: change one record, recompute every hash,
    re-sign every checkpoint with a key of its own, and pin that key in the data dir."""
    key = SigningKey.generate()
    (data / fmt.SIGNING_KEY_FILE).write_text(key.encode().hex())
    (data / fmt.PUBLIC_KEY_FILE).write_text(key.verify_key.encode().hex())
    config = json.loads((data / "audit.json").read_text())
    config["witness"]["public_key"] = key.verify_key.encode().hex()
    (data / "audit.json").write_text(json.dumps(config))
    audit = data / fmt.AUDIT_DIR
    heads: dict[int, tuple[str, str, int]] = {}
    prev = fmt.GENESIS_HASH
    for _, name in fmt.list_segments(audit):
        path = audit / name
        out, offset = [], 0
        for line in path.read_bytes().splitlines():
            seq = int(re.match(rb'\{"seq":(\d+)', line)[1])  # type: ignore[index]
            line = re.sub(
                rb'"prevHash":"[0-9a-f]{64}"', b'"prevHash":"%s"' % prev.encode(), line, count=1
            )
            if seq == target_seq:
                # Same length, so every offset stays.
                assert b"kmscore-local" in line
                line = line.replace(b"kmscore-local", b"kmscore-LOCAL", 1)
            prev = fmt.line_hash(line)
            offset += len(line) + 1
            heads[seq] = (prev, name, offset)
            out.append(line)
        path.write_bytes(b"".join(x + b"\n" for x in out))
    lines, signature = [], None
    for body in (json.loads(x) for x in (audit / fmt.CHECKPOINTS_FILE).read_bytes().splitlines()):
        body["head"], body["segment"], body["offset"] = heads[body["seq"]]
        body["prevSignature"] = signature
        body["signature"] = key.sign(fmt.checkpoint_message(body)).signature.hex()
        signature = body["signature"]
        lines.append(fmt.canonical(body))
    (audit / fmt.CHECKPOINTS_FILE).write_bytes(b"".join(x + b"\n" for x in lines))


def test_rewrite_attack_fails_with_the_auditors_key(
    tmp_path: Path, witness: WitnessProcess
) -> None:
    data = tmp_path / "kms"
    with open_witnessed(data, witness) as kms:
        some_calls(kms, 3)
        trail(kms).checkpoint()
        first_sealed = trail(kms).trail.next_seq - 1
        some_calls(kms, 3)
        trail(kms).checkpoint()
    auditor_key = bytes.fromhex(witness.public_key_file.read_text())
    verify(data, public_key=auditor_key)
    # Rewrite a record of the second checkpoint's span.
    _forge(data, first_sealed + 2)
    # Consistently: every hash and link holds, and the keys in the data dir verify it all.
    assert verify(data).checkpoints == 2
    # The auditor's key names the first forged checkpoint: line 1 (all were re-signed).
    with pytest.raises(VerifyError) as info:
        verify(data, public_key=auditor_key)
    assert info.value.file == fmt.CHECKPOINTS_FILE and info.value.line == 1
    assert "bad signature" in info.value.reason
    # And asking the witness to sign the rewritten past is refused.
    records = []
    for _, name in fmt.list_segments(data / fmt.AUDIT_DIR):
        records += (data / fmt.AUDIT_DIR / name).read_bytes().splitlines()
    span = records[first_sealed + 1 :]
    low, high = checkpoint_times(span)
    body = json.loads((data / fmt.AUDIT_DIR / fmt.CHECKPOINTS_FILE).read_bytes().splitlines()[1])
    del body["signature"]
    body.update(fromTime=low, toTime=high, createdAt=fmt.utc_now())
    client = WitnessClient(witness.socket)
    with pytest.raises(WitnessRefused, match=r"already signed|does not extend|rewritten|fork"):
        client.sign_checkpoint(body, span)


def test_witness_refuses_what_does_not_extend_its_head(tmp_path: Path) -> None:
    w = Witness.init(tmp_path / "w")

    def line(seq: int, prev: str, n: int = 0) -> bytes:
        return b'{"seq":%d,"prevHash":"%s","eventTime":"2026-01-01T00:00:0%dZ"}' % (
            seq, prev.encode(), n,
        )  # fmt: skip

    def request(lines: list[bytes], prev_sig: str | None, **over: Any) -> dict[str, Any]:
        first = int(re.match(rb'\{"seq":(\d+)', lines[0])[1])  # type: ignore[index]
        low, high = checkpoint_times(lines)
        cp = {
            "v": 1, "seq": first + len(lines) - 1, "count": len(lines), "fromTime": low,
            "toTime": high, "head": fmt.line_hash(lines[-1]), "segment": "s", "offset": 1,
            "prevSignature": prev_sig, "createdAt": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        cp.update(over)
        return {"op": "sign", "checkpoint": cp, "lines": lines}

    chain = [line(0, fmt.GENESIS_HASH)]
    for seq in range(1, 6):
        chain.append(line(seq, fmt.line_hash(chain[-1]), seq))
    # Seq 0 must start at genesis.
    bad_start = [line(0, "1" * 64)]
    assert not w.handle(request(bad_start, None))["ok"]
    first = w.handle(request(chain[:3], None))
    assert first["ok"], first
    sig = first["signature"]
    # A shorter past, a lower seq, a fork, a gap, a rewritten record: all refused.
    refusals = [
        request(chain[:2], None),
        request([line(0, fmt.GENESIS_HASH), line(1, "3" * 64), chain[2]], None),
        request(chain[1:3], sig),
        request(chain[3:5], "ab" * 64),
        request(chain[4:6], sig),
        request([line(3, "2" * 64)], sig),
        request(chain[3:5], sig, head="0" * 64),
        request(chain[3:5], sig, count=3),
    ]
    for bad in refusals:
        answer = w.handle(bad)
        assert answer["ok"] is False and answer["error"], bad
    # The extension is signed, and a restart keeps the head.
    ok = w.handle(request(chain[3:5], sig))
    assert ok["ok"]
    reopened = Witness(tmp_path / "w")
    assert reopened.state is not None and reopened.state["seq"] == 4
    # Continuing from the superseded signature is a fork.
    assert not reopened.handle(request(chain[5:6], sig))["ok"]
    # A retry of the last checkpoint (its answer was lost) is signed again...
    again = reopened.handle(request(chain[3:5], sig, createdAt="2026-01-02T00:00:00Z"))
    assert again["ok"] and again["signature"] != ok["signature"]
    # ...but not a retry that rewrites it.
    forked = [chain[3], line(4, fmt.line_hash(chain[3]), 9)]
    assert not reopened.handle(request(forked, sig))["ok"]


_garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _garbage,
        st.fixed_dictionaries(
            {"op": st.just("sign")},
            optional={
                "checkpoint": _garbage,
                "lines": st.lists(st.binary(max_size=80), max_size=4),
            },
        ),
    )
)
def test_witness_never_signs_garbage(
    tmp_path_factory: pytest.TempPathFactory, request: Any
) -> None:
    w = Witness.init(tmp_path_factory.mktemp("w") / "w")
    answer = w.handle(request)
    assert answer["ok"] is False or set(answer) == {"ok", "public_key"}
    assert w.state is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_frame_reader_refuses_bad_bytes_cleanly(data: bytes) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        try:
            frame = read_frame(right)
        except OSError:
            return  # a clean refusal (WitnessError is an OSError)
        if frame is not None:
            assert len(data) >= 4


def test_oversized_frame_is_refused(witness: WitnessProcess) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(witness.socket))
        sock.sendall((1 << 30).to_bytes(4, "big"))
        answer = read_frame(sock)
    assert answer["ok"] is False and "limit" in answer["error"]
    # The witness still serves.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(witness.socket))
        write_frame(sock, {"op": "public_key"})
        assert read_frame(sock)["ok"] is True


def test_witness_down_then_back(tmp_path: Path, witness: WitnessProcess) -> None:
    data = tmp_path / "kms"
    with open_witnessed(data, witness) as kms:
        some_calls(kms, 2)
        trail(kms).checkpoint()
        witness.stop()
        # Requests go on: records are written and chained, sealing waits.
        some_calls(kms, 4)
        with pytest.raises(Exception, match="witness"):
            trail(kms).checkpoint()
        witness.start()
        time.sleep(1.1)  # past the retry pause
        trail(kms).checkpoint()
    report = verify(data, public_key=bytes.fromhex(witness.public_key_file.read_text()))
    assert report.unsealed == 0 and report.checkpoints >= 2


def test_two_writers_share_the_witness(tmp_path: Path, witness: WitnessProcess) -> None:
    data = tmp_path / "kms"
    with open_witnessed(data, witness) as one, LocalKMS(data) as two:
        for _ in range(3):
            some_calls(one, 2)
            trail(one).checkpoint()
            some_calls(two, 2)
            trail(two).checkpoint()
    report = verify(data, public_key=bytes.fromhex(witness.public_key_file.read_text()))
    assert report.checkpoints >= 6 and report.unsealed == 0


def test_pinned_witness_key_is_checked(tmp_path: Path, witness: WitnessProcess) -> None:
    data = tmp_path / "kms"
    with open_witnessed(data, witness) as kms:
        some_calls(kms, 1)
    # Another witness on the same socket: the pinned key no longer matches.
    witness.stop()
    impostor = WitnessProcess(tmp_path / "impostor", witness.socket)
    Witness.init(impostor.directory)
    impostor.start()
    try:
        with pytest.raises(Exception, match="pinned"):
            LocalKMS(data)
    finally:
        impostor.stop()


def test_exported_checkpoints_show_a_cut_tail(tmp_path: Path) -> None:
    data = tmp_path / "kms"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    export = elsewhere / "checkpoints.jsonl"
    with LocalKMS(data, audit_export=f"file:{export}") as kms:
        some_calls(kms, 2)
        trail(kms).checkpoint()
        cut_at = trail(kms).trail.next_seq
        some_calls(kms, 3)
        trail(kms).checkpoint()
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert len(export.read_bytes().splitlines()) >= 2
    verify(data, exported=export)
    # Cut the records and the checkpoints together, as the daemon's uid can.
    audit = data / fmt.AUDIT_DIR
    ckpts = audit / fmt.CHECKPOINTS_FILE
    kept = [x for x in ckpts.read_bytes().splitlines() if json.loads(x)["seq"] < cut_at]
    ckpts.write_bytes(b"".join(x + b"\n" for x in kept))
    for _, name in fmt.list_segments(audit):
        path = audit / name
        lines = [x for x in path.read_bytes().splitlines()
                 if int(re.match(rb'\{"seq":(\d+)', x)[1]) < cut_at]  # type: ignore[index]  # fmt: skip
        path.write_bytes(b"".join(x + b"\n" for x in lines))
    assert verify(data).records == cut_at  # the shortened trail looks whole...
    with pytest.raises(VerifyError) as info:  # ...but not against the export
        verify(data, exported=export)
    assert "no longer holds" in info.value.reason and info.value.seq is not None


def test_cli_verify_with_public_key_and_export(tmp_path: Path, witness: WitnessProcess) -> None:
    data = tmp_path / "kms"
    export = tmp_path / "export.jsonl"
    with open_witnessed(data, witness, audit_export=f"file:{export}") as kms:
        some_calls(kms, 2)
    base = [sys.executable, "-c", _CLI, "audit", "verify", "--data-dir", str(data)]
    good = subprocess.run(
        [*base, "--public-key", str(witness.public_key_file), "--exported", str(export), "--json"],
        env=subprocess_env(), capture_output=True,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["Valid"] is True
    other = tmp_path / "other.pub"
    other.write_text(SigningKey.generate().verify_key.encode().hex())
    bad = subprocess.run(
        [*base, "--public-key", str(other)], env=subprocess_env(), capture_output=True
    )
    assert bad.returncode == 1 and b"bad signature" in bad.stderr
    assert os.path.exists(data / "audit.json")


@pytest.mark.parametrize("spec", ["bogus", "file:", "syslog,ftp:x", "files:/x"])
def test_bad_export_sinks_are_refused(spec: str) -> None:
    from kmscore.audit.export import parse_export

    with pytest.raises(ValueError, match=r"unknown checkpoint export|name a file"):
        parse_export(spec)


def test_due_checkpoints_are_signed_in_the_background(
    tmp_path: Path, witness: WitnessProcess
) -> None:
    import threading

    from kmscore.audit import AuditTrail

    data = tmp_path / "kms"
    event = {"eventVersion": "1.08", "eventTime": "2026-12-06T00:00:00Z", "eventName": "Encrypt"}
    auditor_key = bytes.fromhex(witness.public_key_file.read_text())
    one = AuditTrail.open(data, signer=WitnessClient(witness.socket), checkpoint_every=50,
                          checkpoint_interval=None)  # fmt: skip
    two = AuditTrail.open(data, signer=WitnessClient(witness.socket), checkpoint_every=50,
                          checkpoint_interval=None)  # fmt: skip

    def write(trail: AuditTrail) -> None:
        for _ in range(600):
            trail.append(event)

    threads = [threading.Thread(target=write, args=(t,)) for t in (one, two, one)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the sealers' checkpoints land at a later turn
        one.append(event)
        report = verify(data, public_key=auditor_key)
        if report.sealed_through is not None and report.sealed_through >= 1799:
            break
        time.sleep(0.02)
    # The threads' 1,800 records were sealed while the trails were open (no close
    # yet), by several background checkpoints, all of them the witness's.
    assert report.sealed_through is not None and report.sealed_through >= 1799, report
    assert report.checkpoints >= 3, report
    one.close()
    two.close()
    final = verify(data, public_key=auditor_key)
    assert final.unsealed == 0 and final.records >= 1800
