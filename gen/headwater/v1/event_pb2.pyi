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

class EventEndpoint(_message.Message):
    __slots__ = ("id", "org_id", "url", "event_types", "secret", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    url: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    secret: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., url: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., secret: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "type", "created_at", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    created_at: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ParkedEvent(_message.Message):
    __slots__ = ("id", "event", "deliver_count", "last_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DELIVER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    event: Event
    deliver_count: int
    last_error: str
    def __init__(self, id: _Optional[str] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., deliver_count: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class CreateEventEndpointRequest(_message.Message):
    __slots__ = ("event_endpoint",)
    EVENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    event_endpoint: EventEndpoint
    def __init__(self, event_endpoint: _Optional[_Union[EventEndpoint, _Mapping]] = ...) -> None: ...

class CreateEventEndpointResponse(_message.Message):
    __slots__ = ("event_endpoint",)
    EVENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    event_endpoint: EventEndpoint
    def __init__(self, event_endpoint: _Optional[_Union[EventEndpoint, _Mapping]] = ...) -> None: ...

class GetEventEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetEventEndpointResponse(_message.Message):
    __slots__ = ("event_endpoint",)
    EVENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    event_endpoint: EventEndpoint
    def __init__(self, event_endpoint: _Optional[_Union[EventEndpoint, _Mapping]] = ...) -> None: ...

class ListEventEndpointsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventEndpointsResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[EventEndpoint]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[EventEndpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateEventEndpointRequest(_message.Message):
    __slots__ = ("id", "event_endpoint", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    event_endpoint: EventEndpoint
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., event_endpoint: _Optional[_Union[EventEndpoint, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateEventEndpointResponse(_message.Message):
    __slots__ = ("event_endpoint",)
    EVENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    event_endpoint: EventEndpoint
    def __init__(self, event_endpoint: _Optional[_Union[EventEndpoint, _Mapping]] = ...) -> None: ...

class DeleteEventEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteEventEndpointResponse(_message.Message):
    __slots__ = ("id", "deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    deleted: bool
    def __init__(self, id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class ListParkedEventsRequest(_message.Message):
    __slots__ = ("id", "page_size", "page_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    page_size: int
    page_token: str
    def __init__(self, id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListParkedEventsResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[ParkedEvent]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[ParkedEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedeliverParkedEventsRequest(_message.Message):
    __slots__ = ("id", "parked_event_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARKED_EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    parked_event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., parked_event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RedeliverParkedEventsResponse(_message.Message):
    __slots__ = ("redelivered",)
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    redelivered: int
    def __init__(self, redelivered: _Optional[int] = ...) -> None: ...
