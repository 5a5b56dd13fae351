import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEER_STATE_UNSPECIFIED: _ClassVar[PeerState]
    PEER_STATE_CONNECTING: _ClassVar[PeerState]
    PEER_STATE_CONNECTED: _ClassVar[PeerState]
    PEER_STATE_DISCONNECTED: _ClassVar[PeerState]
    PEER_STATE_REFUSED: _ClassVar[PeerState]
    PEER_STATE_KEY_CHANGED: _ClassVar[PeerState]
PEER_STATE_UNSPECIFIED: PeerState
PEER_STATE_CONNECTING: PeerState
PEER_STATE_CONNECTED: PeerState
PEER_STATE_DISCONNECTED: PeerState
PEER_STATE_REFUSED: PeerState
PEER_STATE_KEY_CHANGED: PeerState

class VersionDifference(_message.Message):
    __slots__ = ("field", "local", "remote", "blocking", "message")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    local: str
    remote: str
    blocking: bool
    message: str
    def __init__(self, field: _Optional[str] = ..., local: _Optional[str] = ..., remote: _Optional[str] = ..., blocking: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class PeerVersions(_message.Message):
    __slots__ = ("sparkd", "frameworks", "nccl_sha256", "driver", "cuda", "kernel")
    SPARKD_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    NCCL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    CUDA_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    sparkd: str
    frameworks: _containers.RepeatedScalarFieldContainer[str]
    nccl_sha256: str
    driver: str
    cuda: str
    kernel: str
    def __init__(self, sparkd: _Optional[str] = ..., frameworks: _Optional[_Iterable[str]] = ..., nccl_sha256: _Optional[str] = ..., driver: _Optional[str] = ..., cuda: _Optional[str] = ..., kernel: _Optional[str] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("node_id", "name", "role", "address", "state", "sparkd_version", "last_seen_time", "rtt_us", "last_error", "index", "versions", "differences", "epoch", "protocol_version", "boot_id", "key_fingerprint")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPARKD_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    RTT_US_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    role: _node_pb2.NodeRole
    address: str
    state: PeerState
    sparkd_version: str
    last_seen_time: _timestamp_pb2.Timestamp
    rtt_us: int
    last_error: str
    index: int
    versions: PeerVersions
    differences: _containers.RepeatedCompositeFieldContainer[VersionDifference]
    epoch: int
    protocol_version: int
    boot_id: str
    key_fingerprint: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[_node_pb2.NodeRole, str]] = ..., address: _Optional[str] = ..., state: _Optional[_Union[PeerState, str]] = ..., sparkd_version: _Optional[str] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rtt_us: _Optional[int] = ..., last_error: _Optional[str] = ..., index: _Optional[int] = ..., versions: _Optional[_Union[PeerVersions, _Mapping]] = ..., differences: _Optional[_Iterable[_Union[VersionDifference, _Mapping]]] = ..., epoch: _Optional[int] = ..., protocol_version: _Optional[int] = ..., boot_id: _Optional[str] = ..., key_fingerprint: _Optional[str] = ...) -> None: ...
