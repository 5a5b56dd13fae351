from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_ACTION_KIND_UNSPECIFIED: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_SET_MTU: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_ADD_ADDRESS: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_REMOVE_ADDRESS: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_SET_LINK_UP: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_WRITE_FILE: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_REMOVE_FILE: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_SET_QOS: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_LOAD_MODULE: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_OPEN_PORT: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_SET_HOSTNAME: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_SET_LINK_DOWN: _ClassVar[HostActionKind]
    HOST_ACTION_KIND_CLOSE_PORT: _ClassVar[HostActionKind]
HOST_ACTION_KIND_UNSPECIFIED: HostActionKind
HOST_ACTION_KIND_SET_MTU: HostActionKind
HOST_ACTION_KIND_ADD_ADDRESS: HostActionKind
HOST_ACTION_KIND_REMOVE_ADDRESS: HostActionKind
HOST_ACTION_KIND_SET_LINK_UP: HostActionKind
HOST_ACTION_KIND_WRITE_FILE: HostActionKind
HOST_ACTION_KIND_REMOVE_FILE: HostActionKind
HOST_ACTION_KIND_SET_QOS: HostActionKind
HOST_ACTION_KIND_LOAD_MODULE: HostActionKind
HOST_ACTION_KIND_OPEN_PORT: HostActionKind
HOST_ACTION_KIND_SET_HOSTNAME: HostActionKind
HOST_ACTION_KIND_SET_LINK_DOWN: HostActionKind
HOST_ACTION_KIND_CLOSE_PORT: HostActionKind

class HostAction(_message.Message):
    __slots__ = ("kind", "target", "current", "desired", "description", "component")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    kind: HostActionKind
    target: str
    current: str
    desired: str
    description: str
    component: str
    def __init__(self, kind: _Optional[_Union[HostActionKind, str]] = ..., target: _Optional[str] = ..., current: _Optional[str] = ..., desired: _Optional[str] = ..., description: _Optional[str] = ..., component: _Optional[str] = ...) -> None: ...

class HostTwin(_message.Message):
    __slots__ = ("netdev", "rdma_device", "address")
    NETDEV_FIELD_NUMBER: _ClassVar[int]
    RDMA_DEVICE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    netdev: str
    rdma_device: str
    address: str
    def __init__(self, netdev: _Optional[str] = ..., rdma_device: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class DesiredHost(_message.Message):
    __slots__ = ("twins", "mtu", "persist", "qos", "qos_priority", "qos_trust", "qos_tos", "peermem", "nccl", "hosts", "firewall_ports", "hostname", "existing", "takeover")
    TWINS_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    QOS_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QOS_TRUST_FIELD_NUMBER: _ClassVar[int]
    QOS_TOS_FIELD_NUMBER: _ClassVar[int]
    PEERMEM_FIELD_NUMBER: _ClassVar[int]
    NCCL_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    FIREWALL_PORTS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    TAKEOVER_FIELD_NUMBER: _ClassVar[int]
    twins: _containers.RepeatedCompositeFieldContainer[HostTwin]
    mtu: int
    persist: bool
    qos: bool
    qos_priority: int
    qos_trust: str
    qos_tos: int
    peermem: bool
    nccl: _containers.RepeatedScalarFieldContainer[str]
    hosts: _containers.RepeatedScalarFieldContainer[str]
    firewall_ports: _containers.RepeatedScalarFieldContainer[int]
    hostname: str
    existing: str
    takeover: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, twins: _Optional[_Iterable[_Union[HostTwin, _Mapping]]] = ..., mtu: _Optional[int] = ..., persist: _Optional[bool] = ..., qos: _Optional[bool] = ..., qos_priority: _Optional[int] = ..., qos_trust: _Optional[str] = ..., qos_tos: _Optional[int] = ..., peermem: _Optional[bool] = ..., nccl: _Optional[_Iterable[str]] = ..., hosts: _Optional[_Iterable[str]] = ..., firewall_ports: _Optional[_Iterable[int]] = ..., hostname: _Optional[str] = ..., existing: _Optional[str] = ..., takeover: _Optional[_Iterable[str]] = ...) -> None: ...

class HostTarget(_message.Message):
    __slots__ = ("desired_state", "accept_risk", "ssh_address")
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_RISK_FIELD_NUMBER: _ClassVar[int]
    SSH_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    desired_state: str
    accept_risk: str
    ssh_address: str
    def __init__(self, desired_state: _Optional[str] = ..., accept_risk: _Optional[str] = ..., ssh_address: _Optional[str] = ...) -> None: ...

class PlanHostRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: HostTarget
    def __init__(self, target: _Optional[_Union[HostTarget, _Mapping]] = ...) -> None: ...

class PlanHostResponse(_message.Message):
    __slots__ = ("changed", "actions", "desired", "notes")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[HostAction]
    desired: DesiredHost
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[HostAction, _Mapping]]] = ..., desired: _Optional[_Union[DesiredHost, _Mapping]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class ApplyHostRequest(_message.Message):
    __slots__ = ("dry_run", "target", "confirm_timeout_s", "cluster")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    target: HostTarget
    confirm_timeout_s: float
    cluster: bool
    def __init__(self, dry_run: _Optional[bool] = ..., target: _Optional[_Union[HostTarget, _Mapping]] = ..., confirm_timeout_s: _Optional[float] = ..., cluster: _Optional[bool] = ...) -> None: ...

class NodeHostResult(_message.Message):
    __slots__ = ("node", "changed", "actions", "error")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node: str
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[HostAction]
    error: str
    def __init__(self, node: _Optional[str] = ..., changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[HostAction, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class ApplyHostResponse(_message.Message):
    __slots__ = ("changed", "actions", "verified", "pending_until", "nodes", "desired")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    PENDING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[HostAction]
    verified: bool
    pending_until: float
    nodes: _containers.RepeatedCompositeFieldContainer[NodeHostResult]
    desired: DesiredHost
    def __init__(self, changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[HostAction, _Mapping]]] = ..., verified: _Optional[bool] = ..., pending_until: _Optional[float] = ..., nodes: _Optional[_Iterable[_Union[NodeHostResult, _Mapping]]] = ..., desired: _Optional[_Union[DesiredHost, _Mapping]] = ...) -> None: ...

class ConfirmHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfirmHostResponse(_message.Message):
    __slots__ = ("apply_id",)
    APPLY_ID_FIELD_NUMBER: _ClassVar[int]
    apply_id: str
    def __init__(self, apply_id: _Optional[str] = ...) -> None: ...

class RollbackHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RollbackHostResponse(_message.Message):
    __slots__ = ("apply_id",)
    APPLY_ID_FIELD_NUMBER: _ClassVar[int]
    apply_id: str
    def __init__(self, apply_id: _Optional[str] = ...) -> None: ...

class RestoreHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestoreHostResponse(_message.Message):
    __slots__ = ("restored",)
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    restored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, restored: _Optional[_Iterable[str]] = ...) -> None: ...
