"""query(): streaming filters over the segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_audit_support import ACCOUNT, ALICE, BOB, KEY_ARN, KEY_ID, REGION, event

from kmscore.audit import AuditTrail, build_event, query

OTHER_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-12ab-34cd-56ef-1234567890ab"
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def _timed(name: str, minutes: int, **kwargs: object) -> dict[str, object]:
    return build_event(
        name,
        region=REGION,
        account_id=ACCOUNT,
        identity=kwargs.pop("identity", ALICE),  # type: ignore[arg-type]
        source_ip="unix:1",
        user_agent="t",
        request_parameters={"KeyId": kwargs.pop("key", KEY_ARN)},
        resources=kwargs.pop("resources", [KEY_ARN]),  # type: ignore[arg-type]
        read_only=True,
        event_time=T0 + timedelta(minutes=minutes),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("query")
    with AuditTrail.open(path, max_segment_bytes=2000, checkpoint_interval=None) as trail:
        trail.append(_timed("Encrypt", 0))
        trail.append(_timed("Decrypt", 1, identity=BOB))
        trail.append(_timed("Decrypt", 2, key=OTHER_ARN, resources=[OTHER_ARN]))
        trail.append(
            _timed(
                "Decrypt", 3, identity=BOB, error_code="AccessDeniedException", error_message="no"
            )
        )
        trail.append(
            _timed("DescribeKey", 4, key="alias/gone", resources=[], error_code="NotFoundException")
        )
        trail.append(_timed("Encrypt", 5))
    assert len(list(path.joinpath("audit").glob("segment-*"))) > 1
    return path


def _minutes(found: list[dict[str, object]]) -> list[int]:
    return [int(str(r["eventTime"])[14:16]) for r in found]


def test_no_filter_streams_everything_in_order(data_dir: Path) -> None:
    found = query(data_dir)
    assert not isinstance(found, list)  # an iterator, not a loaded list
    records = list(found)
    assert [r["seq"] for r in records] == list(range(6))
    assert _minutes(records) == [0, 1, 2, 3, 4, 5]


def test_by_key(data_dir: Path) -> None:
    assert _minutes(list(query(data_dir, key_id=KEY_ID))) == [0, 1, 3, 5]
    assert _minutes(list(query(data_dir, key_id=KEY_ARN))) == [0, 1, 3, 5]
    assert _minutes(list(query(data_dir, key_id=OTHER_ARN))) == [2]
    assert _minutes(list(query(data_dir, key_id="alias/gone"))) == [4]


def test_by_principal_and_event_name(data_dir: Path) -> None:
    assert _minutes(list(query(data_dir, principal=BOB.arn))) == [1, 3]
    assert _minutes(list(query(data_dir, principal="AIDABOB"))) == [1, 3]
    assert _minutes(list(query(data_dir, event_name="Decrypt", principal=ALICE.arn))) == [2]


def test_by_error(data_dir: Path) -> None:
    assert _minutes(list(query(data_dir, error_code="AccessDeniedException"))) == [3]
    assert _minutes(list(query(data_dir, error_code=True))) == [3, 4]
    assert _minutes(list(query(data_dir, error_code=False))) == [0, 1, 2, 5]


def test_by_time(data_dir: Path) -> None:
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    assert _minutes(list(query(data_dir, since=since, until=until))) == [1, 2, 3]
    assert _minutes(list(query(data_dir, since=T0 + timedelta(minutes=5)))) == [5]
    with pytest.raises(ValueError, match="timezone"):
        list(query(data_dir, since=datetime(2024, 1, 1)))


def test_skips_a_torn_tail(tmp_path: Path) -> None:
    with AuditTrail.open(tmp_path, checkpoint_interval=None) as trail:
        trail.append(event())
    segment = next(tmp_path.joinpath("audit").glob("segment-*"))
    with segment.open("ab") as handle:
        handle.write(b'{"seq":1,"prev')
    assert len(list(query(tmp_path))) == 1


def test_empty_trail(tmp_path: Path) -> None:
    AuditTrail.open(tmp_path, checkpoint_interval=None).close()
    assert list(query(tmp_path)) == []
