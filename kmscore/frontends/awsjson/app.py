"""The request handler: one HTTP request in, one KMS operation, one answer out.

The checks run in the order AWS runs them, so a request that is wrong in
several ways gets the error AWS would give first:

1. ``POST`` with a JSON content type, else 404 ``UnknownOperationException``;
2. the body parses as a JSON object, else ``SerializationException``;
3. ``X-Amz-Target`` names a KMS operation, else ``UnknownOperationException``;
4. the SigV4 signature (:mod:`.sigv4`);
5. the operation is one this service has, else ``UnsupportedOperationException``;
6. member types (:mod:`.wire`), then the operation itself: validation,
   authorization and auditing in :func:`kmscore.operations.dispatch`.

Every answer carries ``x-amzn-RequestId``; for a call that reached the
operation it is the request id of its audit record.

Read-only operations (the data-key hot path among them) are answered inline
on the event loop, from the parser's callback: they take a few microseconds
and never wait on the store's write lock. Operations that change the store run
in a small thread pool, so a commit's fsync never stalls the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from kmscore.errors import (
    KMSError,
    KMSInternalException,
    SerializationException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.principal import Principal
from kmscore.operations import OPERATIONS, dispatch
from kmscore.operations.registry import Operation
from kmscore.service import Caller, KeyService, new_request_id
from kmscore.service.peering import PEER_PATH, peering_of
from kmscore.service.refusals import RefusalRecorder, recorder_for
from kmscore.service.regions import Deployment
from kmscore.wire.operations import AWS_OPERATIONS

from ..ops.metrics import RequestMetrics, requests_for
from .protocol import MAX_BODY_BYTES, Answer, HttpRequest
from .sigv4 import SigV4Verifier
from .wire import (
    CONTENT_TYPE,
    decode_request,
    encode_error,
    encode_response,
    operation_name,
    parse_body,
    wire_error,
)

__all__ = ["MAX_BODY_BYTES", "KMSHandler"]

logger = logging.getLogger("kmscore.frontends.awsjson")

_JSON_TYPES: Final = frozenset({CONTENT_TYPE, "application/json"})
_USER_AGENT_MAX: Final = 1024
_CALLER_CACHE_MAX: Final = 4096
# An access key id as the Authorization header's Credential names it; only
# one of this shape goes into a refusal's record.
_ACCESS_KEY_ID: Final = re.compile(r"Credential=([A-Z0-9]{16,128})/")
_TOO_LARGE: Final = "RequestEntityTooLargeException"
_SUCCESS: Final = "Success"
_INTERNAL: Final = KMSInternalException.code

#: Answers the requests that are not KMS calls (``GET /metrics``, ``/health``,
#: ``/ready``), or returns None for a request that is not one of them.
OpsHandler = Callable[[HttpRequest], "Answer | Awaitable[Answer] | None"]


class KMSHandler:
    """Serves the AWS KMS JSON protocol for one key service.

    Call an instance with a request (it is the :data:`~.protocol.RequestHandler`
    of the endpoint's connections): it answers at once, or with an awaitable
    for an operation that changes the store.
    """

    def __init__(
        self,
        service: KeyService,
        *,
        secure_transport: bool = False,
        executor: ThreadPoolExecutor | None = None,
        verifier: SigV4Verifier[Principal] | None = None,
        refusals: RefusalRecorder | None = None,
        ops: OpsHandler | None = None,
        metrics: RequestMetrics | None = None,
        deployment: Deployment | None = None,
    ) -> None:
        """Serve ``service``.

        Args:
            service: The key service the operations run on.
            secure_transport: Whether requests arrive over TLS
                (``aws:SecureTransport`` in policy conditions).
            executor: Runs the operations that change the store; a pool of
                four threads by default (closed by :meth:`close`).
            verifier: Checks signatures; one for the service's Region and
                its principals' access keys by default.
            refusals: Records the requests answered before reaching an
                operation; the service's shared recorder by default.
            ops: Answers ``GET`` requests for the operator (``/metrics``,
                ``/health``, ``/ready``); without it they are not KMS
                requests (404).
            metrics: Counts every answered request; this process's
                ``http`` counter by default.
            deployment: Serve every Region and account of this deployment
                (``service`` is its home): the credential scope picks the
                Region, the access key the account
                (:mod:`kmscore.service.regions`).
        """
        self.service = service
        self.deployment = deployment
        self.secure_transport = secure_transport
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(4, thread_name_prefix="kms-http")
        if verifier is None and deployment is not None:
            verifier = SigV4Verifier(
                service.region, deployment.by_access_key, regions=deployment.scope_accepts
            )
        self.verifier: SigV4Verifier[Principal] = verifier or SigV4Verifier(
            service.region, lambda key_id: service.principals.by_access_key(key_id)
        )
        self.refusals = refusals or recorder_for(service)
        self._callers: dict[tuple[str, str, str, str, str], Caller] = {}
        self.ops = ops
        self.metrics = metrics or requests_for("http")

    def close(self) -> None:
        """Stop the thread pool (if this handler made it) once its calls finish."""
        if self._own_executor:
            self._executor.shutdown(wait=True)

    def _caller(self, principal: Principal, access_key_id: str, request: HttpRequest) -> Caller:
        source = request.remote or "unknown"
        agent = request.headers.get("User-Agent", "")[:_USER_AGENT_MAX]
        key = (principal.arn, principal.principal_id, access_key_id, source, agent)
        caller = self._callers.get(key)
        if caller is None:
            principals = self.service.principals
            if self.deployment is not None:
                account = principal.arn.split(":", 5)[4]
                principals = self.deployment.principals_of(account) or principals
            caller = principals.caller(
                principal,
                source=source,
                user_agent=agent,
                access_key_id=access_key_id,
                secure_transport=self.secure_transport,
            )
            if len(self._callers) >= _CALLER_CACHE_MAX:
                self._callers.clear()
            self._callers[key] = caller
        return caller

    def refused_caller(self, request: HttpRequest) -> Caller:
        """Who sent a request that was refused before its signature was trusted.

        CloudTrail's ``Unknown`` identity, with the access key id the request
        claims when it has one (an id, never a secret or a signature).
        """
        found = _ACCESS_KEY_ID.search(request.headers.get("Authorization", ""))
        return self.refused_caller_from(
            request.remote or "unknown",
            request.headers.get("User-Agent", "")[:_USER_AGENT_MAX],
            found.group(1) if found else None,
        )

    def refused_caller_from(
        self, source: str, user_agent: str = "", access_key_id: str | None = None
    ) -> Caller:
        """The ``Unknown`` caller from ``source`` (see :meth:`refused_caller`)."""
        return Caller(
            arn="",
            account="",
            principal_id="",
            kind="Unknown",
            access_key_id=access_key_id,
            source=source,
            user_agent=user_agent,
            secure_transport=self.secure_transport,
        )

    def _refused(self, request: HttpRequest, caller: Caller | None, error: KMSError) -> None:
        self.refusals.refuse(caller or self.refused_caller(request), self._target(request), error)

    def _error(self, error: KMSError, request_id: str) -> Answer:
        status, code = wire_error(error)
        return Answer(status, encode_error(code, error.message), request_id)

    def _internal_error(self, request: HttpRequest, request_id: str) -> Answer:
        # Only the target and request id: never other headers or bodies.
        target = request.headers.get("X-Amz-Target", "?")[:80]
        logger.exception(
            "internal error in %r (request %s)",
            target,
            request_id,
            extra={"request_id": request_id},
        )
        return self._error(KMSInternalException(), request_id)

    def _target(self, request: HttpRequest) -> str:
        """The operation a request names, or ``Unknown`` (bounded: metric labels)."""
        name = request.headers.get("X-Amz-Target", "").removeprefix("TrentService.")
        return name if name in OPERATIONS or name in AWS_OPERATIONS else "Unknown"

    def __call__(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        """Answer one request (never raises; unexpected failures answer 500)."""
        if request.method == "GET" and self.ops is not None:
            routed = self.ops(request)
            if routed is not None:
                return routed
        started = time.perf_counter()
        request_id = new_request_id()
        if request.too_large:
            message = f"The request body is larger than {MAX_BODY_BYTES} bytes."
            self._refused(request, None, ValidationException(message))
            self.metrics.observe(self._target(request), _TOO_LARGE, 0.0)
            return Answer(413, encode_error(_TOO_LARGE, message), request_id, close=True)
        if self.deployment is not None and request.raw_path.partition("?")[0] == PEER_PATH:
            return self._peer(request, request_id)
        try:
            name, op, req, caller, service = self._prepare(request)
        except KMSError as exc:
            self.metrics.observe(self._target(request), exc.code, time.perf_counter() - started)
            return self._error(exc, request_id)
        except Exception:
            self.metrics.observe(self._target(request), _INTERNAL, time.perf_counter() - started)
            return self._internal_error(request, request_id)
        if op.read_only:
            answer, outcome = self._run(request, name, req, caller, request_id, service)
            self.metrics.observe(name, outcome, time.perf_counter() - started)
            return answer
        return self._run_in_pool(request, name, req, caller, request_id, service, started)

    async def _peer(self, request: HttpRequest, request_id: str) -> Answer:
        """A message from a peer deployment (signed; see :mod:`kmscore.service.peering`)."""
        assert self.deployment is not None
        peering = peering_of(self.deployment)
        loop = asyncio.get_running_loop()
        if request.method != "POST":
            return Answer(404, b"{}", request_id)
        status, body = await loop.run_in_executor(self._executor, peering.handle, request.body)
        return Answer(status, body, request_id)

    def _run(
        self,
        request: HttpRequest,
        name: str,
        req: dict[str, Any],
        caller: Caller,
        request_id: str,
        service: KeyService | None = None,
    ) -> tuple[Answer, str]:
        try:
            response = dispatch(service or self.service, name, req, caller, request_id=request_id)
            return Answer(200, encode_response(response), request_id), _SUCCESS
        except KMSError as exc:
            return self._error(exc, request_id), exc.code
        except Exception:
            return self._internal_error(request, request_id), _INTERNAL

    async def _run_in_pool(
        self,
        request: HttpRequest,
        name: str,
        req: dict[str, Any],
        caller: Caller,
        request_id: str,
        service: KeyService | None,
        started: float,
    ) -> Answer:
        loop = asyncio.get_running_loop()
        run = functools.partial(self._run, request, name, req, caller, request_id, service)
        answer, outcome = await loop.run_in_executor(self._executor, run)
        # Back on the loop's thread, the only one that counts.
        self.metrics.observe(name, outcome, time.perf_counter() - started)
        return answer

    def _prepare(
        self, request: HttpRequest
    ) -> tuple[str, Operation, dict[str, Any], Caller, KeyService]:
        """The checks before the operation, each refusal recorded (module docstring)."""
        headers = request.headers
        body = request.body
        caller: Caller | None = None
        try:
            if request.method != "POST" or (
                body
                and headers.get("Content-Type", "").partition(";")[0].strip() not in _JSON_TYPES
            ):
                raise _NotFound()
            data = parse_body(body) if body else None
            name = operation_name(headers.get("X-Amz-Target"))
            if name not in OPERATIONS and name not in AWS_OPERATIONS:
                raise UnknownOperationException()
            principal, access_key_id, region = self.verifier.verify_scoped(
                request.method, request.raw_path, headers, body
            )
            caller = self._caller(principal, access_key_id, request)
            if data is None:
                raise SerializationException("The request has no body; send a JSON object.")
            op = OPERATIONS.get(name)
            if op is None:
                raise UnsupportedOperationException(f"{name} is not supported by this service.")
            req = decode_request(op.shape, data)
            service = self.service
            if self.deployment is not None:
                service = self.deployment.route(caller.account, region, req)
            return name, op, req, caller, service
        except KMSError as exc:
            self._refused(request, caller, exc)
            raise


class _NotFound(UnknownOperationException):
    """Not a KMS request at all (wrong method or content type): 404, as AWS."""

    http_status = 404
