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
    "AccessDeniedException",
    "AlreadyExistsException",
    "CloudHsmClusterInUseException",
    "CloudHsmClusterInvalidConfigurationException",
    "CloudHsmClusterNotActiveException",
    "CloudHsmClusterNotFoundException",
    "CloudHsmClusterNotRelatedException",
    "ConflictException",
    "CustomKeyStoreHasCMKsException",
    "CustomKeyStoreInvalidStateException",
    "CustomKeyStoreNameInUseException",
    "CustomKeyStoreNotFoundException",
    "DependencyTimeoutException",
    "DisabledException",
    "DryRunOperationException",
    "ExpiredImportTokenException",
    "IncompleteSignatureException",
    "IncorrectKeyException",
    "IncorrectKeyMaterialException",
    "IncorrectTrustAnchorException",
    "InvalidAliasNameException",
    "InvalidArnException",
    "InvalidCiphertextException",
    "InvalidGrantIdException",
    "InvalidGrantTokenException",
    "InvalidImportTokenException",
    "InvalidKeyUsageException",
    "InvalidMarkerException",
    "InvalidSignatureException",
    "KMSError",
    "KMSInternalException",
    "KMSInvalidMacException",
    "KMSInvalidSignatureException",
    "KMSInvalidStateException",
    "KeyUnavailableException",
    "LimitExceededException",
    "MalformedPolicyDocumentException",
    "MissingAuthenticationTokenException",
    "NotAuthorizedException",
    "NotFoundException",
    "SerializationException",
    "TagException",
    "ThrottlingException",
    "UnknownOperationException",
    "UnrecognizedClientException",
    "UnsupportedOperationException",
    "ValidationException",
    "XksKeyAlreadyInUseException",
    "XksKeyInvalidConfigurationException",
    "XksKeyNotFoundException",
    "XksProxyIncorrectAuthenticationCredentialException",
    "XksProxyInvalidConfigurationException",
    "XksProxyInvalidResponseException",
    "XksProxyUriEndpointInUseException",
    "XksProxyUriInUseException",
    "XksProxyUriUnreachableException",
    "XksProxyVpcEndpointServiceInUseException",
    "XksProxyVpcEndpointServiceInvalidConfigurationException",
    "XksProxyVpcEndpointServiceNotFoundException",
    "error_class",
    "from_code",
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
        if code is None:
            # A specialization of a registered class (say, a root key error
            # that is a KMSInternalException) keeps its parent's code.
            if not cls.code:
                raise TypeError(f"{cls.__name__} must define a non-empty code")
            return
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
    """The named resource, such as an alias, already exists."""

    code = "AlreadyExistsException"


class ConflictException(KMSError):
    """The request conflicts with the current state of the resource."""

    code = "ConflictException"


class CustomKeyStoreInvalidStateException(KMSError):
    """The custom key store's state does not allow the operation."""

    code = "CustomKeyStoreInvalidStateException"


class CustomKeyStoreNotFoundException(KMSError):
    """No custom key store has the given ID or name."""

    code = "CustomKeyStoreNotFoundException"


class DependencyTimeoutException(KMSError):
    """A system the service depends on did not answer in time; retry."""

    code = "DependencyTimeoutException"
    sender_fault = False
    http_status = 503


class DisabledException(KMSError):
    """The KMS key is disabled."""

    code = "DisabledException"


class DryRunOperationException(KMSError):
    """The request would have succeeded, but ``DryRun`` was set."""

    code = "DryRunOperationException"
    default_message = "The request would have succeeded, but the DryRun option is set."


class ExpiredImportTokenException(KMSError):
    """The import token has expired; get new import parameters."""

    code = "ExpiredImportTokenException"


class IncorrectKeyException(KMSError):
    """The KMS key named in the request did not encrypt the ciphertext."""

    code = "IncorrectKeyException"
    default_message = (
        "The key ID in the request does not identify the key that encrypted the ciphertext."
    )


class IncorrectKeyMaterialException(KMSError):
    """The imported key material differs from the key's earlier material."""

    code = "IncorrectKeyMaterialException"


class InvalidAliasNameException(KMSError):
    """The alias name is malformed or uses the reserved ``alias/aws/`` prefix."""

    code = "InvalidAliasNameException"


class InvalidArnException(KMSError):
    """A key or alias ARN is malformed."""

    code = "InvalidArnException"


class InvalidCiphertextException(KMSError):
    """Any failure to authenticate or parse a ciphertext.

    Deliberately says nothing about which check failed.
    """

    code = "InvalidCiphertextException"
    default_message = "The ciphertext is invalid or was not made under this key and context."


class InvalidGrantIdException(KMSError):
    """No grant has the given grant ID."""

    code = "InvalidGrantIdException"


class InvalidGrantTokenException(KMSError):
    """A grant token is malformed or not valid for the request."""

    code = "InvalidGrantTokenException"


class InvalidImportTokenException(KMSError):
    """The import token is malformed or belongs to another key."""

    code = "InvalidImportTokenException"


class InvalidKeyUsageException(KMSError):
    """The key usage or key spec of the KMS key does not allow the operation."""

    code = "InvalidKeyUsageException"


class InvalidMarkerException(KMSError):
    """The pagination marker was not issued by an earlier call."""

    code = "InvalidMarkerException"


class KeyUnavailableException(KMSError):
    """The key material cannot be reached right now; retry."""

    code = "KeyUnavailableException"
    sender_fault = False
    http_status = 500


class KMSInternalException(KMSError):
    """An internal error; the caller is not at fault."""

    code = "KMSInternalException"
    sender_fault = False
    http_status = 500
    default_message = "An internal error occurred."


class KMSInvalidMacException(KMSError):
    """The HMAC did not verify."""

    code = "KMSInvalidMacException"


class KMSInvalidSignatureException(KMSError):
    """The signature did not verify."""

    code = "KMSInvalidSignatureException"


class KMSInvalidStateException(KMSError):
    """The key state (for example ``PendingDeletion``) does not allow the operation."""

    code = "KMSInvalidStateException"


class LimitExceededException(KMSError):
    """A quota on keys, aliases or grants would be exceeded."""

    code = "LimitExceededException"


class MalformedPolicyDocumentException(KMSError):
    """The key policy is not a valid policy document or is too large."""

    code = "MalformedPolicyDocumentException"


class NotFoundException(KMSError):
    """The key, alias, grant or other named entity does not exist."""

    code = "NotFoundException"


class TagException(KMSError):
    """A tag key or value is malformed, reserved or repeated."""

    code = "TagException"


class UnsupportedOperationException(KMSError):
    """The operation is not supported for this key or key store."""

    code = "UnsupportedOperationException"


# --- errors of custom key stores (AWS_CLOUDHSM and EXTERNAL_KEY_STORE) --------


class CloudHsmClusterInUseException(KMSError):
    """The cluster is already the cluster of another custom key store."""

    code = "CloudHsmClusterInUseException"


class CloudHsmClusterInvalidConfigurationException(KMSError):
    """The cluster (here: the PKCS#11 module and token) is not configured as a key store needs."""

    code = "CloudHsmClusterInvalidConfigurationException"


class CloudHsmClusterNotActiveException(KMSError):
    """The cluster (here: the PKCS#11 token) is not active."""

    code = "CloudHsmClusterNotActiveException"


class CloudHsmClusterNotFoundException(KMSError):
    """No cluster (here: no registered PKCS#11 token) has the given ID."""

    code = "CloudHsmClusterNotFoundException"


class CloudHsmClusterNotRelatedException(KMSError):
    """The cluster is not related to the custom key store's original cluster."""

    code = "CloudHsmClusterNotRelatedException"


class CustomKeyStoreHasCMKsException(KMSError):
    """The custom key store still holds KMS keys."""

    code = "CustomKeyStoreHasCMKsException"


class CustomKeyStoreNameInUseException(KMSError):
    """Another custom key store has that name."""

    code = "CustomKeyStoreNameInUseException"


class IncorrectTrustAnchorException(KMSError):
    """The trust anchor certificate does not match the cluster's."""

    code = "IncorrectTrustAnchorException"


class XksKeyAlreadyInUseException(KMSError):
    """Another KMS key in the external key store uses that external key."""

    code = "XksKeyAlreadyInUseException"


class XksKeyInvalidConfigurationException(KMSError):
    """The external key is not an enabled AES-256 encrypt/decrypt key."""

    code = "XksKeyInvalidConfigurationException"


class XksKeyNotFoundException(KMSError):
    """The external key store proxy does not know the external key."""

    code = "XksKeyNotFoundException"


class XksProxyIncorrectAuthenticationCredentialException(KMSError):
    """The external key store proxy rejected the authentication credential."""

    code = "XksProxyIncorrectAuthenticationCredentialException"


class XksProxyInvalidConfigurationException(KMSError):
    """The external key store proxy is not configured correctly."""

    code = "XksProxyInvalidConfigurationException"


class XksProxyInvalidResponseException(KMSError):
    """The external key store proxy's answer cannot be interpreted."""

    code = "XksProxyInvalidResponseException"


class XksProxyUriEndpointInUseException(KMSError):
    """Another external key store uses that proxy endpoint."""

    code = "XksProxyUriEndpointInUseException"


class XksProxyUriInUseException(KMSError):
    """Another external key store uses that proxy endpoint and path."""

    code = "XksProxyUriInUseException"


class XksProxyUriUnreachableException(KMSError):
    """The external key store proxy cannot be reached or did not answer in time."""

    code = "XksProxyUriUnreachableException"


class XksProxyVpcEndpointServiceInUseException(KMSError):
    """Another external key store uses that VPC endpoint service."""

    code = "XksProxyVpcEndpointServiceInUseException"


class XksProxyVpcEndpointServiceInvalidConfigurationException(KMSError):
    """The VPC endpoint service is not configured as an external key store needs."""

    code = "XksProxyVpcEndpointServiceInvalidConfigurationException"


class XksProxyVpcEndpointServiceNotFoundException(KMSError):
    """No VPC endpoint service has that name."""

    code = "XksProxyVpcEndpointServiceNotFoundException"


# --- errors common to every AWS JSON service --------------------------------
# AWS JSON services (KMS among them) answer these with HTTP 400 and the
# "...Exception" codes; the query-protocol services spell them differently.


class NotAuthorizedException(KMSError):
    """The caller may not use a reserved name (an ``alias/aws/`` alias), as AWS answers."""

    code = "NotAuthorizedException"


class AccessDeniedException(KMSError):
    """The caller is not authorized for the operation."""

    code = "AccessDeniedException"


class IncompleteSignatureException(KMSError):
    """The request's SigV4 signature lacks required parts."""

    code = "IncompleteSignatureException"


class InvalidSignatureException(KMSError):
    """The request's SigV4 signature does not match the request."""

    code = "InvalidSignatureException"


class MissingAuthenticationTokenException(KMSError):
    """The request carries no credentials."""

    code = "MissingAuthenticationTokenException"


class SerializationException(KMSError):
    """The request body cannot be decoded."""

    code = "SerializationException"


class ThrottlingException(KMSError):
    """Too many requests; slow down and retry."""

    code = "ThrottlingException"


class UnknownOperationException(KMSError):
    """The request names an operation the service does not implement."""

    code = "UnknownOperationException"


class UnrecognizedClientException(KMSError):
    """The access key in the request is not known."""

    code = "UnrecognizedClientException"
    default_message = "The security token included in the request is invalid."


class ValidationException(KMSError):
    """A request field is missing, malformed or out of range."""

    code = "ValidationException"
