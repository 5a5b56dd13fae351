from sparkd.v1 import deployment_pb2 as _deployment_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeHello(_message.Message):
    __slots__ = ("node_id", "name", "role", "index", "address", "sparkd_version", "protocol_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SPARKD_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    role: _node_pb2.NodeRole
    index: int
    address: str
    sparkd_version: str
    protocol_version: int
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[_node_pb2.NodeRole, str]] = ..., index: _Optional[int] = ..., address: _Optional[str] = ..., sparkd_version: _Optional[str] = ..., protocol_version: _Optional[int] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("node", "deployments")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    node: NodeHello
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentSummary]
    def __init__(self, node: _Optional[_Union[NodeHello, _Mapping]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentSummary, _Mapping]]] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("node", "deployments")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    node: NodeHello
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentSummary]
    def __init__(self, node: _Optional[_Union[NodeHello, _Mapping]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentSummary, _Mapping]]] = ...) -> None: ...

class DeploymentSummary(_message.Message):
    __slots__ = ("name", "state", "unit", "unit_active_state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: _deployment_pb2.DeploymentState
    unit: str
    unit_active_state: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[_deployment_pb2.DeploymentState, str]] = ..., unit: _Optional[str] = ..., unit_active_state: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("rank", "nnodes", "master_addr", "master_port")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NNODES_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    rank: int
    nnodes: int
    master_addr: str
    master_port: int
    def __init__(self, rank: _Optional[int] = ..., nnodes: _Optional[int] = ..., master_addr: _Optional[str] = ..., master_port: _Optional[int] = ...) -> None: ...

class StartPartRequest(_message.Message):
    __slots__ = ("spec", "assignment")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    assignment: Assignment
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class StartPartResponse(_message.Message):
    __slots__ = ("unit", "unit_active_state")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    unit_active_state: str
    def __init__(self, unit: _Optional[str] = ..., unit_active_state: _Optional[str] = ...) -> None: ...

class StopPartRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopPartResponse(_message.Message):
    __slots__ = ("unit",)
    UNIT_FIELD_NUMBER: _ClassVar[int]
    unit: str
    def __init__(self, unit: _Optional[str] = ...) -> None: ...
