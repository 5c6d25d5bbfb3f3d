"""What the KMS was used for, and what AWS KMS would have charged for it.

:func:`usage` reads the audit trail and counts requests per key and per
operation, then prices them with AWS KMS's published list prices (us-east-1):

- $1 per key-month, prorated hourly, for keys not pending deletion, plus $1 per
  month for each of the first two rotated material versions (AWS's 2024 rule);
- $0.03 per 10,000 requests on symmetric and HMAC keys, and for RSA_2048;
  $0.15 per 10,000 requests on other asymmetric keys; $0.10 per 10,000
  GenerateDataKeyPair requests for ECC pairs and $12 per 10,000 for RSA pairs;
- 20,000 requests free each month (asymmetric and data-key-pair requests are
  not free, as at AWS).

Batch extensions count as one request each, as they are one call; the report
also shows how many requests they saved against one call per data key (or per
ciphertext). Keys deleted from the store before the report are not charged
(their history is only in the trail); prices are list prices, not a bill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState

__all__ = ["PRICES", "UsageReport", "usage"]

#: USD list prices (us-east-1).
PRICES: Final = {
    "key_month": 1.00,
    "rotation_month": 1.00,
    "symmetric_per_10k": 0.03,
    "asymmetric_per_10k": 0.15,
    "ecc_key_pair_per_10k": 0.10,
    "rsa_key_pair_per_10k": 12.00,
    "free_requests_per_month": 20_000,
}
HOURS_PER_MONTH: Final = 730.0
_BATCH_OPERATIONS: Final = {"GenerateDataKeys": "GenerateDataKey", "DecryptMany": "Decrypt"}


@dataclass
class UsageReport:
    """Counts and prices for a period."""

    since: datetime | None
    until: datetime
    requests: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    by_key: dict[str, Counter[str]] = field(default_factory=dict)
    errors: int = 0
    batch_items: int = 0
    saved_requests: int = 0
    symmetric_requests: int = 0
    asymmetric_requests: int = 0
    key_pair_requests: Counter[str] = field(default_factory=Counter)
    key_months: float = 0.0
    rotation_months: float = 0.0
    months: float = 0.0

    def costs(self) -> dict[str, float]:
        """The priced lines, in USD."""
        free = PRICES["free_requests_per_month"] * max(self.months, 1 / HOURS_PER_MONTH)
        billable_symmetric = max(0.0, self.symmetric_requests - free)
        out = {
            "KeyStorage": self.key_months * PRICES["key_month"]
            + self.rotation_months * PRICES["rotation_month"],
            "SymmetricRequests": billable_symmetric / 10_000 * PRICES["symmetric_per_10k"],
            "AsymmetricRequests": self.asymmetric_requests / 10_000 * PRICES["asymmetric_per_10k"],
            "DataKeyPairRequests": (
                self.key_pair_requests["ECC"] * PRICES["ecc_key_pair_per_10k"]
                + self.key_pair_requests["RSA"] * PRICES["rsa_key_pair_per_10k"]
            )
            / 10_000,
        }
        out["Total"] = sum(out.values())
        return out

    def unbatched_request_cost(self) -> float:
        """What the symmetric requests would cost at one call per data key."""
        free = PRICES["free_requests_per_month"] * max(self.months, 1 / HOURS_PER_MONTH)
        billable = max(0.0, self.symmetric_requests + self.saved_requests - free)
        return billable / 10_000 * PRICES["symmetric_per_10k"]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "Since": self.since.isoformat() if self.since else None,
            "Until": self.until.isoformat(),
            "Requests": self.requests,
            "Errors": self.errors,
            "ByOperation": dict(self.by_operation.most_common()),
            "ByKey": {k: dict(v.most_common()) for k, v in sorted(self.by_key.items())},
            "BatchItems": self.batch_items,
            "RequestsSavedByBatching": self.saved_requests,
            "KeyMonths": round(self.key_months, 4),
            "RotationMonths": round(self.rotation_months, 4),
            "CostsUSD": {k: round(v, 6) for k, v in self.costs().items()},
            "SymmetricRequestCostWithoutBatchingUSD": round(self.unbatched_request_cost(), 6),
        }


def _is_asymmetric(spec: str | None) -> bool:
    return spec is not None and spec.startswith(("RSA_", "ECC_", "ML_DSA", "ML_KEM", "SM2"))


def usage(
    events: Iterable[Mapping[str, Any]],
    keys: Iterable[tuple[KeyRecord, int]],
    *,
    since: datetime | None,
    until: datetime,
) -> UsageReport:
    """Count and price the calls in ``events`` and the keys in ``keys``.

    Args:
        events: Audit events (CloudTrail-shaped) within the period.
        keys: Each key in the store with its number of rotations.
        since: Start of the period (None: from the first event).
        until: End of the period (usually now).

    Returns:
        The report.
    """
    report = UsageReport(since, until)
    specs: dict[str, str] = {}
    start = since
    key_list = list(keys)
    for key, _ in key_list:
        specs[key.arn] = key.key_spec
    for event in events:
        name = str(event.get("eventName", ""))
        report.requests += 1
        report.by_operation[name] += 1
        if event.get("errorCode"):
            report.errors += 1
        arns = [r.get("ARN") for r in event.get("resources") or () if isinstance(r, Mapping)]
        for arn in arns:
            if isinstance(arn, str):
                report.by_key.setdefault(arn, Counter())[name] += 1
        spec = next((specs.get(a) for a in arns if isinstance(a, str) and a in specs), None)
        if name.startswith("GenerateDataKeyPair"):
            pair = (event.get("requestParameters") or {}).get("keyPairSpec", "")
            report.key_pair_requests["RSA" if str(pair).startswith("RSA") else "ECC"] += 1
        elif _is_asymmetric(spec) and spec != "RSA_2048":
            report.asymmetric_requests += 1
        else:
            report.symmetric_requests += 1
        if name in _BATCH_OPERATIONS and not event.get("errorCode"):
            # A failed batch delivered nothing, so it saved nothing either.
            size = (event.get("additionalEventData") or {}).get("batchSize")
            if isinstance(size, int) and size > 0:
                report.batch_items += size
                report.saved_requests += size - 1
        when = event.get("eventTime")
        if start is None and isinstance(when, str):
            start = datetime.fromisoformat(when.replace("Z", "+00:00"))
    begin = start or until
    report.months = max(0.0, (until - begin).total_seconds() / 3600 / HOURS_PER_MONTH)
    for key, rotations in key_list:
        if key.state is KeyState.PENDING_DELETION:
            continue
        hours = (until - max(key.creation_date, begin)).total_seconds() / 3600
        if hours <= 0:
            continue
        report.key_months += hours / HOURS_PER_MONTH
        report.rotation_months += min(rotations, 2) * hours / HOURS_PER_MONTH
    return report
