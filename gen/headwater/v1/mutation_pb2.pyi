from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from headwater.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MutationRecord(_message.Message):
    __slots__ = ("upstream_id", "data")
    UPSTREAM_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    upstream_id: str
    data: _struct_pb2.Struct
    def __init__(self, upstream_id: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RunMutationRequest(_message.Message):
    __slots__ = ("kind", "sync_id", "collection_id", "records", "data", "upstream_ids", "await_consumer_ids", "await_consumers_timeout", "idempotency_key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_IDS_FIELD_NUMBER: _ClassVar[int]
    AWAIT_CONSUMER_IDS_FIELD_NUMBER: _ClassVar[int]
    AWAIT_CONSUMERS_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    sync_id: str
    collection_id: str
    records: _containers.RepeatedCompositeFieldContainer[MutationRecord]
    data: _containers.RepeatedCompositeFieldContainer[MutationRecord]
    upstream_ids: _containers.RepeatedScalarFieldContainer[str]
    await_consumer_ids: _containers.RepeatedScalarFieldContainer[str]
    await_consumers_timeout: int
    idempotency_key: str
    def __init__(self, kind: _Optional[str] = ..., sync_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[MutationRecord, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[MutationRecord, _Mapping]]] = ..., upstream_ids: _Optional[_Iterable[str]] = ..., await_consumer_ids: _Optional[_Iterable[str]] = ..., await_consumers_timeout: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RunMutationResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.Record]
    def __init__(self, records: _Optional[_Iterable[_Union[_common_pb2.Record, _Mapping]]] = ...) -> None: ...

class MutationFailure(_message.Message):
    __slots__ = ("applied", "failed")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    applied: _containers.RepeatedCompositeFieldContainer[_common_pb2.Record]
    failed: _containers.RepeatedCompositeFieldContainer[FailedMutationRecord]
    def __init__(self, applied: _Optional[_Iterable[_Union[_common_pb2.Record, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[FailedMutationRecord, _Mapping]]] = ...) -> None: ...

class FailedMutationRecord(_message.Message):
    __slots__ = ("index", "upstream_id", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    upstream_id: str
    error: str
    def __init__(self, index: _Optional[int] = ..., upstream_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
