"""SigV4 verification of AWS KMS requests (``AWS4-HMAC-SHA256`` in the Authorization header).

The server recomputes the client's signature from the request as received:

1. the canonical request: method, canonical URI (the path with dot segments and
   repeated slashes removed, percent-encoded once more), canonical query string
   (pairs sorted, RFC 3986 encoding), the canonical headers named in
   ``SignedHeaders`` (lower-case names, values trimmed, inner runs of spaces
   folded, repeated headers joined by commas), the ``SignedHeaders`` list, and
   the hex SHA-256 of the body;
2. the string to sign: the algorithm, the request time (``X-Amz-Date``, else
   the ``Date`` header), the credential scope ``<date>/<region>/kms/aws4_request``
   and the hex SHA-256 of the canonical request;
3. HMAC-SHA256 under the signing key derived from the secret access key through
   the date, region, service and terminator. Derived keys are cached per
   access key, day and region (and secret, so a changed secret never reuses one).

The checks run in the order AWS runs them, so each malformed request gets the
error AWS would give: a missing or non-AWS4 header is
MissingAuthenticationTokenException; missing parts, a badly formed date, an
unknown algorithm or a credential without five parts is
IncompleteSignatureException; a request time more than 15 minutes away, an
unsigned ``host``, a scope of another region or service, or a signature that
does not match is InvalidSignatureException; an unknown access key is
UnrecognizedClientException. Signatures are compared in constant time.

Two checks are stricter than AWS documents, on purpose: ``x-amz-target`` must
be signed when present (it names the operation, so an unsigned one could turn a
signed EnableKey into DisableKey with the same body), and an
``x-amz-content-sha256`` header must be the hash of the body actually received
(``UNSIGNED-PAYLOAD`` is refused), so the signature always covers the body.

Nothing here logs: secrets, signatures and bodies never leave this module.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_tz
from typing import Final, Generic, TypeVar
from urllib.parse import quote, unquote

from multidict import MultiMapping

from kmscore.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

__all__ = [
    "ALGORITHM",
    "MAX_SKEW_SECONDS",
    "Credential",
    "SigV4Verifier",
    "canonical_query",
    "canonical_uri",
    "parse_authorization",
]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
TERMINATOR: Final = "aws4_request"
MAX_SKEW_SECONDS: Final = 15 * 60
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_HEX: Final = frozenset("0123456789abcdef")
_KEY_CACHE_MAX: Final = 4096
# The usual header, as SDKs write it; anything else takes the slow path, which
# finds what is wrong with it.
_WELL_FORMED: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^\s,=]+), ?SignedHeaders=([a-z0-9;_.-]+), ?"
    r"Signature=([0-9a-f]{64})"
)

P = TypeVar("P")

_BAD_SIGNATURE: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class Credential:
    """The parts of an Authorization header, as sent (nothing checked yet but shape).

    Attributes:
        algorithm: The scheme, ``AWS4-HMAC-SHA256`` when valid.
        credential: The ``Credential`` value, ``<key>/<date>/<region>/<service>/<term>``.
        signed_headers: The ``SignedHeaders`` value, e.g. ``content-type;host;x-amz-date``.
        signature: The ``Signature`` value (hex).
    """

    algorithm: str
    credential: str
    signed_headers: str
    signature: str


def parse_authorization(header: str | None, has_date: bool) -> Credential:
    """Split an Authorization header into its parts.

    Args:
        header: The Authorization header value, or None when absent.
        has_date: Whether the request has an ``X-Amz-Date`` or ``Date`` header.

    Returns:
        The parts.

    Raises:
        MissingAuthenticationTokenException: no header, or not an AWS4 scheme.
        IncompleteSignatureException: a part without ``=``, or a missing
            Credential, Signature, SignedHeaders or date header.
    """
    if header is None or not header.strip().startswith("AWS4-"):
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    text = header.strip()
    algorithm, _, rest = text.partition(" ")
    params: dict[str, str] = {}
    for part in rest.replace(",", " ").split():
        name, eq, value = part.partition("=")
        if not eq:
            raise IncompleteSignatureException(
                f"'{part}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{text}'."
            )
        params.setdefault(name, value)
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if not has_date:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise IncompleteSignatureException(" ".join(problems) + f" Authorization={text}")
    return Credential(algorithm, params["Credential"], params["SignedHeaders"], params["Signature"])


def _uri_encode(text: str) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX of its UTF-8.
    return quote(text, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a request path as received (still percent-encoded).

    Dot segments and repeated slashes are removed, then the path is encoded
    once more, as AWS does for every service but S3.
    """
    if raw_path == "/" or not raw_path:
        return "/"
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and segments:
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """The canonical query string: pairs decoded, re-encoded per RFC 3986, sorted."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_uri_encode(unquote(name)), _uri_encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _basic_time(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def _parse_amz_date(value: str) -> float:
    """Epoch seconds of an ISO 8601 basic-format time (``20240102T030405Z``).

    Raises:
        IncompleteSignatureException: not in that format.
    """
    if (
        len(value) != 16
        or value[8] != "T"
        or value[15] != "Z"
        or not value[:8].isdigit()
        or not value[9:15].isdigit()
        or not value.isascii()
    ):
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    fields = (
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[9:11]),
        int(value[11:13]),
        int(value[13:15]),
    )
    if not (
        1 <= fields[1] <= 12
        and 1 <= fields[2] <= 31
        and fields[3] <= 23
        and fields[4] <= 59
        and fields[5] <= 60
    ):
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    return float(calendar.timegm((*fields, 0, 0, 0)))


def _request_time(amz_date: str | None, http_date: str | None) -> tuple[str, float]:
    """The request time as signed (basic format) and as epoch seconds.

    Raises:
        IncompleteSignatureException: the date is malformed.
    """
    if amz_date is not None:
        return amz_date, _parse_amz_date(amz_date)
    assert http_date is not None
    parsed = parsedate_tz(http_date)
    if parsed is None:
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{http_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    epoch = float(calendar.timegm(parsed[:9])) - (parsed[9] or 0)
    return _basic_time(epoch), epoch


class SigV4Verifier(Generic[P]):
    """Verifies the SigV4 signature of requests to one Region's ``kms`` service.

    ``lookup`` maps an access key id to its owner and secret access key (the
    key service's :meth:`~kmscore.service.principals.Principals.by_access_key`); the
    owner is what :meth:`verify` returns.
    """

    def __init__(
        self,
        region: str,
        lookup: Callable[[str], tuple[P, bytes] | None],
        *,
        service: str = "kms",
        clock: Callable[[], float] = time.time,
        max_skew: float = MAX_SKEW_SECONDS,
        regions: Callable[[str], bool] | None = None,
    ) -> None:
        """Verify requests scoped to ``region`` and ``service``.

        Args:
            region: The only Region a credential scope may name (unless
                ``regions`` accepts others).
            lookup: Access key id -> (owner, secret access key bytes), or None.
            service: The service name of the scope.
            clock: Wall-clock time in epoch seconds (tests move it).
            max_skew: Seconds a request time may differ from the clock.
            regions: Whether a scope may name a Region, for an endpoint
                serving several (:mod:`kmscore.service.regions`).
        """
        self.region = region
        self._regions = regions
        self.service = service
        self._lookup = lookup
        self._clock = clock
        self._max_skew = max_skew
        self._keys: dict[tuple[str, str, bytes], bytes] = {}
        self._last_date: tuple[str, float] = ("", 0.0)

    def _request_time(self, amz_date: str | None, http_date: str | None) -> tuple[str, float]:
        # Most requests of a busy second carry the same X-Amz-Date.
        if amz_date is not None and amz_date == self._last_date[0]:
            return self._last_date
        found = _request_time(amz_date, http_date)
        if amz_date is not None:
            self._last_date = found
        return found

    def signing_key(
        self, access_key_id: str, secret: bytes, date: str, region: str | None = None
    ) -> bytes:
        """The derived signing key for a day (cached per key, day, Region and secret)."""
        region = region or self.region
        cache_key = (access_key_id, date if region == self.region else f"{date}/{region}", secret)
        key = self._keys.get(cache_key)
        if key is None:
            key = hmac.digest(b"AWS4" + secret, date.encode(), "sha256")
            for part in (region, self.service, TERMINATOR):
                key = hmac.digest(key, part.encode(), "sha256")
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def verify(
        self,
        method: str,
        raw_path: str,
        headers: MultiMapping[str],
        body: bytes,
    ) -> tuple[P, str]:
        """Check a request's signature (see :meth:`verify_scoped`).

        Returns:
            The owner of the access key, and the access key id.
        """
        owner, access_key_id, _ = self.verify_scoped(method, raw_path, headers, body)
        return owner, access_key_id

    def verify_scoped(
        self,
        method: str,
        raw_path: str,
        headers: MultiMapping[str],
        body: bytes,
    ) -> tuple[P, str, str]:
        """Check a request's signature, and say which Region its scope names.

        Args:
            method: The HTTP method.
            raw_path: The request target as received: path and query, still
                percent-encoded.
            headers: The request headers (case-insensitive).
            body: The request body.

        Returns:
            The owner of the access key, the access key id and the Region.

        Raises:
            MissingAuthenticationTokenException: no AWS4 Authorization header.
            IncompleteSignatureException: the header or date is malformed.
            InvalidSignatureException: expired or future time, wrong scope,
                unsigned host or target, body hash mismatch, wrong signature.
            UnrecognizedClientException: the access key is not known, or the
                request carries a session token (this service issues none).
        """
        amz_date = headers.get("x-amz-date")
        http_date = headers.get("date") if amz_date is None else None
        header = headers.get("authorization")
        well_formed = _WELL_FORMED.fullmatch(header) if header and (amz_date or http_date) else None
        if well_formed is not None:
            cred = Credential(ALGORITHM, *well_formed.groups())
        else:
            cred = parse_authorization(header, amz_date is not None or bool(http_date))
        stamp, when = self._request_time(amz_date, http_date)
        now = self._clock()
        if when < now - self._max_skew:
            raise InvalidSignatureException(
                f"Signature expired: {stamp} is now earlier than "
                f"{_basic_time(now - self._max_skew)} ({_basic_time(now)} - 15 min.)"
            )
        if when > now + self._max_skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {stamp} is still later than "
                f"{_basic_time(now + self._max_skew)} ({_basic_time(now)} + 15 min.)"
            )
        signed = cred.signed_headers.lower().split(";")
        if "host" not in signed:
            raise InvalidSignatureException(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        if "x-amz-target" not in signed and "x-amz-target" in headers:
            raise InvalidSignatureException(
                "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization."
            )
        if cred.algorithm != ALGORITHM:
            raise IncompleteSignatureException(
                f"Unsupported AWS 'algorithm': '{cred.algorithm}' (only {ALGORITHM} for now). "
            )
        date = stamp[:8]
        access_key_id, _, rest = cred.credential.partition("/")
        region = self.region
        if self._regions is not None:
            named = rest.split("/")
            if len(named) == 4 and named[1] != region and self._regions(named[1]):
                region = named[1]
        scope = f"{date}/{region}/{self.service}/{TERMINATOR}"
        if rest != scope:
            parts = cred.credential.rstrip("/").split("/")
            if len(parts) != 5:
                raise IncompleteSignatureException(
                    "Credential must have exactly 5 slash-delimited elements, "
                    f"e.g. keyid/date/region/service/term, got '{cred.credential}'"
                )
            _, scope_date, region, service, terminator = parts
            self._check_scope(scope_date, region, service, terminator, stamp)
            scope = f"{date}/{region}/{self.service}/{TERMINATOR}"
        if "x-amz-security-token" in headers:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        found = self._lookup(access_key_id)
        if found is None:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        owner, secret = found
        payload_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed != payload_hash:
            raise InvalidSignatureException(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        path, _, query = raw_path.partition("?")
        canonical = "\n".join(
            (
                method.upper(),
                canonical_uri(path),
                canonical_query(query),
                "".join(f"{name}:{_header_value(headers, name)}\n" for name in signed),
                cred.signed_headers,
                payload_hash,
            )
        )
        to_sign = "\n".join(
            (
                ALGORITHM,
                stamp,
                scope,
                hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest(),
            )
        )
        key = self.signing_key(access_key_id, secret, date, region)
        expected = hmac.digest(key, to_sign.encode("utf-8", "surrogateescape"), "sha256").hex()
        given = cred.signature.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise InvalidSignatureException(_BAD_SIGNATURE)
        return owner, access_key_id, region

    def _check_scope(
        self, date: str, region: str, service: str, terminator: str, stamp: str
    ) -> None:
        problems = []
        if region != self.region and not (self._regions is not None and self._regions(region)):
            problems.append(f"Credential should be scoped to a valid region, not '{region}'. ")
        if service != self.service:
            problems.append(f"Credential should be scoped to correct service: '{self.service}'. ")
        if terminator != TERMINATOR:
            problems.append(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                f"not '{terminator}'. "
            )
        if date != stamp[:8]:
            problems.append(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'."
            )
        if problems:
            raise InvalidSignatureException("".join(problems).rstrip())


def _header_value(headers: MultiMapping[str], name: str) -> str:
    # Repeated headers are joined by commas, each trimmed with inner runs of
    # whitespace folded to one space.
    values = headers.getall(name, ())
    if len(values) == 1:
        return " ".join(values[0].split())
    return ",".join(" ".join(v.split()) for v in values)
