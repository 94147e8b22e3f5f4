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

class EndUser(_message.Message):
    __slots__ = ("id", "email", "display_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    email: str
    display_name: str
    def __init__(self, id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class ConnectSession(_message.Message):
    __slots__ = ("id", "token", "connect_url", "expires_at", "end_user", "allowed_integrations", "redirect_url", "integration_properties")
    class IntegrationPropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONNECT_URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    connect_url: str
    expires_at: _timestamp_pb2.Timestamp
    end_user: EndUser
    allowed_integrations: _containers.RepeatedScalarFieldContainer[str]
    redirect_url: str
    integration_properties: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., connect_url: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_user: _Optional[_Union[EndUser, _Mapping]] = ..., allowed_integrations: _Optional[_Iterable[str]] = ..., redirect_url: _Optional[str] = ..., integration_properties: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class CreateConnectSessionRequest(_message.Message):
    __slots__ = ("end_user", "allowed_integrations", "redirect_url", "integration_properties")
    class IntegrationPropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    END_USER_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    end_user: EndUser
    allowed_integrations: _containers.RepeatedScalarFieldContainer[str]
    redirect_url: str
    integration_properties: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, end_user: _Optional[_Union[EndUser, _Mapping]] = ..., allowed_integrations: _Optional[_Iterable[str]] = ..., redirect_url: _Optional[str] = ..., integration_properties: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class CreateConnectSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ConnectSession
    def __init__(self, session: _Optional[_Union[ConnectSession, _Mapping]] = ...) -> None: ...

class CreateConnectedUserSessionRequest(_message.Message):
    __slots__ = ("project_id", "integration", "redirect_url", "email", "display_name")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    integration: str
    redirect_url: str
    email: str
    display_name: str
    def __init__(self, project_id: _Optional[str] = ..., integration: _Optional[str] = ..., redirect_url: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class CreateConnectedUserSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ConnectSession
    def __init__(self, session: _Optional[_Union[ConnectSession, _Mapping]] = ...) -> None: ...

class ConnectSettings(_message.Message):
    __slots__ = ("allowed_redirect_origins", "updated_at")
    ALLOWED_REDIRECT_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    allowed_redirect_origins: _containers.RepeatedScalarFieldContainer[str]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, allowed_redirect_origins: _Optional[_Iterable[str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetConnectSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConnectSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ConnectSettings
    def __init__(self, settings: _Optional[_Union[ConnectSettings, _Mapping]] = ...) -> None: ...

class UpdateConnectSettingsRequest(_message.Message):
    __slots__ = ("settings", "update_mask")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    settings: ConnectSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, settings: _Optional[_Union[ConnectSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateConnectSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ConnectSettings
    def __init__(self, settings: _Optional[_Union[ConnectSettings, _Mapping]] = ...) -> None: ...
