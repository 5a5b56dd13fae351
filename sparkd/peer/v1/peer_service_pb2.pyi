from sparkd.v1 import deployment_pb2 as _deployment_pb2
from sparkd.v1 import host_service_pb2 as _host_service_pb2
from sparkd.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareHostRequest(_message.Message):
    __slots__ = ("confirm_timeout_s", "accept_risk")
    CONFIRM_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_RISK_FIELD_NUMBER: _ClassVar[int]
    confirm_timeout_s: float
    accept_risk: str
    def __init__(self, confirm_timeout_s: _Optional[float] = ..., accept_risk: _Optional[str] = ...) -> None: ...

class PrepareHostResponse(_message.Message):
    __slots__ = ("changed", "actions", "addresses", "mtu", "apply_id")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    APPLY_ID_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[_host_service_pb2.HostAction]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    apply_id: str
    def __init__(self, changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[_host_service_pb2.HostAction, _Mapping]]] = ..., addresses: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ..., apply_id: _Optional[str] = ...) -> None: ...

class VerifyHostRequest(_message.Message):
    __slots__ = ("addresses", "mtu")
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    def __init__(self, addresses: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ...) -> None: ...

class VerifyHostResponse(_message.Message):
    __slots__ = ("failures",)
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    failures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, failures: _Optional[_Iterable[str]] = ...) -> None: ...

class FinishHostRequest(_message.Message):
    __slots__ = ("commit", "apply_id")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    APPLY_ID_FIELD_NUMBER: _ClassVar[int]
    commit: bool
    apply_id: str
    def __init__(self, commit: _Optional[bool] = ..., apply_id: _Optional[str] = ...) -> None: ...

class FinishHostResponse(_message.Message):
    __slots__ = ("apply_id",)
    APPLY_ID_FIELD_NUMBER: _ClassVar[int]
    apply_id: str
    def __init__(self, apply_id: _Optional[str] = ...) -> None: ...

class NodeHello(_message.Message):
    __slots__ = ("node_id", "name", "role", "index", "address", "sparkd_version", "protocol_version", "protocol_min", "protocol_max", "capabilities", "versions", "boot_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SPARKD_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MIN_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MAX_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    role: _node_pb2.NodeRole
    index: int
    address: str
    sparkd_version: str
    protocol_version: int
    protocol_min: int
    protocol_max: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    versions: Versions
    boot_id: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[_node_pb2.NodeRole, str]] = ..., index: _Optional[int] = ..., address: _Optional[str] = ..., sparkd_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., protocol_min: _Optional[int] = ..., protocol_max: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., versions: _Optional[_Union[Versions, _Mapping]] = ..., boot_id: _Optional[str] = ...) -> None: ...

class Package(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Versions(_message.Message):
    __slots__ = ("sparkd", "frameworks", "nccl_sha256", "driver", "cuda", "kernel")
    SPARKD_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    NCCL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    CUDA_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    sparkd: str
    frameworks: _containers.RepeatedCompositeFieldContainer[Package]
    nccl_sha256: str
    driver: str
    cuda: str
    kernel: str
    def __init__(self, sparkd: _Optional[str] = ..., frameworks: _Optional[_Iterable[_Union[Package, _Mapping]]] = ..., nccl_sha256: _Optional[str] = ..., driver: _Optional[str] = ..., cuda: _Optional[str] = ..., kernel: _Optional[str] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("node", "deployments", "epoch", "rendezvous")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    node: NodeHello
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentSummary]
    epoch: int
    rendezvous: bool
    def __init__(self, node: _Optional[_Union[NodeHello, _Mapping]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentSummary, _Mapping]]] = ..., epoch: _Optional[int] = ..., rendezvous: _Optional[bool] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("node", "deployments", "epoch")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    node: NodeHello
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentSummary]
    epoch: int
    def __init__(self, node: _Optional[_Union[NodeHello, _Mapping]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentSummary, _Mapping]]] = ..., epoch: _Optional[int] = ...) -> None: ...

class DeploymentSummary(_message.Message):
    __slots__ = ("name", "state", "unit", "unit_active_state", "failure", "journal_tail", "exit_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_TAIL_FIELD_NUMBER: _ClassVar[int]
    EXIT_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: _deployment_pb2.DeploymentState
    unit: str
    unit_active_state: str
    failure: str
    journal_tail: _containers.RepeatedScalarFieldContainer[str]
    exit_time: float
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[_deployment_pb2.DeploymentState, str]] = ..., unit: _Optional[str] = ..., unit_active_state: _Optional[str] = ..., failure: _Optional[str] = ..., journal_tail: _Optional[_Iterable[str]] = ..., exit_time: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("spec", "assignment", "epoch", "launch_command")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_COMMAND_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    assignment: Assignment
    epoch: int
    launch_command: str
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., epoch: _Optional[int] = ..., launch_command: _Optional[str] = ...) -> None: ...

class StartPartResponse(_message.Message):
    __slots__ = ("unit", "unit_active_state")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    unit_active_state: str
    def __init__(self, unit: _Optional[str] = ..., unit_active_state: _Optional[str] = ...) -> None: ...

class StopPartRequest(_message.Message):
    __slots__ = ("name", "epoch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    epoch: int
    def __init__(self, name: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class StopPartResponse(_message.Message):
    __slots__ = ("unit",)
    UNIT_FIELD_NUMBER: _ClassVar[int]
    unit: str
    def __init__(self, unit: _Optional[str] = ...) -> None: ...

class PreparePartRequest(_message.Message):
    __slots__ = ("spec", "assignment", "epoch")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    assignment: Assignment
    epoch: int
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., epoch: _Optional[int] = ...) -> None: ...

class ManifestEntry(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class PreparePartResponse(_message.Message):
    __slots__ = ("unit", "argv", "environment", "properties", "listen_ports", "busy_ports", "memory_bytes", "model_digest", "model_files", "model_config", "problems", "image_digest")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_PORTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_FILES_FIELD_NUMBER: _ClassVar[int]
    MODEL_CONFIG_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    unit: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    environment: _containers.ScalarMap[str, str]
    properties: _containers.ScalarMap[str, str]
    listen_ports: _containers.RepeatedScalarFieldContainer[int]
    busy_ports: _containers.RepeatedScalarFieldContainer[int]
    memory_bytes: int
    model_digest: str
    model_files: _containers.RepeatedCompositeFieldContainer[ManifestEntry]
    model_config: bytes
    problems: _containers.RepeatedScalarFieldContainer[str]
    image_digest: str
    def __init__(self, unit: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., environment: _Optional[_Mapping[str, str]] = ..., properties: _Optional[_Mapping[str, str]] = ..., listen_ports: _Optional[_Iterable[int]] = ..., busy_ports: _Optional[_Iterable[int]] = ..., memory_bytes: _Optional[int] = ..., model_digest: _Optional[str] = ..., model_files: _Optional[_Iterable[_Union[ManifestEntry, _Mapping]]] = ..., model_config: _Optional[bytes] = ..., problems: _Optional[_Iterable[str]] = ..., image_digest: _Optional[str] = ...) -> None: ...

class PartLogsRequest(_message.Message):
    __slots__ = ("name", "lines", "follow", "epoch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    lines: int
    follow: bool
    epoch: int
    def __init__(self, name: _Optional[str] = ..., lines: _Optional[int] = ..., follow: _Optional[bool] = ..., epoch: _Optional[int] = ...) -> None: ...

class PartLogsResponse(_message.Message):
    __slots__ = ("unit", "time", "message")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    time: float
    message: str
    def __init__(self, unit: _Optional[str] = ..., time: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("name", "cert_pem", "proof", "protocol_max", "protocol_min")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MAX_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    cert_pem: str
    proof: bytes
    protocol_max: int
    protocol_min: int
    def __init__(self, name: _Optional[str] = ..., cert_pem: _Optional[str] = ..., proof: _Optional[bytes] = ..., protocol_max: _Optional[int] = ..., protocol_min: _Optional[int] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("node_id", "name", "index", "proof", "cert_pem")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    index: int
    proof: bytes
    cert_pem: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., index: _Optional[int] = ..., proof: _Optional[bytes] = ..., cert_pem: _Optional[str] = ...) -> None: ...
