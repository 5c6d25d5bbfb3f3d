"""Access to ML-KEM keys: a grant lets another principal Encapsulate and Decapsulate,
only the operations it names, and a policy without them denies both."""

from __future__ import annotations

from collections.abc import Callable

from service_helpers import expect
from service_helpers.access import identity, user

from kmscore.client import LocalKMS


def test_a_grant_allows_only_the_operations_it_names(
    admin: LocalKMS, as_user: Callable[..., LocalKMS]
) -> None:
    key = admin.create_key(KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")
    key_id = key["KeyMetadata"]["KeyId"]
    sender = as_user("sender", identity("kms:DescribeKey"))
    expect(
        "AccessDeniedException", sender.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM"
    )
    grant = admin.create_grant(
        KeyId=key_id, GranteePrincipal=user("sender"), Operations=["Encapsulate"]
    )
    sent = sender.encapsulate(
        KeyId=key_id, EncapsulationAlgorithm="ML_KEM", GrantTokens=[grant["GrantToken"]]
    )
    expect(
        "AccessDeniedException",
        sender.decapsulate,
        KeyId=key_id,
        SharedSecretCiphertextBlob=sent["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
        GrantTokens=[grant["GrantToken"]],
    )
    back = admin.decapsulate(
        KeyId=key_id,
        SharedSecretCiphertextBlob=sent["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )
    assert back["SharedSecret"] == sent["SharedSecret"]
