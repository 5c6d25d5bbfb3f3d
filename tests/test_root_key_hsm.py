"""The root key inside a PKCS#11 token (SoftHSM2): ``kms init --root pkcs11:...``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hsm_support import PIN, new_token, softhsm_conf, softhsm_module

from kmscore.crypto.pkcs11_root import Pkcs11RootKey, parse_pkcs11_uri
from kmscore.crypto.pkcs11_token import TokenAead
from kmscore.crypto.rootkey import ROOT_KEY_FILE, RootKeyError
from kmscore.frontends.cli import admin
from kmscore.frontends.cli.main import cli
from kmscore.model.caller import Caller
from kmscore.operations import dispatch
from kmscore.service import open_service

ROOT = Caller(arn="arn:aws:iam::111122223333:root", account="111122223333", principal_id="x")


def uri(label: str) -> str:
    return f"pkcs11:token={label};object=kmscore-root?module-path={softhsm_module()}"


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    softhsm_conf()


def test_material_at_rest_is_wrapped_by_the_token(tmp_path: Path) -> None:
    label = new_token()
    data_dir = tmp_path / "kms"
    svc = open_service(data_dir, passphrase=PIN, root=uri(label), audit=False)
    try:
        assert isinstance(svc.root_key, Pkcs11RootKey)
        assert not (data_dir / ROOT_KEY_FILE).exists()
        # No root key bytes in this process: the token seals and digests.
        assert isinstance(svc.root_key._aead, TokenAead)
        assert svc.root_key._digest_key == b""
        attrs = svc.root_key._conn.attributes("kmscore-root")
        assert attrs == {"sensitive": True, "extractable": False, "token": True}
        key_id = dispatch(svc, "CreateKey", {}, ROOT)["KeyMetadata"]["KeyId"]
        blob = dispatch(svc, "Encrypt", {"KeyId": key_id, "Plaintext": b"at rest"}, ROOT)[
            "CiphertextBlob"
        ]
        wrapped = svc.store.get_material(key_id, 1)
        assert wrapped is not None and len(wrapped.wrapped) == 12 + 32 + 16
        secret = svc.root_key.digest(b"test", b"data")
        assert len(secret) == 32 and secret == svc.root_key.digest(b"test", b"data")
    finally:
        svc.close()
    again = open_service(data_dir, passphrase=PIN, audit=False)
    try:
        out = dispatch(again, "Decrypt", {"CiphertextBlob": blob}, ROOT)
        assert out["Plaintext"] == b"at rest"
        assert again.root_key.digest(b"test", b"data") == secret
    finally:
        again.close()
    with pytest.raises(RootKeyError, match="INVALID_CREDENTIALS"):
        open_service(data_dir, passphrase="wrong-pin-9", audit=False)
    with pytest.raises(RootKeyError, match="PIN"):
        open_service(data_dir, audit=False)


def test_uri_errors() -> None:
    with pytest.raises(RootKeyError):
        parse_pkcs11_uri("file:/x")
    with pytest.raises(RootKeyError, match="module-path"):
        parse_pkcs11_uri("pkcs11:token=a;object=b")
    parsed = parse_pkcs11_uri("pkcs11:token=my%20token;object=root?module-path=/m.so")
    assert (parsed.token, parsed.object, parsed.module) == ("my token", "root", "/m.so")
    assert parse_pkcs11_uri(str(parsed)) == parsed


def test_a_token_without_the_root_key(tmp_path: Path) -> None:
    label = new_token()
    with pytest.raises(RootKeyError, match="no root key"):
        Pkcs11RootKey(parse_pkcs11_uri(uri(label)), PIN.encode())


def test_kms_init_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    label = new_token()
    admin.register(cli)
    monkeypatch.setenv("TOKEN_PIN", PIN)
    monkeypatch.delenv("KMS_DATA_DIR", raising=False)
    data_dir = tmp_path / "kms"
    result = CliRunner().invoke(
        cli,
        ["init", "--data-dir", str(data_dir), "--root", uri(label), "--passphrase-env",
         "TOKEN_PIN"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    svc = open_service(data_dir, passphrase=os.environ["TOKEN_PIN"], audit=False)
    try:
        assert isinstance(svc.root_key, Pkcs11RootKey)
    finally:
        svc.close()
