from sparkd.v1 import event_pb2 as _event_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_position", "stream_id", "follow", "kinds")
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    after_position: int
    stream_id: str
    follow: bool
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_position: _Optional[int] = ..., stream_id: _Optional[str] = ..., follow: _Optional[bool] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event", "reset", "missed")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    event: _event_pb2.Event
    reset: bool
    missed: int
    def __init__(self, event: _Optional[_Union[_event_pb2.Event, _Mapping]] = ..., reset: _Optional[bool] = ..., missed: _Optional[int] = ...) -> None: ...
