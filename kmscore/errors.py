"""The KMS error hierarchy: one class per AWS KMS error code.

Every error the service raises is a :class:`KMSError` subclass whose ``code`` is
the AWS error code, so frontends map errors generically: the socket daemon sends
``{"Code": e.code, "Message": e.message}`` and the HTTP endpoint sends
``{"__type": e.code, "message": e.message}`` with ``e.http_status``.

Classes register themselves by code in one table when they are defined; a second
class with the same code fails at import. Messages never contain key material,
plaintext or ciphertext.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "KMSError",
    "error_class",
    "from_code",
    "AccessDeniedException",
    "AlreadyExistsException",
    "ConflictException",
    "CustomKeyStoreInvalidStateException",
    "CustomKeyStoreNotFoundException",
    "DependencyTimeoutException",
    "DisabledException",
    "DryRunOperationException",
    "ExpiredImportTokenException",
    "IncompleteSignatureException",
    "IncorrectKeyException",
    "IncorrectKeyMaterialException",
    "InvalidAliasNameException",
    "InvalidArnException",
    "InvalidCiphertextException",
    "InvalidGrantIdException",
    "InvalidGrantTokenException",
    "InvalidImportTokenException",
    "InvalidKeyUsageException",
    "InvalidMarkerException",
    "InvalidSignatureException",
    "KeyUnavailableException",
    "KMSInternalException",
    "KMSInvalidMacException",
    "KMSInvalidSignatureException",
    "KMSInvalidStateException",
    "LimitExceededException",
    "MalformedPolicyDocumentException",
    "MissingAuthenticationTokenException",
    "NotFoundException",
    "SerializationException",
    "TagException",
    "ThrottlingException",
    "UnknownOperationException",
    "UnrecognizedClientException",
    "UnsupportedOperationException",
    "ValidationException",
]

_REGISTRY: dict[str, type[KMSError]] = {}


class KMSError(Exception):
    """Root of every error the service raises.

    Attributes:
        code: The AWS error code, for example ``"NotFoundException"``.
        sender_fault: True when the caller's request is at fault (HTTP 4xx).
        http_status: The HTTP status AWS KMS answers with for this code.
        message: The human-readable message; names the problem, never secrets.
    """

    code: ClassVar[str] = ""
    sender_fault: ClassVar[bool] = True
    http_status: ClassVar[int] = 400
    default_message: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if not code:
            raise TypeError(f"{cls.__name__} must define a non-empty code")
        if code in _REGISTRY:
            raise TypeError(
                f"error code {code!r} is registered twice: "
                f"{_REGISTRY[code].__name__} and {cls.__name__}"
            )
        _REGISTRY[code] = cls

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type[KMSError], tuple[str]]:
        return (type(self), (self.message,))

    def to_dict(self) -> dict[str, str]:
        """The error as the socket protocol sends it: ``{"Code", "Message"}``."""
        return {"Code": self.code, "Message": self.message}


def error_class(code: str) -> type[KMSError] | None:
    """The class registered for an AWS error code, or None if unknown."""
    return _REGISTRY.get(code)


def from_code(code: str, message: str) -> KMSError:
    """Rebuild an error received from a peer (the socket or HTTP client side).

    Unknown codes become :class:`KMSInternalException` with the code kept in the
    message, so a client never loses the peer's answer.
    """
    cls = _REGISTRY.get(code)
    if cls is None:
        return KMSInternalException(f"{code}: {message}")
    return cls(message)


# --- errors of the AWS KMS API (botocore's kms/2014-11-01 model) ------------


class AlreadyExistsException(KMSError):
    code = "AlreadyExistsException"


class ConflictException(KMSError):
    code = "ConflictException"


class CustomKeyStoreInvalidStateException(KMSError):
    code = "CustomKeyStoreInvalidStateException"


class CustomKeyStoreNotFoundException(KMSError):
    code = "CustomKeyStoreNotFoundException"


class DependencyTimeoutException(KMSError):
    code = "DependencyTimeoutException"
    sender_fault = False
    http_status = 503


class DisabledException(KMSError):
    code = "DisabledException"


class DryRunOperationException(KMSError):
    code = "DryRunOperationException"
    default_message = "The request would have succeeded, but the DryRun option is set."


class ExpiredImportTokenException(KMSError):
    code = "ExpiredImportTokenException"


class IncorrectKeyException(KMSError):
    code = "IncorrectKeyException"
    default_message = "The key ID in the request does not identify the key that encrypted the ciphertext."


class IncorrectKeyMaterialException(KMSError):
    code = "IncorrectKeyMaterialException"


class InvalidAliasNameException(KMSError):
    code = "InvalidAliasNameException"


class InvalidArnException(KMSError):
    code = "InvalidArnException"


class InvalidCiphertextException(KMSError):
    """Any failure to authenticate or parse a ciphertext.

    Deliberately says nothing about which check failed.
    """

    code = "InvalidCiphertextException"
    default_message = "The ciphertext is invalid or was not made under this key and context."


class InvalidGrantIdException(KMSError):
    code = "InvalidGrantIdException"


class InvalidGrantTokenException(KMSError):
    code = "InvalidGrantTokenException"


class InvalidImportTokenException(KMSError):
    code = "InvalidImportTokenException"


class InvalidKeyUsageException(KMSError):
    code = "InvalidKeyUsageException"


class InvalidMarkerException(KMSError):
    code = "InvalidMarkerException"


class KeyUnavailableException(KMSError):
    code = "KeyUnavailableException"
    sender_fault = False
    http_status = 500


class KMSInternalException(KMSError):
    code = "KMSInternalException"
    sender_fault = False
    http_status = 500
    default_message = "An internal error occurred."


class KMSInvalidMacException(KMSError):
    code = "KMSInvalidMacException"


class KMSInvalidSignatureException(KMSError):
    code = "KMSInvalidSignatureException"


class KMSInvalidStateException(KMSError):
    code = "KMSInvalidStateException"


class LimitExceededException(KMSError):
    code = "LimitExceededException"


class MalformedPolicyDocumentException(KMSError):
    code = "MalformedPolicyDocumentException"


class NotFoundException(KMSError):
    code = "NotFoundException"


class TagException(KMSError):
    code = "TagException"


class UnsupportedOperationException(KMSError):
    code = "UnsupportedOperationException"


# --- errors common to every AWS JSON service --------------------------------


class AccessDeniedException(KMSError):
    code = "AccessDeniedException"


class IncompleteSignatureException(KMSError):
    code = "IncompleteSignature"
    http_status = 403


class InvalidSignatureException(KMSError):
    code = "InvalidSignatureException"
    http_status = 403


class MissingAuthenticationTokenException(KMSError):
    code = "MissingAuthenticationToken"
    http_status = 403


class SerializationException(KMSError):
    code = "SerializationException"


class ThrottlingException(KMSError):
    code = "ThrottlingException"


class UnknownOperationException(KMSError):
    code = "UnknownOperationException"


class UnrecognizedClientException(KMSError):
    code = "UnrecognizedClientException"
    http_status = 403
    default_message = "The security token included in the request is invalid."


class ValidationException(KMSError):
    code = "ValidationException"
