from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Provider(_message.Message):
    __slots__ = ("provider", "name", "base_url", "permitted_hosts", "credential_kinds", "collections", "default_rate_limits", "account_facts", "oauth")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    PERMITTED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_KINDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FACTS_FIELD_NUMBER: _ClassVar[int]
    OAUTH_FIELD_NUMBER: _ClassVar[int]
    provider: str
    name: str
    base_url: str
    permitted_hosts: _containers.RepeatedScalarFieldContainer[str]
    credential_kinds: _containers.RepeatedCompositeFieldContainer[CredentialKindInfo]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    default_rate_limits: _containers.RepeatedCompositeFieldContainer[RateLimitWindow]
    account_facts: AccountFacts
    oauth: OAuthInfo
    def __init__(self, provider: _Optional[str] = ..., name: _Optional[str] = ..., base_url: _Optional[str] = ..., permitted_hosts: _Optional[_Iterable[str]] = ..., credential_kinds: _Optional[_Iterable[_Union[CredentialKindInfo, _Mapping]]] = ..., collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ..., default_rate_limits: _Optional[_Iterable[_Union[RateLimitWindow, _Mapping]]] = ..., account_facts: _Optional[_Union[AccountFacts, _Mapping]] = ..., oauth: _Optional[_Union[OAuthInfo, _Mapping]] = ...) -> None: ...

class CredentialKindInfo(_message.Message):
    __slots__ = ("kind", "required", "secret", "auth", "auth_name", "verified", "base_url_property")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    AUTH_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    required: _containers.RepeatedCompositeFieldContainer[CredentialProperty]
    secret: _containers.RepeatedScalarFieldContainer[str]
    auth: str
    auth_name: str
    verified: bool
    base_url_property: str
    def __init__(self, kind: _Optional[str] = ..., required: _Optional[_Iterable[_Union[CredentialProperty, _Mapping]]] = ..., secret: _Optional[_Iterable[str]] = ..., auth: _Optional[str] = ..., auth_name: _Optional[str] = ..., verified: _Optional[bool] = ..., base_url_property: _Optional[str] = ...) -> None: ...

class CredentialProperty(_message.Message):
    __slots__ = ("name", "secret")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    name: str
    secret: bool
    def __init__(self, name: _Optional[str] = ..., secret: _Optional[bool] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("id", "name", "capabilities")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    capabilities: CollectionCapabilities
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., capabilities: _Optional[_Union[CollectionCapabilities, _Mapping]] = ...) -> None: ...

class CollectionCapabilities(_message.Message):
    __slots__ = ("read", "changes", "deletions", "create", "update", "delete")
    READ_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    read: bool
    changes: bool
    deletions: bool
    create: bool
    update: bool
    delete: bool
    def __init__(self, read: _Optional[bool] = ..., changes: _Optional[bool] = ..., deletions: _Optional[bool] = ..., create: _Optional[bool] = ..., update: _Optional[bool] = ..., delete: _Optional[bool] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("id", "name", "provider", "capabilities", "fields")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    provider: str
    capabilities: CollectionCapabilities
    fields: _containers.RepeatedCompositeFieldContainer[CollectionField]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., provider: _Optional[str] = ..., capabilities: _Optional[_Union[CollectionCapabilities, _Mapping]] = ..., fields: _Optional[_Iterable[_Union[CollectionField, _Mapping]]] = ...) -> None: ...

class CollectionField(_message.Message):
    __slots__ = ("name", "type", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RateLimitWindow(_message.Message):
    __slots__ = ("allowed_requests", "interval_seconds", "max_concurrent_requests")
    ALLOWED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    allowed_requests: int
    interval_seconds: int
    max_concurrent_requests: int
    def __init__(self, allowed_requests: _Optional[int] = ..., interval_seconds: _Optional[int] = ..., max_concurrent_requests: _Optional[int] = ...) -> None: ...

class AccountFacts(_message.Message):
    __slots__ = ("needed", "template_properties", "base_url_properties", "account_properties")
    NEEDED_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    needed: bool
    template_properties: _containers.RepeatedScalarFieldContainer[str]
    base_url_properties: _containers.RepeatedScalarFieldContainer[str]
    account_properties: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, needed: _Optional[bool] = ..., template_properties: _Optional[_Iterable[str]] = ..., base_url_properties: _Optional[_Iterable[str]] = ..., account_properties: _Optional[_Iterable[str]] = ...) -> None: ...

class OAuthInfo(_message.Message):
    __slots__ = ("credential_kind", "authorization_url", "token_url", "default_scopes", "scope_separator", "pkce")
    CREDENTIAL_KIND_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_URL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SCOPES_FIELD_NUMBER: _ClassVar[int]
    SCOPE_SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    PKCE_FIELD_NUMBER: _ClassVar[int]
    credential_kind: str
    authorization_url: str
    token_url: str
    default_scopes: _containers.RepeatedScalarFieldContainer[str]
    scope_separator: str
    pkce: bool
    def __init__(self, credential_kind: _Optional[str] = ..., authorization_url: _Optional[str] = ..., token_url: _Optional[str] = ..., default_scopes: _Optional[_Iterable[str]] = ..., scope_separator: _Optional[str] = ..., pkce: _Optional[bool] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Provider]
    def __init__(self, data: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ...) -> None: ...

class GetProviderRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class GetProviderResponse(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: Provider
    def __init__(self, provider: _Optional[_Union[Provider, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("collection_id",)
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    def __init__(self, collection_id: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...
