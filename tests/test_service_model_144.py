"""Members botocore 1.44 added to existing operations, as kmscore answers them.

- ListKeys ``ResourceOwners``: no key is shared through RAM in kmscore.
- Grants to AWS service principals (``GranteeServicePrincipal``,
  ``RetiringServicePrincipal``, the ``SourceArn`` constraint): kmscore has no
  AWS service principals, so they are refused with UnsupportedOperationException
  after AWS's either/or checks; nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_helpers import ACCOUNT, Clock, expect, new_key, open_kms

from kmscore.client import LocalKMS

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
SERVICE = "logs.eu-west-3.amazonaws.com"


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("model144"), Clock()) as k:
        yield k


def test_list_keys_resource_owners(kms: LocalKMS) -> None:
    key = new_key(kms)
    mine = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    assert key in mine
    assert {k["KeyId"] for k in kms.list_keys(ResourceOwners=["SELF"])["Keys"]} == mine
    both = kms.list_keys(ResourceOwners=["OTHER_ACCOUNTS_VIA_RAM", "SELF"])["Keys"]
    assert {k["KeyId"] for k in both} == mine
    assert kms.list_keys(ResourceOwners=["OTHER_ACCOUNTS_VIA_RAM"])["Keys"] == []
    expect("ValidationException", kms.list_keys, ResourceOwners=[])
    expect("ValidationException", kms.list_keys, ResourceOwners=["EVERYONE"])


def _grants(kms: LocalKMS, key: str) -> list[str]:
    return [g["GrantId"] for g in kms.list_grants(KeyId=key)["Grants"]]


def test_service_principal_grants_are_refused_and_change_nothing(kms: LocalKMS) -> None:
    key = new_key(kms)
    before = _grants(kms, key)
    ops = ["Decrypt"]
    err = expect(
        "UnsupportedOperationException",
        kms.create_grant,
        KeyId=key,
        GranteeServicePrincipal=SERVICE,
        RetiringPrincipal=ROLE,
        Operations=ops,
    )
    assert "GranteeServicePrincipal" in err.message
    expect(
        "UnsupportedOperationException",
        kms.create_grant,
        KeyId=key,
        GranteePrincipal=ROLE,
        RetiringServicePrincipal=SERVICE,
        Operations=ops,
    )
    expect(
        "UnsupportedOperationException",
        kms.create_grant,
        KeyId=key,
        GranteePrincipal=ROLE,
        Operations=ops,
        Constraints={"SourceArn": f"arn:aws:logs:eu-west-3:{ACCOUNT}:log-group:x"},
    )
    err = expect("ValidationException", kms.create_grant, KeyId=key, Operations=ops)
    assert "GranteePrincipal or GranteeServicePrincipal" in err.message
    expect(
        "ValidationException",
        kms.create_grant,
        KeyId=key,
        GranteePrincipal=ROLE,
        GranteeServicePrincipal=SERVICE,
        Operations=ops,
    )
    expect(
        "ValidationException",
        kms.create_grant,
        KeyId=key,
        GranteeServicePrincipal="not a service",
        Operations=ops,
    )
    assert _grants(kms, key) == before
    # A plain grant still works.
    kms.create_grant(KeyId=key, GranteePrincipal=ROLE, Operations=ops)
    assert len(_grants(kms, key)) == len(before) + 1


def test_service_principal_filters(kms: LocalKMS) -> None:
    key = new_key(kms)
    expect(
        "UnsupportedOperationException",
        kms.list_grants,
        KeyId=key,
        GranteeServicePrincipal=SERVICE,
    )
    expect(
        "UnsupportedOperationException",
        kms.list_retirable_grants,
        RetiringServicePrincipal=SERVICE,
    )
    err = expect("ValidationException", kms.list_retirable_grants)
    assert "RetiringPrincipal or RetiringServicePrincipal" in err.message
    assert kms.list_retirable_grants(RetiringPrincipal=ROLE)["Grants"] == []
