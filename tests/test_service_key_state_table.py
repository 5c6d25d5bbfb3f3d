"""Answers from AWS's key-state table ("Key states of AWS KMS keys", developer guide)
that kmscore once answered differently; each refusal changes nothing.

- CancelKeyDeletion of a key that is not pending deletion: footnote [4],
  ``KMSInvalidStateException: <key ARN> is not pending deletion.``
- EnableKeyRotation and DisableKeyRotation of an imported key in PendingImport:
  footnote [6], UnsupportedOperationException for origin EXTERNAL, not a state error.
- GetKeyRotationStatus of a key pending deletion succeeds (footnote [7] only).
- CreateGrant needs the key enabled: [1] disabled, [5] pending import, [3]
  pending deletion.
- UpdateAlias, footnote [10]: from a key pending deletion yes, onto one no.

Source: the table in awsdocs/aws-kms-developer-guide, doc_source/key-state.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from service_helpers import Clock, expect, new_key, open_kms

from kmscore.client import LocalKMS


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("key-states"), Clock()) as k:
        yield k


def _metadata(kms: LocalKMS, key: str) -> dict[str, Any]:
    return dict(kms.describe_key(KeyId=key)["KeyMetadata"])


def test_cancel_deletion_of_a_key_not_pending_deletion(kms: LocalKMS) -> None:
    enabled = new_key(kms)
    disabled = new_key(kms)
    kms.disable_key(KeyId=disabled)
    pending_import = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    for key in (enabled, disabled, pending_import):
        before = _metadata(kms, key)
        err = expect("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=key)
        assert err.message == f"{before['Arn']} is not pending deletion."
        assert _metadata(kms, key) == before


def test_rotation_changes_of_a_pending_import_key_are_unsupported(kms: LocalKMS) -> None:
    key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    before = _metadata(kms, key)
    for op in (kms.enable_key_rotation, kms.disable_key_rotation):
        err = expect("UnsupportedOperationException", op, KeyId=key)
        assert "origin" in err.message
    assert _metadata(kms, key) == before
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_rotation_status_of_a_key_pending_deletion(kms: LocalKMS) -> None:
    key = new_key(kms)
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=100)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 100
    before = _metadata(kms, key)
    expect("KMSInvalidStateException", kms.disable_key_rotation, KeyId=key)
    expect("KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key)
    assert _metadata(kms, key) == before


def test_origin_refusals_read_as_aws_footnote_9(kms: LocalKMS) -> None:
    key = new_key(kms)
    arn = _metadata(kms, key)["Arn"]
    err = expect("UnsupportedOperationException", kms.delete_imported_key_material, KeyId=key)
    assert err.message == f"{arn} origin is AWS_KMS which is not valid for this operation."
    err = expect(
        "UnsupportedOperationException",
        kms.get_parameters_for_import,
        KeyId=key,
        WrappingAlgorithm="RSAES_OAEP_SHA_256",
        WrappingKeySpec="RSA_2048",
    )
    assert err.message == f"{arn} origin is AWS_KMS which is not valid for this operation."


def test_duplicate_alias_is_named_by_its_arn(kms: LocalKMS) -> None:
    key, other = new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/taken", TargetKeyId=key)
    err = expect(
        "AlreadyExistsException", kms.create_alias, AliasName="alias/taken", TargetKeyId=other
    )
    arn = _metadata(kms, key)["Arn"].split(":key/")[0] + ":alias/taken"
    assert err.message == f"An alias with the name {arn} already exists"
    aliases = kms.list_aliases(KeyId=key)["Aliases"]
    assert [a["AliasName"] for a in aliases] == ["alias/taken"]
    assert kms.list_aliases(KeyId=other)["Aliases"] == []


GRANTEE = "arn:aws:iam::444455556666:role/grantee"


def test_create_grant_needs_an_enabled_key(kms: LocalKMS) -> None:
    disabled = new_key(kms)
    kms.disable_key(KeyId=disabled)
    pending_import = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    pending_deletion = new_key(kms)
    kms.schedule_key_deletion(KeyId=pending_deletion, PendingWindowInDays=7)
    for key, code, tail in (
        (disabled, "DisabledException", "is disabled."),
        (pending_import, "KMSInvalidStateException", "is pending import."),
        (pending_deletion, "KMSInvalidStateException", "is pending deletion."),
    ):
        err = expect(
            code, kms.create_grant, KeyId=key, GranteePrincipal=GRANTEE, Operations=["Encrypt"]
        )
        assert err.message == f"{_metadata(kms, key)['Arn']} {tail}"
        assert kms.list_grants(KeyId=key)["Grants"] == []


def test_update_alias_from_a_key_pending_deletion_but_not_to_one(kms: LocalKMS) -> None:
    """Footnote [10]: the source key may be pending deletion, the destination not."""
    source, destination, doomed = new_key(kms), new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/moving", TargetKeyId=source)
    kms.schedule_key_deletion(KeyId=source, PendingWindowInDays=7)
    kms.update_alias(AliasName="alias/moving", TargetKeyId=destination)
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    err = expect(
        "KMSInvalidStateException", kms.update_alias, AliasName="alias/moving", TargetKeyId=doomed
    )
    assert err.message.endswith("is pending deletion.")
    (alias,) = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == "alias/moving"]
    assert alias["TargetKeyId"] == destination
