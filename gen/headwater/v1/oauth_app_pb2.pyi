import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OAuthClient(_message.Message):
    __slots__ = ("id", "org_id", "provider", "client_id", "client_secret", "scopes", "authorization_url", "token_url", "metadata", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_URL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    provider: str
    client_id: str
    client_secret: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    authorization_url: str
    token_url: str
    metadata: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., provider: _Optional[str] = ..., client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., authorization_url: _Optional[str] = ..., token_url: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOAuthAppRequest(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthClient
    def __init__(self, oauth_app: _Optional[_Union[OAuthClient, _Mapping]] = ...) -> None: ...

class CreateOAuthAppResponse(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthClient
    def __init__(self, oauth_app: _Optional[_Union[OAuthClient, _Mapping]] = ...) -> None: ...

class GetOAuthAppRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetOAuthAppResponse(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthClient
    def __init__(self, oauth_app: _Optional[_Union[OAuthClient, _Mapping]] = ...) -> None: ...

class ListOAuthAppsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "provider", "client_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    provider: str
    client_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., provider: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class ListOAuthAppsResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[OAuthClient]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[OAuthClient, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateOAuthAppRequest(_message.Message):
    __slots__ = ("id", "oauth_app", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    oauth_app: OAuthClient
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., oauth_app: _Optional[_Union[OAuthClient, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateOAuthAppResponse(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthClient
    def __init__(self, oauth_app: _Optional[_Union[OAuthClient, _Mapping]] = ...) -> None: ...

class DeleteOAuthAppRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteOAuthAppResponse(_message.Message):
    __slots__ = ("id", "deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    deleted: bool
    def __init__(self, id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...
