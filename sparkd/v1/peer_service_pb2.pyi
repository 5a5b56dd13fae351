import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from sparkd.v1 import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pairing(_message.Message):
    __slots__ = ("role", "index", "pinned", "open", "expire_time", "tries_left", "paired_peers")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIES_LEFT_FIELD_NUMBER: _ClassVar[int]
    PAIRED_PEERS_FIELD_NUMBER: _ClassVar[int]
    role: _node_pb2.NodeRole
    index: int
    pinned: bool
    open: bool
    expire_time: _timestamp_pb2.Timestamp
    tries_left: int
    paired_peers: int
    def __init__(self, role: _Optional[_Union[_node_pb2.NodeRole, str]] = ..., index: _Optional[int] = ..., pinned: _Optional[bool] = ..., open: _Optional[bool] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tries_left: _Optional[int] = ..., paired_peers: _Optional[int] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers", "pairing")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PAIRING_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[_peer_pb2.Peer]
    pairing: Pairing
    def __init__(self, peers: _Optional[_Iterable[_Union[_peer_pb2.Peer, _Mapping]]] = ..., pairing: _Optional[_Union[Pairing, _Mapping]] = ...) -> None: ...

class BeginPairingRequest(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    def __init__(self, ttl_seconds: _Optional[int] = ...) -> None: ...

class BeginPairingResponse(_message.Message):
    __slots__ = ("token", "node_id", "expire_time", "join_command")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    JOIN_COMMAND_FIELD_NUMBER: _ClassVar[int]
    token: str
    node_id: str
    expire_time: _timestamp_pb2.Timestamp
    join_command: str
    def __init__(self, token: _Optional[str] = ..., node_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., join_command: _Optional[str] = ...) -> None: ...

class JoinPairingRequest(_message.Message):
    __slots__ = ("head_node_id", "token", "timeout_seconds")
    HEAD_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    head_node_id: str
    token: str
    timeout_seconds: int
    def __init__(self, head_node_id: _Optional[str] = ..., token: _Optional[str] = ..., timeout_seconds: _Optional[int] = ...) -> None: ...

class JoinPairingResponse(_message.Message):
    __slots__ = ("head", "index")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    head: _peer_pb2.Peer
    index: int
    def __init__(self, head: _Optional[_Union[_peer_pb2.Peer, _Mapping]] = ..., index: _Optional[int] = ...) -> None: ...

class ResetPairingRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class ResetPairingResponse(_message.Message):
    __slots__ = ("forgotten",)
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    forgotten: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, forgotten: _Optional[_Iterable[str]] = ...) -> None: ...
