import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateLimit(_message.Message):
    __slots__ = ("allowed_requests", "interval", "max_concurrent_requests", "windows")
    ALLOWED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    allowed_requests: int
    interval: int
    max_concurrent_requests: int
    windows: _containers.RepeatedCompositeFieldContainer[RateWindow]
    def __init__(self, allowed_requests: _Optional[int] = ..., interval: _Optional[int] = ..., max_concurrent_requests: _Optional[int] = ..., windows: _Optional[_Iterable[_Union[RateWindow, _Mapping]]] = ...) -> None: ...

class RateWindow(_message.Message):
    __slots__ = ("allowed_requests", "interval")
    ALLOWED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    allowed_requests: int
    interval: int
    def __init__(self, allowed_requests: _Optional[int] = ..., interval: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("id", "sync_id", "collection_id", "upstream_id", "upstream_updated_at", "data", "deleted", "inserted_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    INSERTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    sync_id: str
    collection_id: str
    upstream_id: str
    upstream_updated_at: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    deleted: bool
    inserted_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., sync_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., upstream_id: _Optional[str] = ..., upstream_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., deleted: _Optional[bool] = ..., inserted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
