"""Pricing in kmscore.audit.usage.usage(), with synthetic events and keys, checked exactly.

The expected dollar figures are worked out here from :data:`PRICES` by hand:
$1 per key-month prorated by the hour (730 hours a month), $1 per month for each
of the first two rotations, $0.03 per 10,000 symmetric (and RSA_2048) requests
after 20,000 free a month (prorated), $0.15 per 10,000 other asymmetric requests,
$12 / $0.10 per 10,000 RSA / ECC GenerateDataKeyPair requests, never free.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kmscore.audit.usage import HOURS_PER_MONTH, PRICES, usage
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState

REGION, ACCOUNT = "us-east-1", "111122223333"
UNTIL = datetime(2025, 4, 1, tzinfo=UTC)
MONTH = timedelta(hours=730)
SINCE = UNTIL - MONTH


def arn(name: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}"


def key(
    name: str,
    *,
    spec: str = "SYMMETRIC_DEFAULT",
    created: datetime = SINCE - timedelta(days=10),
    state: KeyState = KeyState.ENABLED,
) -> KeyRecord:
    usage_ = "ENCRYPT_DECRYPT" if spec == "SYMMETRIC_DEFAULT" else "SIGN_VERIFY"
    return KeyRecord(
        key_id=name,
        arn=arn(name),
        account=ACCOUNT,
        creation_date=created,
        description="",
        key_usage=usage_,
        key_spec=spec,
        origin="AWS_KMS",
        state=state,
        current_version=1,
    )


def events(
    name: str,
    count: int,
    key_name: str | None = None,
    *,
    at: datetime | None = None,
    **extra: Any,
) -> Iterator[dict[str, Any]]:
    when = (at or SINCE + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    resources = [{"ARN": arn(key_name), "type": "AWS::KMS::Key"}] if key_name else []
    for _ in range(count):
        yield {"eventName": name, "eventTime": when, "resources": resources, **extra}


def exact(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


def test_prices_are_aws_list_prices() -> None:
    assert PRICES == {
        "key_month": 1.00,
        "rotation_month": 1.00,
        "symmetric_per_10k": 0.03,
        "asymmetric_per_10k": 0.15,
        "ecc_key_pair_per_10k": 0.10,
        "rsa_key_pair_per_10k": 12.00,
        "free_requests_per_month": 20_000,
    }
    assert HOURS_PER_MONTH == 730.0


def test_a_month_of_mixed_use() -> None:
    keys = [
        (key("sym"), 0),  # a full month
        (key("half", created=SINCE + timedelta(hours=365)), 5),  # half a month, 2 rotations
        (key("doomed", state=KeyState.PENDING_DELETION), 1),  # not charged
        (key("disabled", state=KeyState.DISABLED), 0),  # still charged
        (key("rsa3072", spec="RSA_3072"), 0),
        (key("rsa2048", spec="RSA_2048"), 0),
        (key("ecc", spec="ECC_NIST_P256"), 0),
        (key("future", created=UNTIL + timedelta(hours=1)), 2),  # after the period
    ]
    stream = [
        *events("Encrypt", 25_000, "sym"),
        *events("Sign", 5_000, "rsa3072"),
        *events("Sign", 2_000, "rsa2048"),  # RSA_2048 at the symmetric rate
        *events("Verify", 1_000, "ecc"),
        *events("GenerateDataKeyPair", 100, "sym", requestParameters={"keyPairSpec": "RSA_4096"}),
        *events(
            "GenerateDataKeyPairWithoutPlaintext",
            300,
            "sym",
            requestParameters={"keyPairSpec": "ECC_NIST_P384"},
        ),
        *events("GenerateDataKeys", 1, "sym", additionalEventData={"batchSize": 100}),
        *events("DecryptMany", 1, "sym", additionalEventData={"batchSize": 10}),
        *events(
            "GenerateDataKeys",
            1,
            "sym",
            additionalEventData={"batchSize": 50},
            errorCode="AccessDeniedException",
        ),
        *events("GenerateRandom", 10),
        *events("Decrypt", 5, "deleted-long-ago"),  # a key no longer in the store
    ]
    report = usage(stream, keys, since=SINCE, until=UNTIL)

    assert report.requests == len(stream) == 33_418
    assert report.errors == 1
    assert report.months == exact(1.0)
    assert report.by_operation["Encrypt"] == 25_000
    assert report.by_operation["GenerateDataKeys"] == 2
    assert report.by_key[arn("sym")]["Encrypt"] == 25_000
    assert report.by_key[arn("deleted-long-ago")] == {"Decrypt": 5}
    assert arn("doomed") not in report.by_key

    symmetric = 25_000 + 2_000 + 1 + 1 + 1 + 10 + 5
    assert report.symmetric_requests == symmetric
    assert report.asymmetric_requests == 6_000
    assert dict(report.key_pair_requests) == {"RSA": 100, "ECC": 300}
    assert report.batch_items == 110
    assert report.saved_requests == 99 + 9

    # sym 1 + half 0.5 + disabled 1 + three asymmetric keys 3; rotations: 2 x 0.5.
    assert report.key_months == exact(5.5)
    assert report.rotation_months == exact(1.0)
    costs = report.costs()
    assert costs["KeyStorage"] == exact(6.5)
    assert costs["SymmetricRequests"] == exact((symmetric - 20_000) / 10_000 * 0.03)
    assert costs["AsymmetricRequests"] == exact(6_000 / 10_000 * 0.15)
    assert costs["DataKeyPairRequests"] == exact(100 / 10_000 * 12.00 + 300 / 10_000 * 0.10)
    assert costs["Total"] == exact(6.5 + 0.021054 + 0.09 + 0.123)
    assert report.unbatched_request_cost() == exact((symmetric + 108 - 20_000) / 10_000 * 0.03)

    data = report.as_dict()
    assert data["CostsUSD"] == {
        "KeyStorage": 6.5,
        "SymmetricRequests": 0.021054,
        "AsymmetricRequests": 0.09,
        "DataKeyPairRequests": 0.123,
        "Total": 6.734054,
    }
    assert data["SymmetricRequestCostWithoutBatchingUSD"] == 0.021378
    assert data["RequestsSavedByBatching"] == 108
    assert data["BatchItems"] == 110
    assert data["KeyMonths"] == 5.5 and data["RotationMonths"] == 1.0
    assert data["Since"] == SINCE.isoformat() and data["Until"] == UNTIL.isoformat()
    assert data["Requests"] == 33_418 and data["Errors"] == 1


def test_free_tier_is_prorated_over_the_period() -> None:
    half = UNTIL - timedelta(hours=365)
    stream = list(events("Encrypt", 15_000, "k", at=half))
    # No since: the period starts at the first event, half a month ago.
    report = usage(stream, [(key("k"), 0)], since=None, until=UNTIL)
    assert report.months == exact(0.5)
    costs = report.costs()
    assert costs["SymmetricRequests"] == exact(5_000 / 10_000 * 0.03)  # 10,000 were free
    assert report.key_months == exact(0.5)  # charged from the start of the period
    assert costs["KeyStorage"] == exact(0.5)
    assert report.as_dict()["Since"] is None


def test_free_tier_within_the_free_allowance() -> None:
    stream = list(events("Encrypt", 20_000, "k"))
    report = usage(stream, [(key("k"), 0)], since=SINCE, until=UNTIL)
    assert report.costs()["SymmetricRequests"] == 0.0
    over = usage([*stream, *events("Decrypt", 1, "k")], [], since=SINCE, until=UNTIL)
    assert over.costs()["SymmetricRequests"] == exact(1 / 10_000 * 0.03)


def test_free_tier_of_a_very_short_period_is_at_least_an_hour() -> None:
    now = UNTIL - timedelta(seconds=5)
    stream = list(events("Encrypt", 100, "k", at=now))
    report = usage(stream, [], since=None, until=UNTIL)
    free = 20_000 / 730
    assert report.costs()["SymmetricRequests"] == exact((100 - free) / 10_000 * 0.03)


def test_asymmetric_and_key_pair_requests_are_never_free() -> None:
    stream = [
        *events("Sign", 10, "rsa"),
        *events("GenerateDataKeyPair", 1, requestParameters={"keyPairSpec": "ECC_NIST_P256"}),
    ]
    report = usage(stream, [(key("rsa", spec="RSA_4096"), 0)], since=SINCE, until=UNTIL)
    costs = report.costs()
    assert costs["SymmetricRequests"] == 0.0
    assert costs["AsymmetricRequests"] == exact(10 / 10_000 * 0.15)
    assert costs["DataKeyPairRequests"] == exact(1 / 10_000 * 0.10)


@pytest.mark.parametrize(("rotations", "months"), [(0, 0), (1, 1), (2, 2), (3, 2), (25, 2)])
def test_rotation_months_are_capped_at_two(rotations: int, months: int) -> None:
    report = usage([], [(key("k"), rotations)], since=SINCE, until=UNTIL)
    assert report.key_months == exact(1.0)
    assert report.rotation_months == exact(months)
    assert report.costs()["KeyStorage"] == exact(1.0 + months)


@pytest.mark.parametrize("hours", [1, 24, 100, 729])
def test_key_months_are_prorated_by_the_hour(hours: int) -> None:
    created = UNTIL - timedelta(hours=hours)
    report = usage([], [(key("k", created=created), 1)], since=SINCE, until=UNTIL)
    assert report.key_months == exact(hours / 730)
    assert report.costs()["KeyStorage"] == exact(2 * hours / 730)  # the key and one rotation


def test_keys_pending_deletion_are_not_charged() -> None:
    doomed = key("k", state=KeyState.PENDING_DELETION)
    report = usage(list(events("Decrypt", 3, "k")), [(doomed, 2)], since=SINCE, until=UNTIL)
    assert report.key_months == 0 and report.rotation_months == 0
    assert report.costs()["KeyStorage"] == 0
    assert report.by_key[arn("k")] == {"Decrypt": 3}


def test_batches_count_as_one_request_each() -> None:
    stream = [
        *events("GenerateDataKeys", 1, "k", additionalEventData={"batchSize": 100}),
        *events("DecryptMany", 1, "k", additionalEventData={"batchSize": 10}),
        *events("GenerateDataKeys", 1, "k", additionalEventData={"batchSize": 1}),
        # Failed batches delivered nothing and saved nothing.
        *events(
            "DecryptMany",
            1,
            "k",
            additionalEventData={"batchSize": 7},
            errorCode="DryRunOperationException",
        ),
    ]
    report = usage(stream, [(key("k"), 0)], since=SINCE, until=UNTIL)
    assert report.requests == 4
    assert report.symmetric_requests == 4
    assert report.batch_items == 111
    assert report.saved_requests == 99 + 9 + 0


def test_no_events_and_no_keys() -> None:
    report = usage([], [], since=None, until=UNTIL)
    assert report.requests == 0 and report.months == 0
    assert report.costs()["Total"] == 0
    assert report.as_dict()["ByKey"] == {}
