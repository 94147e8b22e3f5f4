import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from headwater.v1 import common_pb2 as _common_pb2
from headwater.v1 import credential_pb2 as _credential_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sync(_message.Message):
    __slots__ = ("id", "provider", "stream_id", "name", "status", "org_id", "health", "collection_ids", "rate_limit", "credential_id", "credential", "max_age_days", "sync_frequency", "initial_backfill_completed_at", "metadata", "external_id", "created_at", "updated_at", "progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    SYNC_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKFILL_COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    stream_id: str
    name: str
    status: str
    org_id: str
    health: SyncHealth
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    rate_limit: _common_pb2.RateLimit
    credential_id: str
    credential: _credential_pb2.Credential
    max_age_days: int
    sync_frequency: str
    initial_backfill_completed_at: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    external_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    progress: _containers.RepeatedCompositeFieldContainer[CollectionProgress]
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[str] = ..., stream_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., org_id: _Optional[str] = ..., health: _Optional[_Union[SyncHealth, _Mapping]] = ..., collection_ids: _Optional[_Iterable[str]] = ..., rate_limit: _Optional[_Union[_common_pb2.RateLimit, _Mapping]] = ..., credential_id: _Optional[str] = ..., credential: _Optional[_Union[_credential_pb2.Credential, _Mapping]] = ..., max_age_days: _Optional[int] = ..., sync_frequency: _Optional[str] = ..., initial_backfill_completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., external_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Iterable[_Union[CollectionProgress, _Mapping]]] = ...) -> None: ...

class CollectionProgress(_message.Message):
    __slots__ = ("collection_id", "backfill_state", "records_synced", "cursor", "health", "last_error", "last_error_at", "backfill_completed_at", "last_synced_at", "next_sync_at")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_STATE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_SYNCED_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNCED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_SYNC_AT_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    backfill_state: str
    records_synced: int
    cursor: _struct_pb2.Struct
    health: str
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    backfill_completed_at: _timestamp_pb2.Timestamp
    last_synced_at: _timestamp_pb2.Timestamp
    next_sync_at: _timestamp_pb2.Timestamp
    def __init__(self, collection_id: _Optional[str] = ..., backfill_state: _Optional[str] = ..., records_synced: _Optional[int] = ..., cursor: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., health: _Optional[str] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backfill_completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_synced_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_sync_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SyncHealth(_message.Message):
    __slots__ = ("status", "sync_id", "last_error", "last_error_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    status: str
    sync_id: str
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[str] = ..., sync_id: _Optional[str] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSyncRequest(_message.Message):
    __slots__ = ("sync",)
    SYNC_FIELD_NUMBER: _ClassVar[int]
    sync: Sync
    def __init__(self, sync: _Optional[_Union[Sync, _Mapping]] = ...) -> None: ...

class CreateSyncResponse(_message.Message):
    __slots__ = ("sync",)
    SYNC_FIELD_NUMBER: _ClassVar[int]
    sync: Sync
    def __init__(self, sync: _Optional[_Union[Sync, _Mapping]] = ...) -> None: ...

class GetSyncRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetSyncResponse(_message.Message):
    __slots__ = ("sync",)
    SYNC_FIELD_NUMBER: _ClassVar[int]
    sync: Sync
    def __init__(self, sync: _Optional[_Union[Sync, _Mapping]] = ...) -> None: ...

class ListSyncsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "external_id", "provider", "name", "health")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    external_id: str
    provider: str
    name: str
    health: SyncHealth
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., external_id: _Optional[str] = ..., provider: _Optional[str] = ..., name: _Optional[str] = ..., health: _Optional[_Union[SyncHealth, _Mapping]] = ...) -> None: ...

class ListSyncsResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Sync]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[Sync, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSyncRequest(_message.Message):
    __slots__ = ("id", "sync", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    sync: Sync
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., sync: _Optional[_Union[Sync, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSyncResponse(_message.Message):
    __slots__ = ("sync",)
    SYNC_FIELD_NUMBER: _ClassVar[int]
    sync: Sync
    def __init__(self, sync: _Optional[_Union[Sync, _Mapping]] = ...) -> None: ...

class DeleteSyncRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteSyncResponse(_message.Message):
    __slots__ = ("id", "deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    deleted: bool
    def __init__(self, id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...
