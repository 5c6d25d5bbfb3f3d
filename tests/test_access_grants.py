"""Grants through LocalKMS: what they allow, their constraints, retiring, revoking,
listing, names and tokens, and the batch operations they cover.

The admin (the user a new data dir makes for this uid) creates grants for users
added with ``principals.add``, who act through LocalKMS instances of their own.
Another instance sees a change within 50 ms (:func:`settle`), or at once when
the grant's token is passed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from service_helpers import all_pages, expect
from service_helpers.access import ROOT, identity, settle, user

from kmscore.client import LocalKMS

BOB = user("bob")
CAROL = user("carol")


@pytest.fixture
def key(admin: LocalKMS) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


@pytest.fixture
def bob(as_user: Callable[..., LocalKMS]) -> LocalKMS:
    return as_user("bob")


def grant_ids(kms: LocalKMS, key_id: str, **filters: Any) -> list[str]:
    return [g["GrantId"] for g in kms.list_grants(KeyId=key_id, **filters)["Grants"]]


# --- a grant allows, within its operations -------------------------------------------


def test_denied_then_granted_then_retired(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    grant = admin.create_grant(
        KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt", "Decrypt", "RetireGrant"]
    )
    assert set(grant) == {"GrantId", "GrantToken"}
    assert len(grant["GrantId"]) == 64
    settle()
    blob = bob.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    # Only the granted operations.
    expect("AccessDeniedException", bob.generate_data_key, KeyId=key, KeySpec="AES_256")
    expect("AccessDeniedException", bob.describe_key, KeyId=key)
    expect("AccessDeniedException", bob.disable_key, KeyId=key)
    # The grantee retires its own grant (it holds RetireGrant): gone at once here,
    # and within 50 ms for the admin's instance.
    bob.retire_grant(KeyId=key, GrantId=grant["GrantId"])
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", bob.decrypt, CiphertextBlob=blob)
    settle()
    assert grant_ids(admin, key) == []
    # Its token names no grant any more.
    expect(
        "InvalidGrantTokenException",
        bob.encrypt,
        KeyId=key,
        Plaintext=b"x",
        GrantTokens=[grant["GrantToken"]],
    )


def test_revoked_grant_no_longer_allows(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    grant = admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["GenerateDataKey"])
    settle()
    bob.generate_data_key(KeyId=key, KeySpec="AES_256")
    # The grantee may not revoke (that needs kms:RevokeGrant on the key).
    expect("AccessDeniedException", bob.revoke_grant, KeyId=key, GrantId=grant["GrantId"])
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    settle()
    expect("AccessDeniedException", bob.generate_data_key, KeyId=key, KeySpec="AES_256")
    expect("InvalidGrantIdException", admin.revoke_grant, KeyId=key, GrantId=grant["GrantId"])
    expect("InvalidGrantIdException", admin.revoke_grant, KeyId=key, GrantId="0" * 64)


def test_grant_is_for_its_key_and_grantee_only(
    admin: LocalKMS, bob: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    carol = as_user("carol")
    admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt"])
    settle()
    bob.encrypt(KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", bob.encrypt, KeyId=other, Plaintext=b"x")
    expect("AccessDeniedException", carol.encrypt, KeyId=key, Plaintext=b"x")


def test_grant_operations_must_allow_constraints(admin: LocalKMS, key: str) -> None:
    signing = admin.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    expect(
        "ValidationException",
        admin.create_grant,
        KeyId=signing["KeyMetadata"]["KeyId"],
        GranteePrincipal=BOB,
        Operations=["DescribeKey", "Sign"],
        Constraints={"EncryptionContextSubset": {"a": "b"}},
    )
    expect(
        "ValidationException",
        admin.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Rotate"],
    )
    expect(
        "ValidationException", admin.create_grant, KeyId=key, GranteePrincipal=BOB, Operations=[]
    )
    assert grant_ids(admin, key) == []


def test_constraint_does_not_apply_to_describe_key(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    # AWS GrantConstraints: a constrained grant may include DescribeKey and
    # RetireGrant, and the constraint does not apply to them.
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["DescribeKey", "Encrypt"],
        Constraints={"EncryptionContextSubset": {"a": "b"}},
    )
    settle()
    assert bob.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"a": "b"})


def test_create_grant_dry_run_makes_nothing(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    expect(
        "DryRunOperationException",
        admin.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        DryRun=True,
    )
    assert grant_ids(admin, key) == []
    # An unauthorized dry run is denied, not "would succeed".
    expect(
        "AccessDeniedException",
        bob.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        DryRun=True,
    )


# --- constraints -----------------------------------------------------------------------


def _encrypt_outcome(kms: LocalKMS, key_id: str, context: dict[str, str] | None) -> str:
    request: dict[str, Any] = {"KeyId": key_id, "Plaintext": b"x"}
    if context is not None:
        request["EncryptionContext"] = context
    try:
        kms.encrypt(**request)
    except Exception as exc:  # the code decides
        return str(getattr(exc, "code", exc))
    return "ok"


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ({"Tenant": "A"}, "ok"),
        ({"tenant": "A"}, "ok"),  # keys compare case-insensitively
        ({"TENANT": "A", "extra": "1"}, "ok"),  # a superset is fine
        ({"tenant": "a"}, "AccessDeniedException"),  # values are case-sensitive
        ({"tenant": "B"}, "AccessDeniedException"),
        ({"other": "A"}, "AccessDeniedException"),
        ({}, "AccessDeniedException"),
        (None, "AccessDeniedException"),
    ],
)
def test_encryption_context_subset(
    admin: LocalKMS, bob: LocalKMS, key: str, context: dict[str, str] | None, outcome: str
) -> None:
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextSubset": {"Tenant": "A"}},
    )
    settle()
    assert _encrypt_outcome(bob, key, context) == outcome


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        ({"Tenant": "A", "App": "web"}, "ok"),
        ({"tenant": "A", "APP": "web"}, "ok"),  # keys compare case-insensitively
        ({"Tenant": "A", "App": "Web"}, "AccessDeniedException"),  # values do not
        ({"Tenant": "A"}, "AccessDeniedException"),  # a subset is not equal
        ({"Tenant": "A", "App": "web", "x": "1"}, "AccessDeniedException"),  # nor a superset
        (None, "AccessDeniedException"),
    ],
)
def test_encryption_context_equals(
    admin: LocalKMS, bob: LocalKMS, key: str, context: dict[str, str] | None, outcome: str
) -> None:
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextEquals": {"Tenant": "A", "App": "web"}},
    )
    settle()
    assert _encrypt_outcome(bob, key, context) == outcome


def test_constraints_apply_to_decrypt_and_data_keys(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"tenant": "A"}},
    )
    good = admin.encrypt(KeyId=key, Plaintext=b"a", EncryptionContext={"tenant": "A", "n": "1"})
    bad = admin.encrypt(KeyId=key, Plaintext=b"b", EncryptionContext={"tenant": "B"})
    settle()
    out = bob.decrypt(
        CiphertextBlob=good["CiphertextBlob"], EncryptionContext={"tenant": "A", "n": "1"}
    )
    assert out["Plaintext"] == b"a"
    expect(
        "AccessDeniedException",
        bob.decrypt,
        CiphertextBlob=bad["CiphertextBlob"],
        EncryptionContext={"tenant": "B"},
    )
    bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"Tenant": "A"})
    expect("AccessDeniedException", bob.generate_data_key, KeyId=key, KeySpec="AES_256")
    batch = bob.generate_data_keys(
        KeyId=key, Count=4, KeySpec="AES_256", EncryptionContext={"tenant": "A"}
    )
    assert len(batch["CiphertextBlobs"]) == 4
    expect(
        "AccessDeniedException",
        bob.generate_data_keys,
        KeyId=key,
        Count=4,
        KeySpec="AES_256",
        EncryptionContext={"tenant": "B"},
    )


# --- batch operations are authorized as the operations they batch ----------------------


def test_generate_data_keys_needs_generate_data_key(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    expect("AccessDeniedException", bob.generate_data_keys, KeyId=key, Count=2, KeySpec="AES_256")
    admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["GenerateDataKey"])
    settle()
    out = bob.generate_data_keys(KeyId=key, Count=3, KeySpec="AES_256")
    assert len(out["Plaintexts"]) == 3 and len(out["CiphertextBlobs"]) == 3
    # WithoutPlaintext is GenerateDataKeyWithoutPlaintext: another operation.
    expect(
        "AccessDeniedException",
        bob.generate_data_keys,
        KeyId=key,
        Count=3,
        KeySpec="AES_256",
        WithoutPlaintext=True,
    )
    admin.create_grant(
        KeyId=key, GranteePrincipal=BOB, Operations=["GenerateDataKeyWithoutPlaintext"]
    )
    settle()
    out = bob.generate_data_keys(KeyId=key, Count=3, KeySpec="AES_256", WithoutPlaintext=True)
    assert "Plaintexts" not in out
    # The admin decrypts what bob made (bob has no Decrypt).
    assert admin.decrypt(CiphertextBlob=out["CiphertextBlobs"][0])["Plaintext"]
    expect("AccessDeniedException", bob.decrypt, CiphertextBlob=out["CiphertextBlobs"][0])


def test_decrypt_many_needs_decrypt_on_every_key(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    mine = [admin.encrypt(KeyId=key, Plaintext=bytes([i]))["CiphertextBlob"] for i in range(10)]
    theirs = admin.encrypt(KeyId=other, Plaintext=b"z")["CiphertextBlob"]
    expect("AccessDeniedException", bob.decrypt_many, CiphertextBlobs=mine)
    admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"])
    settle()
    results = bob.decrypt_many(CiphertextBlobs=mine)["Results"]
    assert [r["Plaintext"] for r in results] == [bytes([i]) for i in range(10)]
    # One blob under a key bob may not use fails the whole call.
    expect("AccessDeniedException", bob.decrypt_many, CiphertextBlobs=[*mine, theirs])


# --- CreateGrant Name idempotency ------------------------------------------------------


def test_create_grant_is_idempotent_by_name(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    request: dict[str, Any] = {
        "KeyId": key,
        "GranteePrincipal": BOB,
        "Operations": ["Encrypt", "Decrypt"],
        "Constraints": {"EncryptionContextSubset": {"app": "web"}},
        "Name": "web-app",
    }
    first = admin.create_grant(**request)
    again = admin.create_grant(**request)
    assert again["GrantId"] == first["GrantId"]
    assert grant_ids(admin, key) == [first["GrantId"]]
    # The token of either answer works.
    bob.encrypt(
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"app": "web"},
        GrantTokens=[again["GrantToken"]],
    )
    # Same name, different request: a new grant.
    changed = admin.create_grant(**{**request, "Operations": ["Encrypt"]})
    assert changed["GrantId"] != first["GrantId"]
    # No name: every call makes a grant.
    unnamed = {k: v for k, v in request.items() if k != "Name"}
    a = admin.create_grant(**unnamed)["GrantId"]
    b = admin.create_grant(**unnamed)["GrantId"]
    assert a != b
    assert set(grant_ids(admin, key)) == {first["GrantId"], changed["GrantId"], a, b}
    names = {g["GrantId"]: g["Name"] for g in admin.list_grants(KeyId=key)["Grants"]}
    assert names[first["GrantId"]] == "web-app" and names[a] == ""


# --- ListGrants / ListRetirableGrants ---------------------------------------------------


def test_list_grants_pages_and_filters(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    made: dict[str, str] = {}
    for i in range(7):
        grantee = BOB if i % 2 == 0 else CAROL
        g = admin.create_grant(
            KeyId=key,
            GranteePrincipal=grantee,
            RetiringPrincipal=ROOT,
            Operations=["Encrypt"] if i % 3 else ["Decrypt", "Encrypt"],
            Constraints={"EncryptionContextEquals": {"n": str(i)}},
            Name=f"g{i}",
        )
        made[g["GrantId"]] = grantee
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_grant(KeyId=other, GranteePrincipal=BOB, Operations=["Encrypt"])

    grants, pages = all_pages(admin.list_grants, "Grants", 3, KeyId=key)
    assert pages == 3
    assert [g["GrantId"] for g in grants] == sorted(made)
    entry = grants[0]
    assert set(entry) == {
        "KeyId",
        "GrantId",
        "Name",
        "CreationDate",
        "GranteePrincipal",
        "RetiringPrincipal",
        "IssuingAccount",
        "Operations",
        "Constraints",
    }
    assert entry["KeyId"] == admin.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    assert entry["IssuingAccount"] == ROOT
    assert entry["RetiringPrincipal"] == ROOT
    assert entry["Name"].startswith("g")
    assert set(entry["Constraints"]) == {"EncryptionContextEquals"}

    bobs, _ = all_pages(admin.list_grants, "Grants", 2, KeyId=key, GranteePrincipal=BOB)
    assert sorted(g["GrantId"] for g in bobs) == sorted(i for i, p in made.items() if p == BOB)
    assert len(bobs) == 4
    one = next(iter(made))
    assert grant_ids(admin, key, GrantId=one) == [one]
    # A grant of another key is not found through this key.
    other_grant = grant_ids(admin, other)[0]
    expect("InvalidGrantIdException", admin.list_grants, KeyId=key, GrantId=other_grant)
    expect("InvalidMarkerException", admin.list_grants, KeyId=key, Marker="bm90LW91cnM=")
    expect("NotFoundException", admin.list_grants, KeyId="alias/none")
    # Listing needs kms:ListGrants on the key.
    bob = as_user("bob")
    expect("AccessDeniedException", bob.list_grants, KeyId=key)


def test_list_retirable_grants(admin: LocalKMS, as_user: Callable[..., LocalKMS]) -> None:
    keys = [admin.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)]
    retirable = set()
    for i in range(5):
        g = admin.create_grant(
            KeyId=keys[i % 2], GranteePrincipal=BOB, RetiringPrincipal=CAROL, Operations=["Encrypt"]
        )
        retirable.add(g["GrantId"])
    admin.create_grant(
        KeyId=keys[0], GranteePrincipal=BOB, RetiringPrincipal=BOB, Operations=["Encrypt"]
    )
    admin.create_grant(KeyId=keys[0], GranteePrincipal=CAROL, Operations=["Encrypt"])
    grants, pages = all_pages(admin.list_retirable_grants, "Grants", 2, RetiringPrincipal=CAROL)
    assert pages == 3
    assert [g["GrantId"] for g in grants] == sorted(retirable)
    assert {g["KeyId"].rsplit("/", 1)[1] for g in grants} == set(keys)
    assert all(g["RetiringPrincipal"] == CAROL for g in grants)
    assert admin.list_retirable_grants(RetiringPrincipal=user("nobody"))["Grants"] == []
    # An account-level action: needs kms:ListRetirableGrants in the identity policy.
    carol = as_user("carol")
    expect("AccessDeniedException", carol.list_retirable_grants, RetiringPrincipal=CAROL)
    dave = as_user("dave", identity("kms:ListRetirableGrants"))
    assert len(dave.list_retirable_grants(RetiringPrincipal=CAROL, Limit=10)["Grants"]) == 5


# --- RetireGrant permissions ------------------------------------------------------------


def test_who_may_retire_a_grant(
    data_dir: Path, admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    carol = as_user("carol")
    dave = as_user("dave", identity("kms:*"))
    ghost = as_user("ghost", add=False)

    def new(**extra: Any) -> dict[str, str]:
        return dict(admin.create_grant(KeyId=key, GranteePrincipal=BOB, **extra))

    # The retiring principal, by token.
    g1 = new(RetiringPrincipal=CAROL, Operations=["Encrypt"])
    expect("AccessDeniedException", bob.retire_grant, GrantToken=g1["GrantToken"])
    expect("AccessDeniedException", dave.retire_grant, GrantToken=g1["GrantToken"])
    expect("AccessDeniedException", ghost.retire_grant, GrantToken=g1["GrantToken"])
    settle()
    assert g1["GrantId"] in grant_ids(admin, key)
    carol.retire_grant(GrantToken=g1["GrantToken"])
    # The grantee, when the grant includes RetireGrant, by key and grant id.
    g2 = new(Operations=["Encrypt", "RetireGrant"])
    expect("AccessDeniedException", carol.retire_grant, KeyId=key, GrantId=g2["GrantId"])
    bob.retire_grant(KeyId=key, GrantId=g2["GrantId"])
    # The grantee without RetireGrant may not; the account root may.
    g3 = new(Operations=["Encrypt"])
    expect("AccessDeniedException", bob.retire_grant, KeyId=key, GrantId=g3["GrantId"])
    with LocalKMS(data_dir, principal=ROOT, audit=False) as root:
        root.retire_grant(KeyId=key, GrantId=g3["GrantId"])
    with LocalKMS(data_dir, principal="arn:aws:iam::999988887777:root", audit=False) as stranger:
        g4 = new(Operations=["Encrypt"])
        expect("AccessDeniedException", stranger.retire_grant, GrantToken=g4["GrantToken"])
    settle()
    assert grant_ids(admin, key) == [g4["GrantId"]]
    # Unknown grants.
    expect("InvalidGrantTokenException", carol.retire_grant, GrantToken="no-such-token")
    expect("InvalidGrantIdException", bob.retire_grant, KeyId=key, GrantId="0" * 64)
    expect("ValidationException", bob.retire_grant, GrantId=g4["GrantId"])


# --- grant tokens -----------------------------------------------------------------------


def test_unknown_grant_token_is_refused(admin: LocalKMS, key: str) -> None:
    for call, request in [
        (admin.encrypt, {"KeyId": key, "Plaintext": b"x"}),
        (admin.generate_data_key, {"KeyId": key, "KeySpec": "AES_256"}),
        (admin.describe_key, {"KeyId": key}),
        (admin.generate_data_keys, {"KeyId": key, "Count": 2, "KeySpec": "AES_256"}),
    ]:
        expect("InvalidGrantTokenException", call, **request, GrantTokens=["not-a-token"])
    expect(
        "ValidationException",
        admin.encrypt,
        KeyId=key,
        Plaintext=b"x",
        GrantTokens=["t"] * 11,
    )


def test_fresh_token_works_at_once_in_another_instance(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    # Bob's instance has just looked at the store, so it will not look again
    # for 50 ms: without the token, the new grant may not be seen yet.
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    grant = admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"t": "1"}},
    )
    blob = bob.encrypt(
        KeyId=key, Plaintext=b"x", EncryptionContext={"t": "1"}, GrantTokens=[grant["GrantToken"]]
    )["CiphertextBlob"]
    # The token carries the grant, constraints included.
    expect(
        "AccessDeniedException",
        bob.encrypt,
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"t": "2"},
        GrantTokens=[grant["GrantToken"]],
    )
    out = bob.decrypt(
        CiphertextBlob=blob, EncryptionContext={"t": "1"}, GrantTokens=[grant["GrantToken"]]
    )
    assert out["Plaintext"] == b"x"
    # A token only helps its grantee.
    with LocalKMS(admin.service.data_dir, principal=CAROL, audit=False) as carol:
        admin.service.principals.add("carol")
        expect(
            "AccessDeniedException",
            carol.encrypt,
            KeyId=key,
            Plaintext=b"x",
            EncryptionContext={"t": "1"},
            GrantTokens=[grant["GrantToken"]],
        )
    settle()
    bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"t": "1"})


def test_constraints_with_keys_that_differ_only_in_case(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextSubset": {"tenant": "A"}},
    )
    admin.create_grant(
        KeyId=other,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextEquals": {"tenant": "A"}},
    )
    settle()
    # Two keys that fold to one: the context still holds the pair Tenant=A, so it
    # has at least the subset's pairs, whichever value the other key carries...
    assert _encrypt_outcome(bob, key, {"Tenant": "A", "tenant": "B"}) == "ok"
    assert _encrypt_outcome(bob, key, {"Tenant": "B", "tenant": "A"}) == "ok"
    assert _encrypt_outcome(bob, key, {"Tenant": "B", "tenant": "C"}) == "AccessDeniedException"
    # ...but two pairs are not exactly the one pair of an Equals constraint.
    assert _encrypt_outcome(bob, other, {"Tenant": "A", "tenant": "A"}) == "AccessDeniedException"
    assert _encrypt_outcome(bob, other, {"Tenant": "A", "tenant": "B"}) == "AccessDeniedException"
    assert _encrypt_outcome(bob, other, {"TENANT": "A"}) == "ok"


def test_reencrypt_needs_re_encrypt_from_and_to(admin: LocalKMS, bob: LocalKMS, key: str) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    back = admin.encrypt(KeyId=other, Plaintext=b"y")["CiphertextBlob"]
    admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["ReEncryptFrom"])
    admin.create_grant(KeyId=other, GranteePrincipal=BOB, Operations=["ReEncryptTo"])
    settle()
    moved = bob.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other)
    assert admin.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"x"
    err = expect("AccessDeniedException", bob.re_encrypt, CiphertextBlob=back, DestinationKeyId=key)
    assert "kms:ReEncryptFrom" in err.message
    # Neither grant allows Decrypt or Encrypt.
    expect("AccessDeniedException", bob.decrypt, CiphertextBlob=blob)
    expect("AccessDeniedException", bob.encrypt, KeyId=other, Plaintext=b"z")
