"""Typed methods of the clients, one per served operation (generated).

Written by ``tools/gen_client_methods.py`` from the request shapes the
dispatcher validates against; do not edit by hand. A test fails when this file
and the shapes disagree.

Each request is a ``TypedDict`` of the operation's members with AWS's names,
so mypy rejects a misspelt method, a misspelt member, a missing required one
and a value of the wrong type. Responses are the AWS response members.
"""

# No ``from __future__ import annotations``: the TypedDicts are evaluated, so
# their ``__required_keys__`` are right at run time too.
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Required, TypedDict, Unpack

__all__ = ["AsyncKMSMethods", "KMSMethods"]

Buffer = bytes | bytearray | memoryview

CustomKeyStoreType = Literal["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"]
XksProxyConnectivity = Literal["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"]
Operations = Literal[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
]
KeyUsage = Literal[
    "SIGN_VERIFY",
    "ENCRYPT_DECRYPT",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
    "ENCAPSULATE_DECAPSULATE",
]
CustomerMasterKeySpec = Literal[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
]
KeySpec = Literal[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
]
Origin = Literal["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"]
EncapsulationAlgorithm = Literal["ML_KEM"]
EncryptionAlgorithm = Literal[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
]
KeyEncryptionAlgorithm = Literal["RSAES_OAEP_SHA_256"]
DryRunModifiers = Literal["IGNORE_CIPHERTEXT"]
KeyAgreementAlgorithm = Literal["ECDH"]
GenerateDataKeyRequestKeySpec = Literal["AES_256", "AES_128"]
KeyPairSpec = Literal[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
]
MacAlgorithm = Literal["HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"]
WrappingAlgorithm = Literal[
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
    "SM2PKE",
]
WrappingKeySpec = Literal["RSA_2048", "RSA_3072", "RSA_4096", "SM2"]
ExpirationModel = Literal["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"]
ImportType = Literal["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"]
IncludeKeyMaterial = Literal["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"]
ResourceOwners = Literal["SELF", "OTHER_ACCOUNTS_VIA_RAM"]
MessageType = Literal["RAW", "DIGEST", "EXTERNAL_MU"]
SigningAlgorithm = Literal[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
]


class CancelKeyDeletionRequest(TypedDict, total=False):
    KeyId: Required[str]


class ConnectCustomKeyStoreRequest(TypedDict, total=False):
    CustomKeyStoreId: Required[str]


class CreateAliasRequest(TypedDict, total=False):
    AliasName: Required[str]
    TargetKeyId: Required[str]


class CreateCustomKeyStoreRequestXksProxyAuthenticationCredential(TypedDict, total=False):
    AccessKeyId: Required[str]
    RawSecretAccessKey: Required[str]


class CreateCustomKeyStoreRequest(TypedDict, total=False):
    CustomKeyStoreName: Required[str]
    CloudHsmClusterId: str
    TrustAnchorCertificate: str
    KeyStorePassword: str
    CustomKeyStoreType: CustomKeyStoreType
    XksProxyUriEndpoint: str
    XksProxyUriPath: str
    XksProxyVpcEndpointServiceName: str
    XksProxyVpcEndpointServiceOwner: str
    XksProxyAuthenticationCredential: CreateCustomKeyStoreRequestXksProxyAuthenticationCredential
    XksProxyConnectivity: XksProxyConnectivity


class CreateGrantRequestConstraints(TypedDict, total=False):
    EncryptionContextSubset: Mapping[str, str]
    EncryptionContextEquals: Mapping[str, str]
    SourceArn: str


class CreateGrantRequest(TypedDict, total=False):
    KeyId: Required[str]
    GranteePrincipal: str
    RetiringPrincipal: str
    Operations: Required[Sequence[Operations]]
    Constraints: CreateGrantRequestConstraints
    GrantTokens: Sequence[str]
    Name: str
    DryRun: bool
    GranteeServicePrincipal: str
    RetiringServicePrincipal: str


class CreateKeyRequestTags(TypedDict, total=False):
    TagKey: Required[str]
    TagValue: Required[str]


class CreateKeyRequest(TypedDict, total=False):
    Policy: str
    Description: str
    KeyUsage: KeyUsage
    CustomerMasterKeySpec: CustomerMasterKeySpec
    KeySpec: KeySpec
    Origin: Origin
    CustomKeyStoreId: str
    BypassPolicyLockoutSafetyCheck: bool
    Tags: Sequence[CreateKeyRequestTags]
    MultiRegion: bool
    XksKeyId: str


class CreateUserRequestTags(TypedDict, total=False):
    Key: Required[str]
    Value: Required[str]


class CreateUserRequest(TypedDict, total=False):
    UserName: Required[str]
    Uid: int
    PolicyDocument: str
    Tags: Sequence[CreateUserRequestTags]


class DecapsulateRequest(TypedDict, total=False):
    KeyId: Required[str]
    SharedSecretCiphertextBlob: Required[Buffer]
    EncapsulationAlgorithm: Required[EncapsulationAlgorithm]
    GrantTokens: Sequence[str]
    DryRun: bool


class DecryptRequestRecipient(TypedDict, total=False):
    KeyEncryptionAlgorithm: KeyEncryptionAlgorithm
    AttestationDocument: Buffer


class DecryptRequest(TypedDict, total=False):
    CiphertextBlob: Required[Buffer]
    EncryptionContext: Mapping[str, str]
    GrantTokens: Sequence[str]
    KeyId: str
    EncryptionAlgorithm: EncryptionAlgorithm
    Recipient: DecryptRequestRecipient
    DryRun: bool
    DryRunModifiers: Sequence[DryRunModifiers]


class DecryptManyRequest(TypedDict, total=False):
    CiphertextBlobs: Required[Sequence[Buffer]]
    EncryptionContext: Mapping[str, str]
    EncryptionContexts: Sequence[Mapping[str, str]]
    KeyId: str
    GrantTokens: Sequence[str]
    DryRun: bool


class DeleteAliasRequest(TypedDict, total=False):
    AliasName: Required[str]


class DeleteCustomKeyStoreRequest(TypedDict, total=False):
    CustomKeyStoreId: Required[str]


class DeleteImportedKeyMaterialRequest(TypedDict, total=False):
    KeyId: Required[str]
    KeyMaterialId: str


class DeleteUserRequest(TypedDict, total=False):
    UserName: Required[str]


class DeriveSharedSecretRequestRecipient(TypedDict, total=False):
    KeyEncryptionAlgorithm: KeyEncryptionAlgorithm
    AttestationDocument: Buffer


class DeriveSharedSecretRequest(TypedDict, total=False):
    KeyId: Required[str]
    KeyAgreementAlgorithm: Required[KeyAgreementAlgorithm]
    PublicKey: Required[Buffer]
    GrantTokens: Sequence[str]
    DryRun: bool
    Recipient: DeriveSharedSecretRequestRecipient


class DescribeCustomKeyStoresRequest(TypedDict, total=False):
    CustomKeyStoreId: str
    CustomKeyStoreName: str
    Limit: int
    Marker: str


class DescribeKeyRequest(TypedDict, total=False):
    KeyId: Required[str]
    GrantTokens: Sequence[str]


class DisableKeyRequest(TypedDict, total=False):
    KeyId: Required[str]


class DisableKeyRotationRequest(TypedDict, total=False):
    KeyId: Required[str]


class DisconnectCustomKeyStoreRequest(TypedDict, total=False):
    CustomKeyStoreId: Required[str]


class EnableKeyRequest(TypedDict, total=False):
    KeyId: Required[str]


class EnableKeyRotationRequest(TypedDict, total=False):
    KeyId: Required[str]
    RotationPeriodInDays: int


class EncapsulateRequest(TypedDict, total=False):
    KeyId: Required[str]
    EncapsulationAlgorithm: Required[EncapsulationAlgorithm]
    GrantTokens: Sequence[str]
    DryRun: bool


class EncryptRequest(TypedDict, total=False):
    KeyId: Required[str]
    Plaintext: Required[Buffer]
    EncryptionContext: Mapping[str, str]
    GrantTokens: Sequence[str]
    EncryptionAlgorithm: EncryptionAlgorithm
    DryRun: bool


class GenerateDataKeyRequestRecipient(TypedDict, total=False):
    KeyEncryptionAlgorithm: KeyEncryptionAlgorithm
    AttestationDocument: Buffer


class GenerateDataKeyRequest(TypedDict, total=False):
    KeyId: Required[str]
    EncryptionContext: Mapping[str, str]
    NumberOfBytes: int
    KeySpec: GenerateDataKeyRequestKeySpec
    GrantTokens: Sequence[str]
    DryRun: bool
    Recipient: GenerateDataKeyRequestRecipient


class GenerateDataKeyPairRequestRecipient(TypedDict, total=False):
    KeyEncryptionAlgorithm: KeyEncryptionAlgorithm
    AttestationDocument: Buffer


class GenerateDataKeyPairRequest(TypedDict, total=False):
    EncryptionContext: Mapping[str, str]
    KeyId: Required[str]
    KeyPairSpec: Required[KeyPairSpec]
    GrantTokens: Sequence[str]
    DryRun: bool
    Recipient: GenerateDataKeyPairRequestRecipient


class GenerateDataKeyPairWithoutPlaintextRequest(TypedDict, total=False):
    EncryptionContext: Mapping[str, str]
    KeyId: Required[str]
    KeyPairSpec: Required[KeyPairSpec]
    GrantTokens: Sequence[str]
    DryRun: bool


class GenerateDataKeyWithoutPlaintextRequest(TypedDict, total=False):
    KeyId: Required[str]
    EncryptionContext: Mapping[str, str]
    NumberOfBytes: int
    KeySpec: GenerateDataKeyRequestKeySpec
    GrantTokens: Sequence[str]
    DryRun: bool


class GenerateDataKeysRequest(TypedDict, total=False):
    KeyId: Required[str]
    Count: Required[int]
    EncryptionContext: Mapping[str, str]
    NumberOfBytes: int
    KeySpec: GenerateDataKeyRequestKeySpec
    WithoutPlaintext: bool
    GrantTokens: Sequence[str]
    DryRun: bool


class GenerateMacRequest(TypedDict, total=False):
    Message: Required[Buffer]
    KeyId: Required[str]
    MacAlgorithm: Required[MacAlgorithm]
    GrantTokens: Sequence[str]
    DryRun: bool


class GenerateRandomRequestRecipient(TypedDict, total=False):
    KeyEncryptionAlgorithm: KeyEncryptionAlgorithm
    AttestationDocument: Buffer


class GenerateRandomRequest(TypedDict, total=False):
    NumberOfBytes: int
    CustomKeyStoreId: str
    Recipient: GenerateRandomRequestRecipient


class GetKeyLastUsageRequest(TypedDict, total=False):
    KeyId: Required[str]


class GetKeyPolicyRequest(TypedDict, total=False):
    KeyId: Required[str]
    PolicyName: str


class GetKeyRotationStatusRequest(TypedDict, total=False):
    KeyId: Required[str]


class GetParametersForImportRequest(TypedDict, total=False):
    KeyId: Required[str]
    WrappingAlgorithm: Required[WrappingAlgorithm]
    WrappingKeySpec: Required[WrappingKeySpec]


class GetPublicKeyRequest(TypedDict, total=False):
    KeyId: Required[str]
    GrantTokens: Sequence[str]


class ImportKeyMaterialRequest(TypedDict, total=False):
    KeyId: Required[str]
    ImportToken: Required[Buffer]
    EncryptedKeyMaterial: Required[Buffer]
    ValidTo: datetime
    ExpirationModel: ExpirationModel
    ImportType: ImportType
    KeyMaterialDescription: str
    KeyMaterialId: str


class ListAliasesRequest(TypedDict, total=False):
    KeyId: str
    Limit: int
    Marker: str


class ListGrantsRequest(TypedDict, total=False):
    Limit: int
    Marker: str
    KeyId: Required[str]
    GrantId: str
    GranteePrincipal: str
    GranteeServicePrincipal: str


class ListKeyPoliciesRequest(TypedDict, total=False):
    KeyId: Required[str]
    Limit: int
    Marker: str


class ListKeyRotationsRequest(TypedDict, total=False):
    KeyId: Required[str]
    IncludeKeyMaterial: IncludeKeyMaterial
    Limit: int
    Marker: str


class ListKeysRequest(TypedDict, total=False):
    Limit: int
    Marker: str
    ResourceOwners: Sequence[ResourceOwners]


class ListResourceTagsRequest(TypedDict, total=False):
    KeyId: Required[str]
    Limit: int
    Marker: str


class ListRetirableGrantsRequest(TypedDict, total=False):
    Limit: int
    Marker: str
    RetiringPrincipal: str
    RetiringServicePrincipal: str


class ListUsersRequest(TypedDict, total=False):
    pass


class PutKeyPolicyRequest(TypedDict, total=False):
    KeyId: Required[str]
    PolicyName: str
    Policy: Required[str]
    BypassPolicyLockoutSafetyCheck: bool


class ReEncryptRequest(TypedDict, total=False):
    CiphertextBlob: Required[Buffer]
    SourceEncryptionContext: Mapping[str, str]
    SourceKeyId: str
    DestinationKeyId: Required[str]
    DestinationEncryptionContext: Mapping[str, str]
    SourceEncryptionAlgorithm: EncryptionAlgorithm
    DestinationEncryptionAlgorithm: EncryptionAlgorithm
    GrantTokens: Sequence[str]
    DryRun: bool
    DryRunModifiers: Sequence[DryRunModifiers]


class ReplicateKeyRequestTags(TypedDict, total=False):
    TagKey: Required[str]
    TagValue: Required[str]


class ReplicateKeyRequest(TypedDict, total=False):
    KeyId: Required[str]
    ReplicaRegion: Required[str]
    Policy: str
    BypassPolicyLockoutSafetyCheck: bool
    Description: str
    Tags: Sequence[ReplicateKeyRequestTags]


class RetireGrantRequest(TypedDict, total=False):
    GrantToken: str
    KeyId: str
    GrantId: str
    DryRun: bool


class RevokeGrantRequest(TypedDict, total=False):
    KeyId: Required[str]
    GrantId: Required[str]
    DryRun: bool


class RotateKeyOnDemandRequest(TypedDict, total=False):
    KeyId: Required[str]


class ScheduleKeyDeletionRequest(TypedDict, total=False):
    KeyId: Required[str]
    PendingWindowInDays: int


class SignRequest(TypedDict, total=False):
    KeyId: Required[str]
    Message: Required[Buffer]
    MessageType: MessageType
    GrantTokens: Sequence[str]
    SigningAlgorithm: Required[SigningAlgorithm]
    DryRun: bool


class TagResourceRequestTags(TypedDict, total=False):
    TagKey: Required[str]
    TagValue: Required[str]


class TagResourceRequest(TypedDict, total=False):
    KeyId: Required[str]
    Tags: Required[Sequence[TagResourceRequestTags]]


class TagUserRequestTags(TypedDict, total=False):
    Key: Required[str]
    Value: Required[str]


class TagUserRequest(TypedDict, total=False):
    UserName: Required[str]
    Tags: Required[Sequence[TagUserRequestTags]]


class UntagResourceRequest(TypedDict, total=False):
    KeyId: Required[str]
    TagKeys: Required[Sequence[str]]


class UntagUserRequest(TypedDict, total=False):
    UserName: Required[str]
    TagKeys: Required[Sequence[str]]


class UpdateAliasRequest(TypedDict, total=False):
    AliasName: Required[str]
    TargetKeyId: Required[str]


class UpdateCustomKeyStoreRequestXksProxyAuthenticationCredential(TypedDict, total=False):
    AccessKeyId: Required[str]
    RawSecretAccessKey: Required[str]


class UpdateCustomKeyStoreRequest(TypedDict, total=False):
    CustomKeyStoreId: Required[str]
    NewCustomKeyStoreName: str
    KeyStorePassword: str
    CloudHsmClusterId: str
    XksProxyUriEndpoint: str
    XksProxyUriPath: str
    XksProxyVpcEndpointServiceName: str
    XksProxyVpcEndpointServiceOwner: str
    XksProxyAuthenticationCredential: UpdateCustomKeyStoreRequestXksProxyAuthenticationCredential
    XksProxyConnectivity: XksProxyConnectivity


class UpdateKeyDescriptionRequest(TypedDict, total=False):
    KeyId: Required[str]
    Description: Required[str]


class UpdatePrimaryRegionRequest(TypedDict, total=False):
    KeyId: Required[str]
    PrimaryRegion: Required[str]


class VerifyRequest(TypedDict, total=False):
    KeyId: Required[str]
    Message: Required[Buffer]
    MessageType: MessageType
    Signature: Required[Buffer]
    SigningAlgorithm: Required[SigningAlgorithm]
    GrantTokens: Sequence[str]
    DryRun: bool


class VerifyMacRequest(TypedDict, total=False):
    Message: Required[Buffer]
    KeyId: Required[str]
    MacAlgorithm: Required[MacAlgorithm]
    Mac: Required[Buffer]
    GrantTokens: Sequence[str]
    DryRun: bool


class KMSMethods:
    """The operations, for a client whose calls return their answer."""

    __slots__ = ()

    def _invoke(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``operation`` with ``request``; each client supplies this."""
        raise NotImplementedError

    def cancel_key_deletion(self, **request: Unpack[CancelKeyDeletionRequest]) -> dict[str, Any]:
        """CancelKeyDeletion: back to Disabled (PendingImport if imported material is gone)."""
        return self._invoke("CancelKeyDeletion", request)

    def connect_custom_key_store(
        self, **request: Unpack[ConnectCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """ConnectCustomKeyStore: log in to the token; CONNECTED, or FAILED with the reason."""
        return self._invoke("ConnectCustomKeyStore", request)

    def create_alias(self, **request: Unpack[CreateAliasRequest]) -> dict[str, Any]:
        """CreateAlias: a new alias for a key (``alias/aws/`` is reserved)."""
        return self._invoke("CreateAlias", request)

    def create_custom_key_store(
        self, **request: Unpack[CreateCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """CreateCustomKeyStore: a new store, DISCONNECTED until ConnectCustomKeyStore."""
        return self._invoke("CreateCustomKeyStore", request)

    def create_grant(self, **request: Unpack[CreateGrantRequest]) -> dict[str, Any]:
        """CreateGrant: let a principal use the key for some operations."""
        return self._invoke("CreateGrant", request)

    def create_key(self, **request: Unpack[CreateKeyRequest]) -> dict[str, Any]:
        """CreateKey: a new key of any supported key spec, with fresh material."""
        return self._invoke("CreateKey", request)

    def create_user(self, **request: Unpack[CreateUserRequest]) -> dict[str, Any]:
        """CreateUser: a user with one access key; the secret is in this response only."""
        return self._invoke("CreateUser", request)

    def decapsulate(self, **request: Unpack[DecapsulateRequest]) -> dict[str, Any]:
        """Decapsulate: the shared secret of a ciphertext made by Encapsulate."""
        return self._invoke("Decapsulate", request)

    def decrypt(self, **request: Unpack[DecryptRequest]) -> dict[str, Any]:
        """Decrypt: a blob made by Encrypt or GenerateDataKey; KeyId is optional."""
        return self._invoke("Decrypt", request)

    def decrypt_many(self, **request: Unpack[DecryptManyRequest]) -> dict[str, Any]:
        """DecryptMany: many blobs in one call; each item succeeds or fails alone."""
        return self._invoke("DecryptMany", request)

    def delete_alias(self, **request: Unpack[DeleteAliasRequest]) -> dict[str, Any]:
        """DeleteAlias."""
        return self._invoke("DeleteAlias", request)

    def delete_custom_key_store(
        self, **request: Unpack[DeleteCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """DeleteCustomKeyStore: only a disconnected store that holds no keys."""
        return self._invoke("DeleteCustomKeyStore", request)

    def delete_imported_key_material(
        self, **request: Unpack[DeleteImportedKeyMaterialRequest]
    ) -> dict[str, Any]:
        """DeleteImportedKeyMaterial: the material goes; the key waits for it again."""
        return self._invoke("DeleteImportedKeyMaterial", request)

    def delete_user(self, **request: Unpack[DeleteUserRequest]) -> dict[str, Any]:
        """DeleteUser: remove a user and its access keys; it can no longer call."""
        return self._invoke("DeleteUser", request)

    def derive_shared_secret(self, **request: Unpack[DeriveSharedSecretRequest]) -> dict[str, Any]:
        """DeriveSharedSecret: the raw ECDH secret of the key and a peer public key."""
        return self._invoke("DeriveSharedSecret", request)

    def describe_custom_key_stores(
        self, **request: Unpack[DescribeCustomKeyStoresRequest]
    ) -> dict[str, Any]:
        """DescribeCustomKeyStores: one store by id or name, or all of them, paged."""
        return self._invoke("DescribeCustomKeyStores", request)

    def describe_key(self, **request: Unpack[DescribeKeyRequest]) -> dict[str, Any]:
        """DescribeKey: the key's metadata, in any state (aliases accepted)."""
        return self._invoke("DescribeKey", request)

    def disable_key(self, **request: Unpack[DisableKeyRequest]) -> dict[str, Any]:
        """DisableKey: Enabled to Disabled; the key then refuses all crypto."""
        return self._invoke("DisableKey", request)

    def disable_key_rotation(self, **request: Unpack[DisableKeyRotationRequest]) -> dict[str, Any]:
        """DisableKeyRotation."""
        return self._invoke("DisableKeyRotation", request)

    def disconnect_custom_key_store(
        self, **request: Unpack[DisconnectCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """DisconnectCustomKeyStore: log out; the store's keys become Unavailable."""
        return self._invoke("DisconnectCustomKeyStore", request)

    def enable_key(self, **request: Unpack[EnableKeyRequest]) -> dict[str, Any]:
        """EnableKey: Disabled to Enabled (Enabled stays Enabled)."""
        return self._invoke("EnableKey", request)

    def enable_key_rotation(self, **request: Unpack[EnableKeyRotationRequest]) -> dict[str, Any]:
        """EnableKeyRotation: rotate every RotationPeriodInDays (90-2560, default 365)."""
        return self._invoke("EnableKeyRotation", request)

    def encapsulate(self, **request: Unpack[EncapsulateRequest]) -> dict[str, Any]:
        """Encapsulate: a fresh shared secret and its ciphertext under an ML-KEM key."""
        return self._invoke("Encapsulate", request)

    def encrypt(self, **request: Unpack[EncryptRequest]) -> dict[str, Any]:
        """Encrypt: up to 4096 bytes under a symmetric key, or RSAES-OAEP with an RSA key."""
        return self._invoke("Encrypt", request)

    def generate_data_key(self, **request: Unpack[GenerateDataKeyRequest]) -> dict[str, Any]:
        """GenerateDataKey: a random data key, in plaintext and under the KMS key."""
        return self._invoke("GenerateDataKey", request)

    def generate_data_key_pair(
        self, **request: Unpack[GenerateDataKeyPairRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyPair: a key pair, the private key also under a symmetric key."""
        return self._invoke("GenerateDataKeyPair", request)

    def generate_data_key_pair_without_plaintext(
        self, **request: Unpack[GenerateDataKeyPairWithoutPlaintextRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyPairWithoutPlaintext: the public key and the encrypted private key."""
        return self._invoke("GenerateDataKeyPairWithoutPlaintext", request)

    def generate_data_key_without_plaintext(
        self, **request: Unpack[GenerateDataKeyWithoutPlaintextRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyWithoutPlaintext: only the encrypted data key."""
        return self._invoke("GenerateDataKeyWithoutPlaintext", request)

    def generate_data_keys(self, **request: Unpack[GenerateDataKeysRequest]) -> dict[str, Any]:
        """GenerateDataKeys: ``Count`` data keys under one KMS key and context."""
        return self._invoke("GenerateDataKeys", request)

    def generate_mac(self, **request: Unpack[GenerateMacRequest]) -> dict[str, Any]:
        """GenerateMac: the HMAC of a message under an HMAC key."""
        return self._invoke("GenerateMac", request)

    def generate_random(self, **request: Unpack[GenerateRandomRequest]) -> dict[str, Any]:
        """GenerateRandom: 1-1024 random bytes from the OS CSPRNG."""
        return self._invoke("GenerateRandom", request)

    def get_key_last_usage(self, **request: Unpack[GetKeyLastUsageRequest]) -> dict[str, Any]:
        """GetKeyLastUsage, from the audit trail (see the module docstring)."""
        return self._invoke("GetKeyLastUsage", request)

    def get_key_policy(self, **request: Unpack[GetKeyPolicyRequest]) -> dict[str, Any]:
        """GetKeyPolicy: the key's policy document."""
        return self._invoke("GetKeyPolicy", request)

    def get_key_rotation_status(
        self, **request: Unpack[GetKeyRotationStatusRequest]
    ) -> dict[str, Any]:
        """GetKeyRotationStatus."""
        return self._invoke("GetKeyRotationStatus", request)

    def get_parameters_for_import(
        self, **request: Unpack[GetParametersForImportRequest]
    ) -> dict[str, Any]:
        """GetParametersForImport: a fresh RSA wrapping key and its one-use import token."""
        return self._invoke("GetParametersForImport", request)

    def get_public_key(self, **request: Unpack[GetPublicKeyRequest]) -> dict[str, Any]:
        """GetPublicKey: the DER SubjectPublicKeyInfo of an asymmetric key."""
        return self._invoke("GetPublicKey", request)

    def import_key_material(self, **request: Unpack[ImportKeyMaterialRequest]) -> dict[str, Any]:
        """ImportKeyMaterial: unwrap material with a token's wrapping key and store it."""
        return self._invoke("ImportKeyMaterial", request)

    def list_aliases(self, **request: Unpack[ListAliasesRequest]) -> dict[str, Any]:
        """ListAliases: all aliases, or one key's, in name order, paged."""
        return self._invoke("ListAliases", request)

    def list_grants(self, **request: Unpack[ListGrantsRequest]) -> dict[str, Any]:
        """ListGrants: a key's grants, optionally one grant or one grantee's, paged."""
        return self._invoke("ListGrants", request)

    def list_key_policies(self, **request: Unpack[ListKeyPoliciesRequest]) -> dict[str, Any]:
        """ListKeyPolicies: always the one name ``default``."""
        return self._invoke("ListKeyPolicies", request)

    def list_key_rotations(self, **request: Unpack[ListKeyRotationsRequest]) -> dict[str, Any]:
        """ListKeyRotations: completed rotations, oldest first, paged."""
        return self._invoke("ListKeyRotations", request)

    def list_keys(self, **request: Unpack[ListKeysRequest]) -> dict[str, Any]:
        """ListKeys: key ids and ARNs, paged."""
        return self._invoke("ListKeys", request)

    def list_resource_tags(self, **request: Unpack[ListResourceTagsRequest]) -> dict[str, Any]:
        """ListResourceTags: a key's tags in tag key order, paged."""
        return self._invoke("ListResourceTags", request)

    def list_retirable_grants(
        self, **request: Unpack[ListRetirableGrantsRequest]
    ) -> dict[str, Any]:
        """ListRetirableGrants: grants naming a principal as their retiring principal."""
        return self._invoke("ListRetirableGrants", request)

    def list_users(self, **request: Unpack[ListUsersRequest]) -> dict[str, Any]:
        """ListUsers: every user of this KMS, by name."""
        return self._invoke("ListUsers", request)

    def put_key_policy(self, **request: Unpack[PutKeyPolicyRequest]) -> dict[str, Any]:
        """PutKeyPolicy: replace the key's policy, refusing one that locks the caller out."""
        return self._invoke("PutKeyPolicy", request)

    def re_encrypt(self, **request: Unpack[ReEncryptRequest]) -> dict[str, Any]:
        """ReEncrypt: decrypt under one key and context, encrypt under another."""
        return self._invoke("ReEncrypt", request)

    def replicate_key(self, **request: Unpack[ReplicateKeyRequest]) -> dict[str, Any]:
        """ReplicateKey: a replica of a multi-Region primary key in another Region."""
        return self._invoke("ReplicateKey", request)

    def retire_grant(self, **request: Unpack[RetireGrantRequest]) -> dict[str, Any]:
        """RetireGrant: by token, or by KeyId and GrantId; for the grant's own parties."""
        return self._invoke("RetireGrant", request)

    def revoke_grant(self, **request: Unpack[RevokeGrantRequest]) -> dict[str, Any]:
        """RevokeGrant: delete a grant, with kms:RevokeGrant permission on the key."""
        return self._invoke("RevokeGrant", request)

    def rotate_key_on_demand(self, **request: Unpack[RotateKeyOnDemandRequest]) -> dict[str, Any]:
        """RotateKeyOnDemand: a new material version now (at most 25 per key)."""
        return self._invoke("RotateKeyOnDemand", request)

    def schedule_key_deletion(
        self, **request: Unpack[ScheduleKeyDeletionRequest]
    ) -> dict[str, Any]:
        """ScheduleKeyDeletion: PendingDeletion for 7-30 days, then deleted for good."""
        return self._invoke("ScheduleKeyDeletion", request)

    def sign(self, **request: Unpack[SignRequest]) -> dict[str, Any]:
        """Sign: a signature over a message (RAW) or its digest (DIGEST)."""
        return self._invoke("Sign", request)

    def tag_resource(self, **request: Unpack[TagResourceRequest]) -> dict[str, Any]:
        """TagResource: add or overwrite tags."""
        return self._invoke("TagResource", request)

    def tag_user(self, **request: Unpack[TagUserRequest]) -> dict[str, Any]:
        """TagUser: add or overwrite tags of a user (keys case-insensitive); policies see them."""
        return self._invoke("TagUser", request)

    def untag_resource(self, **request: Unpack[UntagResourceRequest]) -> dict[str, Any]:
        """UntagResource: remove tags by key; absent keys are ignored."""
        return self._invoke("UntagResource", request)

    def untag_user(self, **request: Unpack[UntagUserRequest]) -> dict[str, Any]:
        """UntagUser: remove tags of a user by key (case-insensitive); absent keys are ignored."""
        return self._invoke("UntagUser", request)

    def update_alias(self, **request: Unpack[UpdateAliasRequest]) -> dict[str, Any]:
        """UpdateAlias: point an alias at another key of the same type and usage."""
        return self._invoke("UpdateAlias", request)

    def update_custom_key_store(
        self, **request: Unpack[UpdateCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """UpdateCustomKeyStore: a new name (any state); a new PIN or cluster (disconnected)."""
        return self._invoke("UpdateCustomKeyStore", request)

    def update_key_description(
        self, **request: Unpack[UpdateKeyDescriptionRequest]
    ) -> dict[str, Any]:
        """UpdateKeyDescription."""
        return self._invoke("UpdateKeyDescription", request)

    def update_primary_region(
        self, **request: Unpack[UpdatePrimaryRegionRequest]
    ) -> dict[str, Any]:
        """UpdatePrimaryRegion: make the replica in PrimaryRegion the primary key."""
        return self._invoke("UpdatePrimaryRegion", request)

    def verify(self, **request: Unpack[VerifyRequest]) -> dict[str, Any]:
        """Verify: KMSInvalidSignatureException unless the signature is valid."""
        return self._invoke("Verify", request)

    def verify_mac(self, **request: Unpack[VerifyMacRequest]) -> dict[str, Any]:
        """VerifyMac: KMSInvalidMacException unless the MAC is valid (constant time)."""
        return self._invoke("VerifyMac", request)


class AsyncKMSMethods:
    """The operations, for an asyncio client whose calls are awaited."""

    __slots__ = ()

    async def _invoke(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``operation`` with ``request``; each client supplies this."""
        raise NotImplementedError

    async def cancel_key_deletion(
        self, **request: Unpack[CancelKeyDeletionRequest]
    ) -> dict[str, Any]:
        """CancelKeyDeletion: back to Disabled (PendingImport if imported material is gone)."""
        return await self._invoke("CancelKeyDeletion", request)

    async def connect_custom_key_store(
        self, **request: Unpack[ConnectCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """ConnectCustomKeyStore: log in to the token; CONNECTED, or FAILED with the reason."""
        return await self._invoke("ConnectCustomKeyStore", request)

    async def create_alias(self, **request: Unpack[CreateAliasRequest]) -> dict[str, Any]:
        """CreateAlias: a new alias for a key (``alias/aws/`` is reserved)."""
        return await self._invoke("CreateAlias", request)

    async def create_custom_key_store(
        self, **request: Unpack[CreateCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """CreateCustomKeyStore: a new store, DISCONNECTED until ConnectCustomKeyStore."""
        return await self._invoke("CreateCustomKeyStore", request)

    async def create_grant(self, **request: Unpack[CreateGrantRequest]) -> dict[str, Any]:
        """CreateGrant: let a principal use the key for some operations."""
        return await self._invoke("CreateGrant", request)

    async def create_key(self, **request: Unpack[CreateKeyRequest]) -> dict[str, Any]:
        """CreateKey: a new key of any supported key spec, with fresh material."""
        return await self._invoke("CreateKey", request)

    async def create_user(self, **request: Unpack[CreateUserRequest]) -> dict[str, Any]:
        """CreateUser: a user with one access key; the secret is in this response only."""
        return await self._invoke("CreateUser", request)

    async def decapsulate(self, **request: Unpack[DecapsulateRequest]) -> dict[str, Any]:
        """Decapsulate: the shared secret of a ciphertext made by Encapsulate."""
        return await self._invoke("Decapsulate", request)

    async def decrypt(self, **request: Unpack[DecryptRequest]) -> dict[str, Any]:
        """Decrypt: a blob made by Encrypt or GenerateDataKey; KeyId is optional."""
        return await self._invoke("Decrypt", request)

    async def decrypt_many(self, **request: Unpack[DecryptManyRequest]) -> dict[str, Any]:
        """DecryptMany: many blobs in one call; each item succeeds or fails alone."""
        return await self._invoke("DecryptMany", request)

    async def delete_alias(self, **request: Unpack[DeleteAliasRequest]) -> dict[str, Any]:
        """DeleteAlias."""
        return await self._invoke("DeleteAlias", request)

    async def delete_custom_key_store(
        self, **request: Unpack[DeleteCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """DeleteCustomKeyStore: only a disconnected store that holds no keys."""
        return await self._invoke("DeleteCustomKeyStore", request)

    async def delete_imported_key_material(
        self, **request: Unpack[DeleteImportedKeyMaterialRequest]
    ) -> dict[str, Any]:
        """DeleteImportedKeyMaterial: the material goes; the key waits for it again."""
        return await self._invoke("DeleteImportedKeyMaterial", request)

    async def delete_user(self, **request: Unpack[DeleteUserRequest]) -> dict[str, Any]:
        """DeleteUser: remove a user and its access keys; it can no longer call."""
        return await self._invoke("DeleteUser", request)

    async def derive_shared_secret(
        self, **request: Unpack[DeriveSharedSecretRequest]
    ) -> dict[str, Any]:
        """DeriveSharedSecret: the raw ECDH secret of the key and a peer public key."""
        return await self._invoke("DeriveSharedSecret", request)

    async def describe_custom_key_stores(
        self, **request: Unpack[DescribeCustomKeyStoresRequest]
    ) -> dict[str, Any]:
        """DescribeCustomKeyStores: one store by id or name, or all of them, paged."""
        return await self._invoke("DescribeCustomKeyStores", request)

    async def describe_key(self, **request: Unpack[DescribeKeyRequest]) -> dict[str, Any]:
        """DescribeKey: the key's metadata, in any state (aliases accepted)."""
        return await self._invoke("DescribeKey", request)

    async def disable_key(self, **request: Unpack[DisableKeyRequest]) -> dict[str, Any]:
        """DisableKey: Enabled to Disabled; the key then refuses all crypto."""
        return await self._invoke("DisableKey", request)

    async def disable_key_rotation(
        self, **request: Unpack[DisableKeyRotationRequest]
    ) -> dict[str, Any]:
        """DisableKeyRotation."""
        return await self._invoke("DisableKeyRotation", request)

    async def disconnect_custom_key_store(
        self, **request: Unpack[DisconnectCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """DisconnectCustomKeyStore: log out; the store's keys become Unavailable."""
        return await self._invoke("DisconnectCustomKeyStore", request)

    async def enable_key(self, **request: Unpack[EnableKeyRequest]) -> dict[str, Any]:
        """EnableKey: Disabled to Enabled (Enabled stays Enabled)."""
        return await self._invoke("EnableKey", request)

    async def enable_key_rotation(
        self, **request: Unpack[EnableKeyRotationRequest]
    ) -> dict[str, Any]:
        """EnableKeyRotation: rotate every RotationPeriodInDays (90-2560, default 365)."""
        return await self._invoke("EnableKeyRotation", request)

    async def encapsulate(self, **request: Unpack[EncapsulateRequest]) -> dict[str, Any]:
        """Encapsulate: a fresh shared secret and its ciphertext under an ML-KEM key."""
        return await self._invoke("Encapsulate", request)

    async def encrypt(self, **request: Unpack[EncryptRequest]) -> dict[str, Any]:
        """Encrypt: up to 4096 bytes under a symmetric key, or RSAES-OAEP with an RSA key."""
        return await self._invoke("Encrypt", request)

    async def generate_data_key(self, **request: Unpack[GenerateDataKeyRequest]) -> dict[str, Any]:
        """GenerateDataKey: a random data key, in plaintext and under the KMS key."""
        return await self._invoke("GenerateDataKey", request)

    async def generate_data_key_pair(
        self, **request: Unpack[GenerateDataKeyPairRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyPair: a key pair, the private key also under a symmetric key."""
        return await self._invoke("GenerateDataKeyPair", request)

    async def generate_data_key_pair_without_plaintext(
        self, **request: Unpack[GenerateDataKeyPairWithoutPlaintextRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyPairWithoutPlaintext: the public key and the encrypted private key."""
        return await self._invoke("GenerateDataKeyPairWithoutPlaintext", request)

    async def generate_data_key_without_plaintext(
        self, **request: Unpack[GenerateDataKeyWithoutPlaintextRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeyWithoutPlaintext: only the encrypted data key."""
        return await self._invoke("GenerateDataKeyWithoutPlaintext", request)

    async def generate_data_keys(
        self, **request: Unpack[GenerateDataKeysRequest]
    ) -> dict[str, Any]:
        """GenerateDataKeys: ``Count`` data keys under one KMS key and context."""
        return await self._invoke("GenerateDataKeys", request)

    async def generate_mac(self, **request: Unpack[GenerateMacRequest]) -> dict[str, Any]:
        """GenerateMac: the HMAC of a message under an HMAC key."""
        return await self._invoke("GenerateMac", request)

    async def generate_random(self, **request: Unpack[GenerateRandomRequest]) -> dict[str, Any]:
        """GenerateRandom: 1-1024 random bytes from the OS CSPRNG."""
        return await self._invoke("GenerateRandom", request)

    async def get_key_last_usage(self, **request: Unpack[GetKeyLastUsageRequest]) -> dict[str, Any]:
        """GetKeyLastUsage, from the audit trail (see the module docstring)."""
        return await self._invoke("GetKeyLastUsage", request)

    async def get_key_policy(self, **request: Unpack[GetKeyPolicyRequest]) -> dict[str, Any]:
        """GetKeyPolicy: the key's policy document."""
        return await self._invoke("GetKeyPolicy", request)

    async def get_key_rotation_status(
        self, **request: Unpack[GetKeyRotationStatusRequest]
    ) -> dict[str, Any]:
        """GetKeyRotationStatus."""
        return await self._invoke("GetKeyRotationStatus", request)

    async def get_parameters_for_import(
        self, **request: Unpack[GetParametersForImportRequest]
    ) -> dict[str, Any]:
        """GetParametersForImport: a fresh RSA wrapping key and its one-use import token."""
        return await self._invoke("GetParametersForImport", request)

    async def get_public_key(self, **request: Unpack[GetPublicKeyRequest]) -> dict[str, Any]:
        """GetPublicKey: the DER SubjectPublicKeyInfo of an asymmetric key."""
        return await self._invoke("GetPublicKey", request)

    async def import_key_material(
        self, **request: Unpack[ImportKeyMaterialRequest]
    ) -> dict[str, Any]:
        """ImportKeyMaterial: unwrap material with a token's wrapping key and store it."""
        return await self._invoke("ImportKeyMaterial", request)

    async def list_aliases(self, **request: Unpack[ListAliasesRequest]) -> dict[str, Any]:
        """ListAliases: all aliases, or one key's, in name order, paged."""
        return await self._invoke("ListAliases", request)

    async def list_grants(self, **request: Unpack[ListGrantsRequest]) -> dict[str, Any]:
        """ListGrants: a key's grants, optionally one grant or one grantee's, paged."""
        return await self._invoke("ListGrants", request)

    async def list_key_policies(self, **request: Unpack[ListKeyPoliciesRequest]) -> dict[str, Any]:
        """ListKeyPolicies: always the one name ``default``."""
        return await self._invoke("ListKeyPolicies", request)

    async def list_key_rotations(
        self, **request: Unpack[ListKeyRotationsRequest]
    ) -> dict[str, Any]:
        """ListKeyRotations: completed rotations, oldest first, paged."""
        return await self._invoke("ListKeyRotations", request)

    async def list_keys(self, **request: Unpack[ListKeysRequest]) -> dict[str, Any]:
        """ListKeys: key ids and ARNs, paged."""
        return await self._invoke("ListKeys", request)

    async def list_resource_tags(
        self, **request: Unpack[ListResourceTagsRequest]
    ) -> dict[str, Any]:
        """ListResourceTags: a key's tags in tag key order, paged."""
        return await self._invoke("ListResourceTags", request)

    async def list_retirable_grants(
        self, **request: Unpack[ListRetirableGrantsRequest]
    ) -> dict[str, Any]:
        """ListRetirableGrants: grants naming a principal as their retiring principal."""
        return await self._invoke("ListRetirableGrants", request)

    async def list_users(self, **request: Unpack[ListUsersRequest]) -> dict[str, Any]:
        """ListUsers: every user of this KMS, by name."""
        return await self._invoke("ListUsers", request)

    async def put_key_policy(self, **request: Unpack[PutKeyPolicyRequest]) -> dict[str, Any]:
        """PutKeyPolicy: replace the key's policy, refusing one that locks the caller out."""
        return await self._invoke("PutKeyPolicy", request)

    async def re_encrypt(self, **request: Unpack[ReEncryptRequest]) -> dict[str, Any]:
        """ReEncrypt: decrypt under one key and context, encrypt under another."""
        return await self._invoke("ReEncrypt", request)

    async def replicate_key(self, **request: Unpack[ReplicateKeyRequest]) -> dict[str, Any]:
        """ReplicateKey: a replica of a multi-Region primary key in another Region."""
        return await self._invoke("ReplicateKey", request)

    async def retire_grant(self, **request: Unpack[RetireGrantRequest]) -> dict[str, Any]:
        """RetireGrant: by token, or by KeyId and GrantId; for the grant's own parties."""
        return await self._invoke("RetireGrant", request)

    async def revoke_grant(self, **request: Unpack[RevokeGrantRequest]) -> dict[str, Any]:
        """RevokeGrant: delete a grant, with kms:RevokeGrant permission on the key."""
        return await self._invoke("RevokeGrant", request)

    async def rotate_key_on_demand(
        self, **request: Unpack[RotateKeyOnDemandRequest]
    ) -> dict[str, Any]:
        """RotateKeyOnDemand: a new material version now (at most 25 per key)."""
        return await self._invoke("RotateKeyOnDemand", request)

    async def schedule_key_deletion(
        self, **request: Unpack[ScheduleKeyDeletionRequest]
    ) -> dict[str, Any]:
        """ScheduleKeyDeletion: PendingDeletion for 7-30 days, then deleted for good."""
        return await self._invoke("ScheduleKeyDeletion", request)

    async def sign(self, **request: Unpack[SignRequest]) -> dict[str, Any]:
        """Sign: a signature over a message (RAW) or its digest (DIGEST)."""
        return await self._invoke("Sign", request)

    async def tag_resource(self, **request: Unpack[TagResourceRequest]) -> dict[str, Any]:
        """TagResource: add or overwrite tags."""
        return await self._invoke("TagResource", request)

    async def tag_user(self, **request: Unpack[TagUserRequest]) -> dict[str, Any]:
        """TagUser: add or overwrite tags of a user (keys case-insensitive); policies see them."""
        return await self._invoke("TagUser", request)

    async def untag_resource(self, **request: Unpack[UntagResourceRequest]) -> dict[str, Any]:
        """UntagResource: remove tags by key; absent keys are ignored."""
        return await self._invoke("UntagResource", request)

    async def untag_user(self, **request: Unpack[UntagUserRequest]) -> dict[str, Any]:
        """UntagUser: remove tags of a user by key (case-insensitive); absent keys are ignored."""
        return await self._invoke("UntagUser", request)

    async def update_alias(self, **request: Unpack[UpdateAliasRequest]) -> dict[str, Any]:
        """UpdateAlias: point an alias at another key of the same type and usage."""
        return await self._invoke("UpdateAlias", request)

    async def update_custom_key_store(
        self, **request: Unpack[UpdateCustomKeyStoreRequest]
    ) -> dict[str, Any]:
        """UpdateCustomKeyStore: a new name (any state); a new PIN or cluster (disconnected)."""
        return await self._invoke("UpdateCustomKeyStore", request)

    async def update_key_description(
        self, **request: Unpack[UpdateKeyDescriptionRequest]
    ) -> dict[str, Any]:
        """UpdateKeyDescription."""
        return await self._invoke("UpdateKeyDescription", request)

    async def update_primary_region(
        self, **request: Unpack[UpdatePrimaryRegionRequest]
    ) -> dict[str, Any]:
        """UpdatePrimaryRegion: make the replica in PrimaryRegion the primary key."""
        return await self._invoke("UpdatePrimaryRegion", request)

    async def verify(self, **request: Unpack[VerifyRequest]) -> dict[str, Any]:
        """Verify: KMSInvalidSignatureException unless the signature is valid."""
        return await self._invoke("Verify", request)

    async def verify_mac(self, **request: Unpack[VerifyMacRequest]) -> dict[str, Any]:
        """VerifyMac: KMSInvalidMacException unless the MAC is valid (constant time)."""
        return await self._invoke("VerifyMac", request)
