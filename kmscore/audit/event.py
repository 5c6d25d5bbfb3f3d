"""Audit events shaped like CloudTrail KMS events, and the scrubber that guards them.

:func:`build_event` makes one event per KMS call, allowed or denied. The trail
(:class:`kmscore.audit.AuditTrail`) passes every event it is given through
:func:`scrub_event` again before writing it, so nothing reaches the disk without
being scrubbed, whoever built the dictionary and whatever was added to it later.

The rule of what a record may hold, and the scrubber that applies it, are in
:mod:`kmscore.audit.scrub`; the caches and encoders of the fast path, in
:mod:`kmscore.audit._build`.

Sealed events: scrubbing once, not twice
----------------------------------------
:func:`build_event` returns an :class:`AuditEvent`, a ``dict`` that also
carries the JSON it will be stored as, made by the scrubber when the event was
built. The trail writes that JSON instead of scrubbing and encoding the event
again (the hot path of every KMS call). What is written still always comes out
of the scrubber:

* Changing the event's own members (``event["x"] = ...``, ``update``, ``del``,
  ``pop``, ...) unseals it, and the trail scrubs the whole event again at append.
* Its nested containers (``userIdentity``, ``requestParameters``, ``resources``,
  encryption contexts, ...) are read-only: mutating them raises ``TypeError``.
  Build a new event, or replace the member at the top level. Copies
  (``copy.deepcopy``, ``dict(...)``) are ordinary dictionaries.
* Any other mapping, including an ``AuditEvent`` subclass, is scrubbed at append.

Even a low-level ``dict.__setitem__`` on a sealed event cannot put a secret in
the trail: the stored JSON is what the scrubber produced, so such a change is
merely not recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Final, Self

from kmscore.audit import _build
from kmscore.audit._build import (
    Unusual as _Unusual,
)
from kmscore.audit._build import (
    escape_cached as _escape_cached,
)
from kmscore.audit._build import (
    escaped as _escaped,
)
from kmscore.audit._build import (
    identity_part as _identity_part,
)
from kmscore.audit._build import (
    more_random_hex as _more_random_hex,
)
from kmscore.audit._build import (
    now as _now,
)
from kmscore.audit._build import (
    random_hex as _random_hex,
)
from kmscore.audit._build import (
    resource as _resource,
)
from kmscore.audit._build import (
    resources_part as _resources_part,
)
from kmscore.audit._build import (
    section as _section,
)
from kmscore.audit._build import (
    tick as _tick,
)
from kmscore.audit._build import (
    uuid4 as _uuid4,
)
from kmscore.audit.identity import Identity
from kmscore.audit.scrub import (
    RESERVED_FIELDS,
    SECRET_FIELDS,
    format_time,
    scrub_event,
    scrub_parameters,
)

__all__ = [
    "EVENT_VERSION",
    "RESERVED_FIELDS",
    "SECRET_FIELDS",
    "AuditEvent",
    "Identity",
    "build_event",
    "scrub_event",
    "scrub_parameters",
]

EVENT_VERSION: Final = "1.08"
EVENT_SOURCE: Final = "kms.amazonaws.com"


class AuditEvent(dict[str, Any]):
    """An event from :func:`build_event`: a dict sealed with its stored JSON.

    See "Sealed events" in the module docstring: changing a top-level member
    unseals the event (the trail then scrubs it again); nested containers are
    read-only. Constructed directly, an ``AuditEvent`` is not sealed.
    """

    __slots__ = ("_stored", "_time")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Make an unsealed event, like ``dict(*args, **kwargs)``."""
        super().__init__(*args, **kwargs)
        self._stored: bytes | None = None
        self._time: str | None = None

    def sealed_record(self) -> tuple[bytes, str | None] | None:
        """The stored form of the members, and the event time, while sealed.

        Returns:
            ``(rest, eventTime)`` where ``rest`` is the event's stored JSON
            without its opening brace, preceded by a comma (the trail puts its
            chain members in front); None once the event was changed.
        """
        stored = self._stored
        return None if stored is None else (stored, self._time)

    def __setitem__(self, key: str, value: Any) -> None:
        self._stored = None
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._stored = None
        dict.__delitem__(self, key)

    def __ior__(self, other: Any) -> Self:  # type: ignore[misc,override]
        self._stored = None
        dict.update(self, other)
        return self

    def clear(self) -> None:
        """Remove every member (unseals)."""
        self._stored = None
        dict.clear(self)

    def pop(self, *args: Any) -> Any:
        """Like :meth:`dict.pop` (unseals)."""
        self._stored = None
        return dict.pop(self, *args)

    def popitem(self) -> tuple[str, Any]:
        """Like :meth:`dict.popitem` (unseals)."""
        self._stored = None
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Like :meth:`dict.setdefault` (unseals)."""
        self._stored = None
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Like :meth:`dict.update` (unseals)."""
        self._stored = None
        dict.update(self, *args, **kwargs)


_new_event: Final = dict.__new__
_time: Final = time.time


_EVENT_HEAD: Final = (
    f',"eventVersion":{_json_string(EVENT_VERSION)},"userIdentity":'  # then the identity
)
_EVENT_SOURCE_JSON: Final = _json_string(EVENT_SOURCE)
_EVENT_ID_SHAPE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _members(
    user_identity: Any,
    event_time: str,
    event_source: str,
    event_name: str,
    region: str,
    source_ip: str,
    user_agent: str,
    request: Any,
    response: Any,
    optional: Mapping[str, Any] | None,
    request_id: str,
    event_id: str,
    read_only: bool,
    resources: Any,
    management_event: bool,
    account_id: str,
) -> dict[str, Any]:
    """An event's members in CloudTrail's order: the one place they are listed.

    ``optional`` holds ``errorCode``, ``errorMessage`` and
    ``additionalEventData`` when the call has them; they go after
    ``responseElements``, as CloudTrail writes them.
    """
    members = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity,
        "eventTime": event_time,
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request,
        "responseElements": response,
    }
    if optional:
        members.update(optional)
    members["requestID"] = request_id
    members["eventID"] = event_id
    members["readOnly"] = read_only
    members["resources"] = resources
    members["eventType"] = "AwsApiCall"
    members["managementEvent"] = management_event
    members["recipientAccountId"] = account_id
    members["eventCategory"] = "Management"
    return members


def build_event(
    event_name: str,
    *,
    region: str,
    account_id: str,
    identity: Identity | Mapping[str, str | None],
    source_ip: str,
    user_agent: str,
    request_parameters: Mapping[str, Any] | None,
    response_elements: Mapping[str, Any] | None = None,
    resources: Sequence[str] = (),
    read_only: bool,
    error_code: str | None = None,
    error_message: str | None = None,
    additional_event_data: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    event_time: datetime | None = None,
    management_event: bool = True,
    event_source: str = EVENT_SOURCE,
    event_id: str | None = None,
) -> AuditEvent:
    """Build one scrubbed CloudTrail-shaped event for a KMS call.

    Args:
        event_name: The AWS operation name, e.g. ``"Encrypt"``.
        region: The service's region (``awsRegion``).
        account_id: The service's account (``recipientAccountId``).
        identity: The caller; an :class:`Identity` or a mapping already in
            CloudTrail's ``userIdentity`` shape (a None value is left out).
        source_ip: ``sourceIPAddress``: an IP address, or ``unix:<pid>`` for a
            Unix-socket peer.
        user_agent: The client's user agent string.
        request_parameters: The request's members as named in the AWS API;
            scrubbed here.
        response_elements: The response's members, or None (CloudTrail writes
            null for most data-plane calls and for errors); scrubbed here.
        resources: Full key ARNs the call touched.
        read_only: Whether the operation only reads (``readOnly``).
        error_code: The AWS error code when the call failed or was denied.
        error_message: The error's message (never holds secrets).
        additional_event_data: Extra facts, e.g. ``{"keyMaterialId": ...}``.
        request_id: The request id given to the caller; a new UUID if None.
        event_time: When the call happened; now if None.
        management_event: CloudTrail's ``managementEvent`` flag.
        event_source: CloudTrail's ``eventSource``: ``kms.amazonaws.com``, or
            ``iam.amazonaws.com`` for user administration.
        event_id: CloudTrail's ``eventID``; a new UUID if None (a journaled
            call's names its journal entry, see :mod:`kmscore.audit.journal`).

    Returns:
        A JSON-ready dictionary with the CloudTrail KMS event fields, sealed
        with its stored JSON (see :class:`AuditEvent`).

    Raises:
        ValueError: If ``event_name`` is empty or an error message is given
            without an error code.
    """
    if not event_name:
        raise ValueError("event_name must be a non-empty AWS operation name")
    if error_message is not None and error_code is None:
        raise ValueError("error_message needs an error_code")
    try:
        digits = _random_hex.pop()
    except IndexError:
        digits = _more_random_hex()
    if event_id is None:
        event_id = _uuid4(digits)
    elif type(event_id) is not str or not _EVENT_ID_SHAPE.fullmatch(event_id):
        raise ValueError("event_id must be a UUID string")
    if request_id is None:
        request_id = _uuid4(digits[32:])
    # The fast path: the common argument types, the event and its JSON at once.
    # Anything else raises _Unusual and takes the general path below.
    try:
        if (
            type(event_name) is not str
            or type(region) is not str
            or type(account_id) is not str
            or type(source_ip) is not str
            or type(user_agent) is not str
            or type(request_id) is not str
            or type(event_source) is not str
        ):
            raise _Unusual
        escape = _escaped.get
        source_json = (
            _EVENT_SOURCE_JSON if event_source == EVENT_SOURCE else _escape_cached(event_source)
        )
        user_identity, identity_json = _identity_part(identity)
        if event_time:
            when = format_time(event_time)
            when_json = _json_string(when)
        else:
            second = int(_time())
            clock = _build.second_text
            if clock[0] != second:
                clock = _tick(second)
            when, when_json = clock[1], clock[2]
        request, request_json = _section(request_parameters)
        if response_elements is None:
            response, response_json = None, "null"
        else:
            response, response_json = _section(response_elements)
        touched, touched_json = _resources_part(resources, account_id)
        read_only = read_only is True or bool(read_only)
        management_event = management_event is True or bool(management_event)
        text = (
            f"{_EVENT_HEAD}{identity_json},"
            f'"eventTime":{when_json},'
            f'"eventSource":{source_json},'
            f'"eventName":{escape(event_name) or _escape_cached(event_name)},'
            f'"awsRegion":{escape(region) or _escape_cached(region)},'
            f'"sourceIPAddress":{escape(source_ip) or _escape_cached(source_ip)},'
            f'"userAgent":{escape(user_agent) or _escape_cached(user_agent)},'
            f'"requestParameters":{request_json},'
            f'"responseElements":{response_json}'
        )
        optional: dict[str, Any] | None = None
        if error_code is not None or additional_event_data is not None:
            optional = {}
            if error_code is not None:
                if type(error_code) is not str:
                    raise _Unusual
                optional["errorCode"] = error_code
                text += f',"errorCode":{_escape_cached(error_code)}'
                if error_message is not None:
                    if type(error_message) is not str:
                        raise _Unusual
                    optional["errorMessage"] = error_message
                    text += f',"errorMessage":{_json_string(error_message)}'
            if additional_event_data is not None:
                extra, extra_json = _section(additional_event_data)
                optional["additionalEventData"] = extra
                text += f',"additionalEventData":{extra_json}'
        members = _members(
            user_identity,
            when,
            event_source,
            event_name,
            region,
            source_ip,
            user_agent,
            request,
            response,
            optional,
            request_id,
            event_id,
            read_only,
            touched,
            management_event,
            account_id,
        )
        text += (
            f',"requestID":{_json_string(request_id)},'
            f'"eventID":"{event_id}",'
            f'"readOnly":{"true" if read_only else "false"},'
            f'"resources":{touched_json},'
            '"eventType":"AwsApiCall",'
            f'"managementEvent":{"true" if management_event else "false"},'
            f'"recipientAccountId":{escape(account_id) or _escape_cached(account_id)},'
            '"eventCategory":"Management"}'
        )
        event = _new_event(AuditEvent)
        dict.update(event, members)
        event._stored = text.encode("ascii")
        event._time = when
        return event
    except _Unusual:
        pass
    # Arguments of unusual types: the general path, scrubbed again at append.
    if isinstance(identity, Identity):
        user_identity = identity.to_event()
    else:
        user_identity = {k: v for k, v in identity.items() if v is not None}
    optional = {}
    if error_code is not None:
        optional["errorCode"] = error_code
        if error_message is not None:
            optional["errorMessage"] = error_message
    if additional_event_data is not None:
        optional["additionalEventData"] = additional_event_data
    general = _members(
        user_identity,
        format_time(event_time) if event_time else _now()[0],
        event_source,
        event_name,
        region,
        source_ip,
        user_agent,
        request_parameters,
        response_elements,
        optional,
        request_id,
        event_id,
        bool(read_only),
        [_resource(arn, account_id) for arn in resources],
        bool(management_event),
        account_id,
    )
    return AuditEvent(scrub_event(general))
