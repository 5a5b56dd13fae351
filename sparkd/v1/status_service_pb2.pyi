from sparkd.v1 import deployment_pb2 as _deployment_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from sparkd.v1 import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("node", "peers", "deployments", "host")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.Node
    peers: _containers.RepeatedCompositeFieldContainer[_peer_pb2.Peer]
    deployments: _containers.RepeatedCompositeFieldContainer[_deployment_pb2.Deployment]
    host: HostStatus
    def __init__(self, node: _Optional[_Union[_node_pb2.Node, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[_peer_pb2.Peer, _Mapping]]] = ..., deployments: _Optional[_Iterable[_Union[_deployment_pb2.Deployment, _Mapping]]] = ..., host: _Optional[_Union[HostStatus, _Mapping]] = ...) -> None: ...

class HostStatus(_message.Message):
    __slots__ = ("committed", "drift", "pending_until")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    PENDING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    drift: _containers.RepeatedScalarFieldContainer[str]
    pending_until: float
    def __init__(self, committed: _Optional[bool] = ..., drift: _Optional[_Iterable[str]] = ..., pending_until: _Optional[float] = ...) -> None: ...
