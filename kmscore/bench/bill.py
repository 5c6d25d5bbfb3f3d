"""What a measured load would cost on AWS KMS, at list prices, per month.

The prices are those ``kms usage`` charges (:data:`kmscore.audit.usage.PRICES`,
us-east-1): $1 per key-month; $0.03 per 10,000 requests on symmetric and HMAC
keys and RSA_2048; $0.15 per 10,000 on other asymmetric keys; 20,000
requests a month free, for symmetric and HMAC requests only. A month is 730
hours, as AWS's calculator counts it.

Two savings are shown beside the bill, both in kmscore's own terms:

- the data key cache (:class:`kmscore.envelope.DataKeyCache`): with each data
  key used for ``reuse`` messages, one GenerateDataKey serves that many
  messages, and one Decrypt opens the data key of all of them (the cache keeps
  decryption materials too, by encrypted data key);
- the batch calls: GenerateDataKeys of ``batch`` keys, and DecryptMany of
  ``batch`` ciphertexts, is one request each, as ``kms usage`` counts them.
  AWS KMS has no batch call; this is what the same data keys cost when each
  batch is priced as one request.

Check of the arithmetic (the tests assert it): 5M GenerateDataKey plus 50M
Decrypt a month is 5,500 x $0.03 = $165.00 in requests before the free tier
($164.94 after it), plus $1 per key-month.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kmscore.audit.usage import HOURS_PER_MONTH, PRICES

__all__ = ["SECONDS_PER_MONTH", "monthly_bill", "request_rate"]

SECONDS_PER_MONTH: Final = HOURS_PER_MONTH * 3600
#: The calls the cache and the batch calls take the place of.
_DATA_KEY_CALLS: Final = frozenset({"GenerateDataKey", "GenerateDataKeys", "Decrypt"})


def request_rate(spec: str | None) -> float:
    """USD per 10,000 requests on a key of ``spec`` (None: symmetric)."""
    asymmetric = spec is not None and spec.startswith(("RSA_", "ECC_", "ML_DSA", "ML_KEM", "SM2"))
    if not asymmetric or spec == "RSA_2048":
        return float(PRICES["symmetric_per_10k"])
    return float(PRICES["asymmetric_per_10k"])


def _cost(requests: Mapping[tuple[str, str | None], float]) -> dict[str, float]:
    symmetric = PRICES["symmetric_per_10k"]
    free_rate = {k: v for k, v in requests.items() if request_rate(k[1]) == symmetric}
    gross = sum(n / 10_000 * request_rate(spec) for (_, spec), n in requests.items())
    free_requests = min(float(PRICES["free_requests_per_month"]), sum(free_rate.values()))
    free = free_requests / 10_000 * PRICES["symmetric_per_10k"]
    return {"gross": gross, "free_tier": free, "net": gross - free}


def monthly_bill(
    per_month: Mapping[tuple[str, str | None], float],
    keys: int,
    *,
    reuse: int = 1,
    batch: int = 1,
) -> dict[str, Any]:
    """Price a month of requests.

    Args:
        per_month: Requests per month by (operation, key spec). Batch calls
            (GenerateDataKeys) are counted here per data key, as AWS would
            bill them: one GenerateDataKey each.
        keys: KMS keys the load uses (each a key-month).
        reuse: Messages per data key with the data key cache (1: no cache).
        batch: Data keys per GenerateDataKeys call for the batch saving (1: none).

    Returns:
        ``requests`` (per operation), ``request_cost`` (gross, free tier, net),
        ``key_cost``, ``total``, and ``with_cache`` / ``with_batches``: the
        net request cost and the saving under each.

    Raises:
        ValueError: ``reuse`` or ``batch`` below 1, or a negative count.
    """
    if reuse < 1 or batch < 1 or keys < 0 or any(n < 0 for n in per_month.values()):
        raise ValueError("reuse and batch must be at least 1, counts not negative")
    plain = _cost(per_month)
    key_cost = keys * PRICES["key_month"]

    def scaled(divisor: int) -> dict[str, float]:
        moved = {k: (n / divisor if k[0] in _DATA_KEY_CALLS else n) for k, n in per_month.items()}
        net = _cost(moved)["net"]
        return {"request_cost": round(net, 4), "saving": round(plain["net"] - net, 4)}

    return {
        "requests": {
            (op if spec in (None, "SYMMETRIC_DEFAULT") else f"{op}:{spec}"): round(n)
            for (op, spec), n in per_month.items()
        },
        "request_cost": {k: round(v, 4) for k, v in plain.items()},
        "key_cost": round(key_cost, 4),
        "total": round(plain["net"] + key_cost, 4),
        "with_cache": dict(scaled(reuse), reuse=reuse),
        "with_batches": dict(scaled(batch), batch=batch),
    }
