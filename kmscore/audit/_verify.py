"""Verification of an audit trail: every chain link, every checkpoint, in one pass.

What is detected, and where it is reported:

* a changed record: the next record's ``prevHash`` no longer matches, or the
  checkpoint that sealed it names another hash;
* a deleted, inserted or reordered record: the sequence numbers stop counting
  up by one, or a link breaks;
* a removed segment: the next segment starts at the wrong sequence number, or
  (the last one) a checkpoint seals records that are gone;
* a cut tail: a checkpoint seals records past the end of the trail;
* a changed, forged, removed or reordered checkpoint: its signature, its link
  to the previous checkpoint's signature, or its count, time range, head hash,
  segment and offset do not match the records; a closed segment must end in a
  sealed record.

Records after the last checkpoint are chain-checked and reported as not yet
sealed: whoever can write the files can rewrite or drop them undetected.
Cutting the records and the checkpoints file together is only caught against
a checkpoint signature remembered elsewhere (``anchor``). Replacing the public
key file is out of scope: pass the key pinned elsewhere as ``public_key``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kmscore.audit import _format as fmt
from kmscore.audit.keys import load_public_key
from kmscore.errors import KMSInternalException

__all__ = ["VerifyError", "VerifyReport", "verify"]


class VerifyError(Exception):
    """The trail is not intact; names the first bad place found.

    Attributes:
        reason: What is wrong.
        file: The file, relative to the audit directory, or None.
        line: The 1-based line number in ``file``, or None.
        seq: The record's sequence number (or the checkpoint's), or None.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        seq: int | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.seq = seq
        where = ""
        if file is not None:
            where = file if line is None else f"{file}:{line}"
        if seq is not None:
            where = f"{where} (seq {seq})" if where else f"seq {seq}"
        super().__init__(f"{where}: {reason}" if where else reason)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of a successful verification.

    Attributes:
        records: Records in the trail.
        segments: Segment files.
        checkpoints: Checkpoints, all with valid signatures.
        sealed_through: The last sequence number a checkpoint seals, or None.
        unsealed: Records after the last checkpoint (chain-checked, not sealed).
        head_hash: The chain hash of the last record.
        last_signature: The last checkpoint's signature (hex), to remember as a
            future ``anchor``, or None.
        torn_tail: Where an unacknowledged torn write ends the last segment
            (the writer cuts it at its next open), or None.
    """

    records: int
    segments: int
    checkpoints: int
    sealed_through: int | None
    unsealed: int
    head_hash: str
    last_signature: str | None
    torn_tail: str | None

    def describe(self) -> str:
        """A one-paragraph summary for people (``kms audit verify``)."""
        sealed = (
            "none sealed"
            if self.sealed_through is None
            else (f"sealed through seq {self.sealed_through}")
        )
        text = (
            f"OK: {self.records} records in {self.segments} segments, "
            f"{self.checkpoints} checkpoints, {sealed}; "
            f"{self.unsealed} records not yet sealed (chain-checked only)"
        )
        if self.torn_tail is not None:
            text += f"; an unacknowledged torn write at {self.torn_tail} is cut at the next open"
        return text


@dataclass(slots=True)
class _Checkpoint:
    line: int
    body: dict[str, Any]

    @property
    def seq(self) -> int:
        value: int = self.body["seq"]
        return value


def _load_checkpoints(audit_dir: Path, key: VerifyKey) -> list[_Checkpoint]:
    path = audit_dir / fmt.CHECKPOINTS_FILE
    name = fmt.CHECKPOINTS_FILE
    found: list[_Checkpoint] = []
    previous_signature: str | None = None
    previous_seq = -1
    for number, (_, line, complete) in enumerate(fmt.iter_lines(path), start=1):
        if not complete:
            break  # a torn, never acknowledged checkpoint write
        try:
            body = json.loads(line)
        except ValueError:
            raise VerifyError("not a JSON checkpoint", file=name, line=number) from None
        if not isinstance(body, dict) or set(body) != fmt.CHECKPOINT_FIELDS:
            raise VerifyError("not a checkpoint (wrong members)", file=name, line=number)
        seq, count, offset = body["seq"], body["count"], body["offset"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, count, offset)):
            raise VerifyError("seq, count and offset must be integers", file=name, line=number)
        try:
            key.verify(fmt.checkpoint_message(body), bytes.fromhex(body["signature"]))
        except (BadSignatureError, ValueError, TypeError):
            raise VerifyError(
                "bad signature: the checkpoint was changed or forged",
                file=name,
                line=number,
                seq=seq,
            ) from None
        if body["v"] != fmt.CHECKPOINT_VERSION:
            raise VerifyError(f"unknown checkpoint version {body['v']!r}", file=name, line=number)
        if body["prevSignature"] != previous_signature:
            raise VerifyError(
                "prevSignature does not name the previous checkpoint: a checkpoint was "
                "removed, inserted or reordered",
                file=name,
                line=number,
                seq=seq,
            )
        if seq <= previous_seq or count != seq - previous_seq:
            raise VerifyError(
                f"seals {count} records through seq {seq} after a checkpoint through seq "
                f"{previous_seq}: inconsistent",
                file=name,
                line=number,
                seq=seq,
            )
        found.append(_Checkpoint(number, body))
        previous_signature, previous_seq = body["signature"], seq
    return found


class _Walker:
    """Follows the chain through the segments, matching checkpoints on the way."""

    def __init__(self, checkpoints: list[_Checkpoint]) -> None:
        self.checkpoints = checkpoints
        self.next_checkpoint = 0
        self.expected_seq = 0
        self.head = fmt.GENESIS_HASH
        self.previous: tuple[str, int] | None = None
        self.from_time: str | None = None
        self.to_time: str | None = None
        self.torn_tail: str | None = None

    def walk_segment(self, audit_dir: Path, first: int, name: str, *, is_last: bool) -> None:
        if first != self.expected_seq:
            if first > self.expected_seq:
                reason = (
                    f"starts at seq {first} but seq {self.expected_seq} comes next: records "
                    f"{self.expected_seq}..{first - 1} are missing (a segment was removed?)"
                )
            else:
                reason = (
                    f"starts at seq {first}, overlapping records up to seq {self.expected_seq - 1}"
                )
            raise VerifyError(reason, file=name, seq=first)
        torn_line: int | None = None
        for number, (offset, line, complete) in enumerate(
            fmt.iter_lines(audit_dir / name), start=1
        ):
            record = _parse_record(line) if complete else None
            if torn_line is not None:
                if record is not None:
                    raise VerifyError(
                        "damaged line followed by more records", file=name, line=torn_line
                    )
                continue
            if record is None:
                if not is_last:
                    raise VerifyError("damaged or unterminated line", file=name, line=number)
                torn_line = number
                continue
            self._check_record(record, line, name, number, offset + len(line) + 1)
        if torn_line is not None:
            self.torn_tail = f"{name}:{torn_line}"
        if not is_last and not self._sealed_up_to(self.expected_seq - 1):
            raise VerifyError(
                "the segment was closed without a checkpoint sealing its last record "
                "(checkpoints removed?)",
                file=name,
                seq=self.expected_seq - 1,
            )

    def _sealed_up_to(self, seq: int) -> bool:
        done = self.checkpoints[: self.next_checkpoint]
        return seq < 0 or any(checkpoint.seq == seq for checkpoint in done)

    def _check_record(
        self, record: dict[str, Any], line: bytes, name: str, number: int, end: int
    ) -> None:
        seq = record.get("seq")
        expected = self.expected_seq
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise VerifyError("record without an integer seq", file=name, line=number)
        if seq > expected:
            raise VerifyError(
                f"seq {expected} expected here: records {expected}..{seq - 1} are missing "
                "(deleted, or moved later)",
                file=name,
                line=number,
                seq=seq,
            )
        if seq < expected:
            raise VerifyError(
                f"seq {expected} expected here, seq {seq} is a repeat: a record was "
                "inserted, or records were reordered",
                file=name,
                line=number,
                seq=seq,
            )
        if record.get("prevHash") != self.head:
            if self.previous is None:
                raise VerifyError(
                    "prevHash of the first record is not the genesis value",
                    file=name,
                    line=number,
                    seq=seq,
                )
            # Sequence numbers still count up by one, so the link broke because the
            # record before this one was changed (or this one's prevHash was).
            prev_name, prev_number = self.previous
            raise VerifyError(
                f"record changed: its hash does not match the prevHash stored in the next "
                f"record ({name}:{number}, seq {seq})",
                file=prev_name,
                line=prev_number,
                seq=seq - 1,
            )
        self.head = fmt.line_hash(line)
        self.expected_seq += 1
        self.previous = (name, number)
        event_time = record.get("eventTime")
        if isinstance(event_time, str):
            low, high = self.from_time, self.to_time
            self.from_time = event_time if low is None else min(low, event_time)
            self.to_time = event_time if high is None else max(high, event_time)
        if self.next_checkpoint < len(self.checkpoints):
            checkpoint = self.checkpoints[self.next_checkpoint]
            if checkpoint.seq == seq:
                self._match(checkpoint, name, number, end)

    def _match(self, checkpoint: _Checkpoint, name: str, number: int, end: int) -> None:
        body = checkpoint.body
        problems = []
        if body["head"] != self.head:
            problems.append("the record's hash differs from the sealed head: it was changed")
        if body["segment"] != name or body["offset"] != end:
            problems.append(
                f"the sealed record was at {body['segment']} offset {body['offset']}, "
                f"not {name} offset {end}"
            )
        if (body["fromTime"], body["toTime"]) != (self.from_time, self.to_time):
            problems.append("the sealed time range differs from the records'")
        if problems:
            raise VerifyError(
                f"does not match checkpoint {fmt.CHECKPOINTS_FILE}:{checkpoint.line}: "
                + "; ".join(problems),
                file=name,
                line=number,
                seq=checkpoint.seq,
            )
        self.next_checkpoint += 1
        self.from_time = self.to_time = None


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def verify(
    data_dir: str | os.PathLike[str],
    *,
    public_key: VerifyKey | bytes | None = None,
    anchor: str | None = None,
    exported: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Verify the audit trail of a data directory.

    Args:
        data_dir: The service's data directory (holding ``audit/``).
        public_key: The checkpoint key; if None, the witness key pinned in
            ``audit.json``, else ``audit-signing.pub``.
            Pass a key kept elsewhere to stop someone who can replace that file.
        anchor: A checkpoint signature (hex) seen earlier, e.g. a previous
            report's ``last_signature``; the trail must still contain it.
        exported: A file of checkpoints exported as they were made
            (:mod:`kmscore.audit.export`; syslog lines are accepted too): the
            trail must still hold every one, so a cut tail shows.

    Returns:
        What was verified.

    Journal entries not chained yet are chained first (when the trail can be
    written here); a damaged journal fails verification.

    Raises:
        VerifyError: At the first place where the trail is not intact, or a
            journal is damaged.
        KMSInternalException: If the public key cannot be read.
    """
    data = Path(data_dir)
    from kmscore.audit._query import catch_up

    damaged = catch_up(data)
    if damaged:
        raise VerifyError(str(damaged[0]))
    if public_key is None:
        key = _default_key(data)
    elif isinstance(public_key, VerifyKey):
        key = public_key
    else:
        key = VerifyKey(public_key)
    audit_dir = data / fmt.AUDIT_DIR
    if not audit_dir.is_dir():
        raise VerifyError(f"no audit directory at {audit_dir}")
    try:
        for attempt in range(_ATTEMPTS):
            before = _shape(audit_dir)
            try:
                return _verify_once(
                    audit_dir, key, anchor, Path(exported) if exported is not None else None
                )
            except VerifyError:
                # A live writer may have sealed and closed a segment between our
                # reading the checkpoints and listing the segments; only then retry.
                if attempt == _ATTEMPTS - 1 or _shape(audit_dir) == before:
                    raise
    except OSError as exc:
        raise KMSInternalException(f"cannot read the audit trail: {exc}") from exc
    raise AssertionError("unreachable")


_ATTEMPTS = 3


def _default_key(data: Path) -> VerifyKey:
    """The witness key pinned in ``audit.json``, else the data dir's own public key.

    Both are files the host can change: an auditor passes a key of their own.
    """
    from kmscore.audit.setup import audit_config

    pinned = (audit_config(data).get("witness") or {}).get("public_key")
    if isinstance(pinned, str):
        try:
            return VerifyKey(bytes.fromhex(pinned))
        except (ValueError, TypeError):
            raise KMSInternalException("audit.json pins a malformed witness key") from None
    return load_public_key(data)


def _check_exported(key: VerifyKey, path: Path, held: set[str]) -> None:
    """Every checkpoint in the export file is among ``held`` (the trail's signatures)."""
    name = str(path)
    for number, (_, line, complete) in enumerate(fmt.iter_lines(path), start=1):
        start = line.find(b"{")
        if not complete or start < 0:
            continue  # a torn last line, or a syslog line of something else
        try:
            body = json.loads(line[start:])
        except ValueError:
            raise VerifyError("not a JSON checkpoint", file=name, line=number) from None
        if not isinstance(body, dict) or set(body) != fmt.CHECKPOINT_FIELDS:
            raise VerifyError("not a checkpoint (wrong members)", file=name, line=number)
        try:
            key.verify(fmt.checkpoint_message(body), bytes.fromhex(body["signature"]))
        except (BadSignatureError, ValueError, TypeError):
            raise VerifyError(
                "bad signature on an exported checkpoint", file=name, line=number
            ) from None
        if body["signature"] not in held:
            raise VerifyError(
                f"the trail no longer holds the checkpoint sealing records through seq "
                f"{body['seq']} that was exported here: its tail was cut or rewritten",
                file=name,
                line=number,
                seq=body["seq"],
            )


def _shape(audit_dir: Path) -> tuple[int, tuple[str, ...]]:
    """What a live writer changes when it closes a segment."""
    try:
        size = (audit_dir / fmt.CHECKPOINTS_FILE).stat().st_size
    except FileNotFoundError:
        size = -1
    return size, tuple(name for _, name in fmt.list_segments(audit_dir))


def _verify_once(
    audit_dir: Path, key: VerifyKey, anchor: str | None, exported: Path | None
) -> VerifyReport:
    segments = fmt.list_segments(audit_dir)
    if not (audit_dir / fmt.CHECKPOINTS_FILE).exists():
        if segments:
            raise VerifyError("missing: the trail has records", file=fmt.CHECKPOINTS_FILE)
        checkpoints: list[_Checkpoint] = []
    else:
        # Checkpoints first: records a checkpoint seals were fsynced before it,
        # so a trail being written is never seen sealing records not yet read.
        checkpoints = _load_checkpoints(audit_dir, key)
        segments = fmt.list_segments(audit_dir)
    walker = _Walker(checkpoints)
    for index, (first, name) in enumerate(segments):
        walker.walk_segment(audit_dir, first, name, is_last=index == len(segments) - 1)
    if walker.next_checkpoint < len(checkpoints):
        missing = checkpoints[walker.next_checkpoint]
        raise VerifyError(
            f"seals records through seq {missing.seq}, but the trail ends at seq "
            f"{walker.expected_seq - 1}: sealed records were cut off or removed",
            file=fmt.CHECKPOINTS_FILE,
            line=missing.line,
            seq=missing.seq,
        )
    last_signature = checkpoints[-1].body["signature"] if checkpoints else None
    held = {c.body["signature"] for c in checkpoints}
    if exported is not None:
        _check_exported(key, exported, held)
    if anchor is not None and anchor not in held:
        raise VerifyError(
            "the anchor checkpoint is not in the trail: checkpoints were cut or replaced",
            file=fmt.CHECKPOINTS_FILE,
        )
    sealed_through = checkpoints[-1].seq if checkpoints else None
    return VerifyReport(
        records=walker.expected_seq,
        segments=len(segments),
        checkpoints=len(checkpoints),
        sealed_through=sealed_through,
        unsealed=walker.expected_seq - (sealed_through + 1 if sealed_through is not None else 0),
        head_hash=walker.head,
        last_signature=last_signature,
        torn_tail=walker.torn_tail,
    )
