"""Answers XKS Proxy API requests: path, signature, JSON, operation, error name.

Paths are ``<uri-path>/keys/<externalKeyId>/{metadata,encrypt,decrypt}`` and
``<uri-path>/health``, where ``<uri-path>`` is ``[/prefix]/kms/xks/v1`` as
configured. Every request is a POST of a JSON object, signed with SigV4 for
the service ``kms-xks-proxy`` in the data dir's Region by a proxy credential
(``kms xks credential create``), at most 5 minutes from now.

Errors are the specification's: ``{"errorName", "errorMessage"}`` with its
HTTP statuses (:func:`xks_error`). A request refused before its operation
(bad path, method or signature) is recorded as a refusal, like the KMS
endpoint's; every operation is audited by :func:`kmscore.service.xks_proxy.run`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from kmscore.errors import (
    AccessDeniedException,
    DependencyTimeoutException,
    DisabledException,
    IncompleteSignatureException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    InvalidSignatureException,
    KMSError,
    KMSInvalidStateException,
    MissingAuthenticationTokenException,
    NotFoundException,
    ThrottlingException,
    UnrecognizedClientException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.principal import Principal
from kmscore.service import KeyService, new_request_id
from kmscore.service.refusals import RefusalRecorder, recorder_for
from kmscore.service.xks_proxy import new_call, run

from ..awsjson.protocol import Answer, HttpRequest
from ..awsjson.sigv4 import SigV4Verifier

__all__ = ["DEFAULT_URI_PATH", "SIGNING_SERVICE", "XksHandler", "xks_error"]

logger = logging.getLogger("kmscore.frontends.xks")

DEFAULT_URI_PATH: Final = "/kms/xks/v1"
SIGNING_SERVICE: Final = "kms-xks-proxy"
#: The spec: requests more than 5 minutes off SHOULD fail authentication.
MAX_SKEW_SECONDS: Final = 300.0
_URI_PATH: Final = re.compile(r"^(/[a-zA-Z0-9/_-]+)?/kms/xks/v\d{1,2}$")
_KEY_ID: Final = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")
_OPERATIONS: Final = {
    "metadata": "XksGetKeyMetadata",
    "encrypt": "XksEncrypt",
    "decrypt": "XksDecrypt",
}
_AUTH_ERRORS: Final = (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)


class _Named(ValidationException):
    """A refusal the spec names without a KMS counterpart (InvalidUriPathException, 405).

    A ValidationException for the refusal record; its own name and status on the wire.
    """

    def __init__(self, name: str, status: int, message: str) -> None:
        super().__init__(message)
        self.name, self.status = name, status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.status, self.message))


#: KMS errors as the specification names them, most specific first.
_SPEC_ERRORS: Final[tuple[tuple[type[KMSError] | tuple[type[KMSError], ...], int, str], ...]] = (
    (_AUTH_ERRORS, 401, "AuthenticationFailedException"),
    (AccessDeniedException, 403, "AccessDeniedException"),
    (NotFoundException, 404, "KeyNotFoundException"),
    ((KMSInvalidStateException, DisabledException), 400, "InvalidStateException"),
    (InvalidCiphertextException, 400, "InvalidCiphertextException"),
    (InvalidKeyUsageException, 400, "InvalidKeyUsageException"),
    (ValidationException, 400, "ValidationException"),
    (ThrottlingException, 429, "ThrottlingException"),
    (UnsupportedOperationException, 501, "UnsupportedOperationException"),
    (DependencyTimeoutException, 503, "DependencyTimeoutException"),
)


def xks_error(error: KMSError) -> tuple[int, str]:
    """The specification's HTTP status and ``errorName`` for an error."""
    if isinstance(error, _Named):
        return error.status, error.name
    for types, status, name in _SPEC_ERRORS:
        if isinstance(error, types):
            return status, name
    return 500, "InternalException"


def _printable(text: str) -> str:
    """The spec's errorMessage: under 512 printable ASCII characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:511]


def _answer(status: int, payload: dict[str, Any], request_id: str) -> Answer:
    return Answer(status, json.dumps(payload, separators=(",", ":")).encode(), request_id)


class XksHandler:
    """Serves the XKS Proxy API for one key service (a connection's request handler)."""

    def __init__(
        self,
        service: KeyService,
        *,
        uri_path: str | Sequence[str] = DEFAULT_URI_PATH,
        secure_transport: bool = True,
        executor: ThreadPoolExecutor | None = None,
        refusals: RefusalRecorder | None = None,
        max_in_flight: int = 256,
        region: str | None = None,
    ) -> None:
        """Serve ``service`` under ``uri_path``.

        ``max_in_flight`` requests run at once; one more is answered
        ThrottlingException (429), as the spec has a proxy that cannot keep up.
        ``region`` is the AWS Region whose KMS signs the requests (the
        signature's scope); the data dir's Region by default.

        Raises:
            ValueError: ``uri_path`` is not ``[/prefix]/kms/xks/v<N>``.
        """
        paths = (uri_path,) if isinstance(uri_path, str) else tuple(uri_path)
        for path in paths:
            if not _URI_PATH.fullmatch(path):
                raise ValueError(f"{path!r} is not an XKS URI path ([/prefix]/kms/xks/v1)")
        if not paths:
            raise ValueError("an XKS proxy serves at least one URI path")
        self.service = service
        #: The URI paths served (a path prefix per tenant, as the spec allows).
        self.uri_paths = paths
        self.uri_path = paths[0]
        self.secure_transport = secure_transport
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(4, thread_name_prefix="kms-xks")
        self.verifier: SigV4Verifier[Principal] = SigV4Verifier(
            region or service.region,
            lambda key_id: service.principals.by_access_key(key_id),
            service=SIGNING_SERVICE,
            max_skew=MAX_SKEW_SECONDS,
        )
        self.refusals = refusals or recorder_for(service)
        self.max_in_flight = max_in_flight
        self._in_flight = 0

    def close(self) -> None:
        """Stop the thread pool (if this handler made it)."""
        if self._own_executor:
            self._executor.shutdown(wait=True)

    def _route(self, request: HttpRequest) -> tuple[str, str | None]:
        """The operation and external key id a path names.

        Raises:
            _Named: InvalidUriPathException (404) for any other path.
        """
        path = request.raw_path.partition("?")[0]
        base, sep, rest = path.rpartition("/kms/xks/v")
        version, _, rest = rest.partition("/")
        if sep and f"{base}/kms/xks/v{version}" in self.uri_paths:
            if rest == "health":
                return "XksGetHealthStatus", None
            parts = rest.split("/")
            if (
                len(parts) == 3
                and parts[0] == "keys"
                and _KEY_ID.fullmatch(parts[1])
                and parts[2] in _OPERATIONS
            ):
                return _OPERATIONS[parts[2]], parts[1]
        raise _Named("InvalidUriPathException", 404, "The URI path is not an XKS API path.")

    def __call__(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        """Answer one request (never raises)."""
        request_id = new_request_id()
        try:
            operation, key_id = self._route(request)
            if request.method != "POST":
                raise _Named("ValidationException", 405, "XKS API requests are POSTs.")
            if request.too_large:
                raise _Named("ValidationException", 400, "The request body is too large.")
            principal, access_key_id = self.verifier.verify(
                request.method, request.raw_path, request.headers, request.body
            )
        except KMSError as exc:
            self._refuse(request, exc)
            return self._error(exc, request_id)
        except Exception:
            logger.exception("internal error before an XKS operation (request %s)", request_id)
            return self._internal(request_id)
        caller = self.service.principals.caller(
            principal,
            source=request.remote or "unknown",
            user_agent=request.headers.get("User-Agent", "")[:1024],
            access_key_id=access_key_id,
            secure_transport=self.secure_transport,
        )
        if self._in_flight >= self.max_in_flight:
            error = ThrottlingException("The proxy is at its limit of requests in flight.")
            self._refuse(request, error)
            return self._error(error, request_id)
        return self._in_pool(request, operation, key_id, caller, request_id)

    async def _in_pool(
        self,
        request: HttpRequest,
        operation: str,
        key_id: str | None,
        caller: Any,
        request_id: str,
    ) -> Answer:
        self._in_flight += 1  # on the loop's thread only
        try:
            loop = asyncio.get_running_loop()
            work = functools.partial(self._run, request, operation, key_id, caller, request_id)
            return await loop.run_in_executor(self._executor, work)
        finally:
            self._in_flight -= 1

    def _run(
        self,
        request: HttpRequest,
        operation: str,
        key_id: str | None,
        caller: Any,
        request_id: str,
    ) -> Answer:
        call = new_call(self.service, operation, caller, request_id)
        try:
            try:
                data = json.loads(request.body) if request.body else None
            except (ValueError, UnicodeDecodeError):
                data = None
            if not isinstance(data, dict):
                error = ValidationException("The request body must be a JSON object.")
                self.service.auditor.record(call, {"KeyId": key_id} if key_id else {}, None, error)
                raise error
            return _answer(200, run(call, key_id, data), request_id)
        except KMSError as exc:
            return self._error(exc, request_id)
        except Exception:
            logger.exception("internal error in %s (request %s)", operation, request_id)
            return self._internal(request_id)

    def _refuse(self, request: HttpRequest, error: KMSError) -> None:
        self.refusals.refuse(self.refusals_caller(request), "XksRequest", error)

    def refusals_caller(self, request: HttpRequest) -> Any:
        """CloudTrail's ``Unknown`` identity for a request refused before its operation."""
        from kmscore.model.caller import Caller

        return Caller(
            arn="",
            account="",
            principal_id="",
            kind="Unknown",
            source=request.remote or "unknown",
            user_agent=request.headers.get("User-Agent", "")[:1024],
            secure_transport=self.secure_transport,
        )

    @staticmethod
    def _internal(request_id: str) -> Answer:
        return _answer(
            500,
            {"errorName": "InternalException", "errorMessage": "The proxy failed; see its log."},
            request_id,
        )

    @staticmethod
    def _error(error: KMSError, request_id: str) -> Answer:
        status, name = xks_error(error)
        return _answer(
            status, {"errorName": name, "errorMessage": _printable(error.message)}, request_id
        )
