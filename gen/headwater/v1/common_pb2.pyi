from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RateLimit(_message.Message):
    __slots__ = ("allowed_requests", "interval", "max_concurrent_requests")
    ALLOWED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    allowed_requests: int
    interval: int
    max_concurrent_requests: int
    def __init__(self, allowed_requests: _Optional[int] = ..., interval: _Optional[int] = ..., max_concurrent_requests: _Optional[int] = ...) -> None: ...
