import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from headwater.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsumerFilter(_message.Message):
    __slots__ = ("sync_id", "collection_id", "record_id")
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    sync_id: str
    collection_id: str
    record_id: str
    def __init__(self, sync_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., record_id: _Optional[str] = ...) -> None: ...

class Consumer(_message.Message):
    __slots__ = ("id", "org_id", "name", "stream_id", "filters", "deliver_policy", "ack_wait_ms", "max_deliver", "max_ack_pending", "kind", "webhook_url", "webhook_secret", "created_at", "updated_at", "webhook_batch_size", "health", "backlog")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    DELIVER_POLICY_FIELD_NUMBER: _ClassVar[int]
    ACK_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVER_FIELD_NUMBER: _ClassVar[int]
    MAX_ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    name: str
    stream_id: str
    filters: _containers.RepeatedCompositeFieldContainer[ConsumerFilter]
    deliver_policy: str
    ack_wait_ms: int
    max_deliver: int
    max_ack_pending: int
    kind: str
    webhook_url: str
    webhook_secret: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    webhook_batch_size: int
    health: ConsumerHealth
    backlog: ConsumerBacklog
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., name: _Optional[str] = ..., stream_id: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[ConsumerFilter, _Mapping]]] = ..., deliver_policy: _Optional[str] = ..., ack_wait_ms: _Optional[int] = ..., max_deliver: _Optional[int] = ..., max_ack_pending: _Optional[int] = ..., kind: _Optional[str] = ..., webhook_url: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook_batch_size: _Optional[int] = ..., health: _Optional[_Union[ConsumerHealth, _Mapping]] = ..., backlog: _Optional[_Union[ConsumerBacklog, _Mapping]] = ...) -> None: ...

class ConsumerHealth(_message.Message):
    __slots__ = ("status", "last_error", "last_error_at", "dropped_messages")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    status: str
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    dropped_messages: int
    def __init__(self, status: _Optional[str] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dropped_messages: _Optional[int] = ...) -> None: ...

class ConsumerBacklog(_message.Message):
    __slots__ = ("num_pending", "num_ack_pending", "num_parked")
    NUM_PENDING_FIELD_NUMBER: _ClassVar[int]
    NUM_ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    NUM_PARKED_FIELD_NUMBER: _ClassVar[int]
    num_pending: int
    num_ack_pending: int
    num_parked: int
    def __init__(self, num_pending: _Optional[int] = ..., num_ack_pending: _Optional[int] = ..., num_parked: _Optional[int] = ...) -> None: ...

class ConsumerMessage(_message.Message):
    __slots__ = ("ack_token", "record", "action")
    ACK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ack_token: str
    record: _common_pb2.Record
    action: str
    def __init__(self, ack_token: _Optional[str] = ..., record: _Optional[_Union[_common_pb2.Record, _Mapping]] = ..., action: _Optional[str] = ...) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ("num_pending", "num_ack_pending")
    NUM_PENDING_FIELD_NUMBER: _ClassVar[int]
    NUM_ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    num_pending: int
    num_ack_pending: int
    def __init__(self, num_pending: _Optional[int] = ..., num_ack_pending: _Optional[int] = ...) -> None: ...

class ParkedMessage(_message.Message):
    __slots__ = ("id", "record", "action", "deliver_count", "last_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DELIVER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    record: _common_pb2.Record
    action: str
    deliver_count: int
    last_error: str
    def __init__(self, id: _Optional[str] = ..., record: _Optional[_Union[_common_pb2.Record, _Mapping]] = ..., action: _Optional[str] = ..., deliver_count: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class CreateConsumerRequest(_message.Message):
    __slots__ = ("consumer",)
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: Consumer
    def __init__(self, consumer: _Optional[_Union[Consumer, _Mapping]] = ...) -> None: ...

class CreateConsumerResponse(_message.Message):
    __slots__ = ("consumer",)
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: Consumer
    def __init__(self, consumer: _Optional[_Union[Consumer, _Mapping]] = ...) -> None: ...

class GetConsumerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetConsumerResponse(_message.Message):
    __slots__ = ("consumer",)
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: Consumer
    def __init__(self, consumer: _Optional[_Union[Consumer, _Mapping]] = ...) -> None: ...

class ListConsumersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConsumersResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Consumer]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[Consumer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateConsumerRequest(_message.Message):
    __slots__ = ("id", "consumer", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    consumer: Consumer
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., consumer: _Optional[_Union[Consumer, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateConsumerResponse(_message.Message):
    __slots__ = ("consumer",)
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: Consumer
    def __init__(self, consumer: _Optional[_Union[Consumer, _Mapping]] = ...) -> None: ...

class DeleteConsumerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteConsumerResponse(_message.Message):
    __slots__ = ("id", "deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    deleted: bool
    def __init__(self, id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class NextRequest(_message.Message):
    __slots__ = ("id", "batch_size", "wait_for")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    batch_size: int
    wait_for: int
    def __init__(self, id: _Optional[str] = ..., batch_size: _Optional[int] = ..., wait_for: _Optional[int] = ...) -> None: ...

class NextResponse(_message.Message):
    __slots__ = ("data", "info")
    DATA_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[ConsumerMessage]
    info: ConsumerInfo
    def __init__(self, data: _Optional[_Iterable[_Union[ConsumerMessage, _Mapping]]] = ..., info: _Optional[_Union[ConsumerInfo, _Mapping]] = ...) -> None: ...

class ReceiveRequest(_message.Message):
    __slots__ = ("id", "batch_size")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    batch_size: int
    def __init__(self, id: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ReceiveResponse(_message.Message):
    __slots__ = ("data", "info")
    DATA_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[ConsumerMessage]
    info: ConsumerInfo
    def __init__(self, data: _Optional[_Iterable[_Union[ConsumerMessage, _Mapping]]] = ..., info: _Optional[_Union[ConsumerInfo, _Mapping]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("id", "ack_tokens")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    id: str
    ack_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., ack_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ("success", "acked", "unknown_ack_tokens")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ACK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    acked: int
    unknown_ack_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, success: _Optional[bool] = ..., acked: _Optional[int] = ..., unknown_ack_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("id", "ack_tokens", "delay_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    ack_tokens: _containers.RepeatedScalarFieldContainer[str]
    delay_ms: int
    def __init__(self, id: _Optional[str] = ..., ack_tokens: _Optional[_Iterable[str]] = ..., delay_ms: _Optional[int] = ...) -> None: ...

class NackResponse(_message.Message):
    __slots__ = ("success", "nacked", "unknown_ack_tokens")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    NACKED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ACK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    nacked: int
    unknown_ack_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, success: _Optional[bool] = ..., nacked: _Optional[int] = ..., unknown_ack_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class ListParkedMessagesRequest(_message.Message):
    __slots__ = ("id", "page_size", "page_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    page_size: int
    page_token: str
    def __init__(self, id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListParkedMessagesResponse(_message.Message):
    __slots__ = ("data", "next_page_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[ParkedMessage]
    next_page_token: str
    def __init__(self, data: _Optional[_Iterable[_Union[ParkedMessage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedeliverParkedMessagesRequest(_message.Message):
    __slots__ = ("id", "message_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RedeliverParkedMessagesResponse(_message.Message):
    __slots__ = ("redelivered",)
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    redelivered: int
    def __init__(self, redelivered: _Optional[int] = ...) -> None: ...
