import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEER_STATE_UNSPECIFIED: _ClassVar[PeerState]
    PEER_STATE_CONNECTING: _ClassVar[PeerState]
    PEER_STATE_CONNECTED: _ClassVar[PeerState]
    PEER_STATE_DISCONNECTED: _ClassVar[PeerState]
    PEER_STATE_REFUSED: _ClassVar[PeerState]
PEER_STATE_UNSPECIFIED: PeerState
PEER_STATE_CONNECTING: PeerState
PEER_STATE_CONNECTED: PeerState
PEER_STATE_DISCONNECTED: PeerState
PEER_STATE_REFUSED: PeerState

class Peer(_message.Message):
    __slots__ = ("node_id", "name", "role", "address", "state", "sparkd_version", "last_seen_time", "rtt_us", "last_error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPARKD_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    RTT_US_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    role: _node_pb2.NodeRole
    address: str
    state: PeerState
    sparkd_version: str
    last_seen_time: _timestamp_pb2.Timestamp
    rtt_us: int
    last_error: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[_node_pb2.NodeRole, str]] = ..., address: _Optional[str] = ..., state: _Optional[_Union[PeerState, str]] = ..., sparkd_version: _Optional[str] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rtt_us: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...
