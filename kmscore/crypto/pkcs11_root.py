"""The root of trust inside a PKCS#11 token: ``kms init --root pkcs11:...``.

The root key is an AES-256 key made by the token (sensitive, not
extractable), and the digest key an HMAC-SHA256 secret made beside it: every
wrap and unwrap of key material at rest is ``CKM_AES_GCM`` by the token, and
every keyed digest ``CKM_SHA256_HMAC``. Neither key is ever in this process's
memory; only unwrapped key material is (as with any root key, for the engine).

The token is named by an RFC 7512 PKCS#11 URI, with the module path as a
query attribute::

    pkcs11:token=kmscore;object=kmscore-root?module-path=/usr/lib/softhsm/libsofthsm2.so

The user PIN is given the way a root key passphrase is (``--passphrase-env``
or ``$KMS_PASSPHRASE``): for such a data dir, the passphrase *is* the PIN.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from kmscore.crypto.pkcs11_token import TokenAead, TokenConnectError, TokenConnection
from kmscore.crypto.rootkey import RootKey, RootKeyError

__all__ = ["Pkcs11RootKey", "Pkcs11Uri", "parse_pkcs11_uri"]

_DIGEST_SUFFIX = ":digest"


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """What a ``pkcs11:`` URI names: the module, the token and the key object."""

    module: str
    token: str
    object: str

    def __str__(self) -> str:
        path = f"token={urllib.parse.quote(self.token)};object={urllib.parse.quote(self.object)}"
        return f"pkcs11:{path}?module-path={urllib.parse.quote(self.module, safe='/')}"


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse ``pkcs11:token=T;object=O?module-path=/path/to/module.so``.

    Raises:
        RootKeyError: not such a URI, or a part missing.
    """
    if not uri.startswith("pkcs11:"):
        raise RootKeyError(f"{uri!r} is not a pkcs11: URI.")
    path, _, query = uri[len("pkcs11:") :].partition("?")
    attrs: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        if not sep:
            raise RootKeyError(f"{part!r} of the PKCS#11 URI is not name=value.")
        attrs[name] = urllib.parse.unquote(value)
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        attrs[name] = urllib.parse.unquote(value)
    missing = [n for n in ("token", "object", "module-path") if not attrs.get(n)]
    if missing:
        raise RootKeyError(f"The PKCS#11 URI needs {', '.join(missing)}.")
    return Pkcs11Uri(attrs["module-path"], attrs["token"], attrs["object"])


class Pkcs11RootKey(RootKey):
    """A root key that lives in a PKCS#11 token; see the module docstring."""

    __slots__ = ("_conn", "_digest_label", "uri")

    def __init__(self, uri: Pkcs11Uri, pin: bytes, *, create: bool = False) -> None:
        """Log in to the token and find (or, with ``create``, make) the root keys.

        Raises:
            RootKeyError: the token cannot be opened (wrong PIN, missing
                token or module), or the key objects are missing (or exist
                already, when creating).
        """
        try:
            self._conn = TokenConnection(uri.module, uri.token, pin.decode())
        except TokenConnectError as exc:
            raise RootKeyError(
                f"The root key's token cannot be opened ({exc.code}): {exc}"
            ) from None
        self.uri = uri
        self._digest_label = uri.object + _DIGEST_SUFFIX
        if create:
            if self._exists(uri.object) or self._exists(self._digest_label):
                self._conn.close()
                raise RootKeyError(f"The token already holds an object {uri.object!r}.")
            self._conn.generate_key(uri.object)
            self._conn.generate_hmac_key(self._digest_label)
        elif not (self._exists(uri.object) and self._exists(self._digest_label)):
            self._conn.close()
            raise RootKeyError(f"The token holds no root key {uri.object!r}.")
        self._aead = TokenAead(lambda: self._conn, uri.object)  # type: ignore[assignment]
        self._digest_key = b""  # never used: digests are made by the token

    def __repr__(self) -> str:
        return f"<Pkcs11RootKey {self.uri.token}/{self.uri.object}>"

    def _exists(self, label: str) -> bool:
        try:
            self._conn.key(label)
        except KeyError:  # pragma: no cover - key() raises its own error
            return False
        except Exception:
            return False
        return True

    def digest(self, purpose: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` by the token's digest key (see :meth:`RootKey.digest`)."""
        return self._conn.hmac(self._digest_label, purpose + b"\x00" + data)

    def close(self) -> None:
        """Log out of the token."""
        self._conn.close()
