import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sparkd.v1 import deployment_pb2 as _deployment_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("spec", "spec_yaml")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    spec_yaml: str
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., spec_yaml: _Optional[str] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _deployment_pb2.Deployment
    def __init__(self, deployment: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _deployment_pb2.Deployment
    def __init__(self, deployment: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[_deployment_pb2.Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[_deployment_pb2.Deployment, _Mapping]]] = ...) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = ("stopped_units",)
    STOPPED_UNITS_FIELD_NUMBER: _ClassVar[int]
    stopped_units: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stopped_units: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanDeploymentRequest(_message.Message):
    __slots__ = ("spec", "spec_yaml")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    spec_yaml: str
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., spec_yaml: _Optional[str] = ...) -> None: ...

class NodeMemory(_message.Message):
    __slots__ = ("rank", "node_name", "first_layer", "end_layer", "weight_bytes", "kv_bytes_per_token", "memory_bytes", "budget_bytes", "reserve_bytes", "kv_capacity_tokens", "needed_tokens", "fits", "refusal")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_LAYER_FIELD_NUMBER: _ClassVar[int]
    END_LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    KV_CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEEDED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    rank: int
    node_name: str
    first_layer: int
    end_layer: int
    weight_bytes: int
    kv_bytes_per_token: int
    memory_bytes: int
    budget_bytes: int
    reserve_bytes: int
    kv_capacity_tokens: int
    needed_tokens: int
    fits: bool
    refusal: str
    def __init__(self, rank: _Optional[int] = ..., node_name: _Optional[str] = ..., first_layer: _Optional[int] = ..., end_layer: _Optional[int] = ..., weight_bytes: _Optional[int] = ..., kv_bytes_per_token: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., budget_bytes: _Optional[int] = ..., reserve_bytes: _Optional[int] = ..., kv_capacity_tokens: _Optional[int] = ..., needed_tokens: _Optional[int] = ..., fits: _Optional[bool] = ..., refusal: _Optional[str] = ...) -> None: ...

class MemoryPlan(_message.Message):
    __slots__ = ("parameters", "weight_precision", "kv_cache_dtype", "weight_bytes", "kv_bytes_per_token", "context_length", "concurrency", "memory_fraction", "nodes", "fits")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PRECISION_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    parameters: int
    weight_precision: str
    kv_cache_dtype: str
    weight_bytes: int
    kv_bytes_per_token: int
    context_length: int
    concurrency: int
    memory_fraction: float
    nodes: _containers.RepeatedCompositeFieldContainer[NodeMemory]
    fits: bool
    def __init__(self, parameters: _Optional[int] = ..., weight_precision: _Optional[str] = ..., kv_cache_dtype: _Optional[str] = ..., weight_bytes: _Optional[int] = ..., kv_bytes_per_token: _Optional[int] = ..., context_length: _Optional[int] = ..., concurrency: _Optional[int] = ..., memory_fraction: _Optional[float] = ..., nodes: _Optional[_Iterable[_Union[NodeMemory, _Mapping]]] = ..., fits: _Optional[bool] = ...) -> None: ...

class NodePlan(_message.Message):
    __slots__ = ("node_name", "rank", "address", "unit", "argv", "environment", "properties", "listen_ports", "model_digest")
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
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    rank: int
    address: str
    unit: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    environment: _containers.ScalarMap[str, str]
    properties: _containers.ScalarMap[str, str]
    listen_ports: _containers.RepeatedScalarFieldContainer[int]
    model_digest: str
    def __init__(self, node_name: _Optional[str] = ..., rank: _Optional[int] = ..., address: _Optional[str] = ..., unit: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., environment: _Optional[_Mapping[str, str]] = ..., properties: _Optional[_Mapping[str, str]] = ..., listen_ports: _Optional[_Iterable[int]] = ..., model_digest: _Optional[str] = ...) -> None: ...

class PlanDeploymentResponse(_message.Message):
    __slots__ = ("spec", "memory", "nodes", "master_port", "blockers")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    BLOCKERS_FIELD_NUMBER: _ClassVar[int]
    spec: _deployment_pb2.DeploymentSpec
    memory: MemoryPlan
    nodes: _containers.RepeatedCompositeFieldContainer[NodePlan]
    master_port: int
    blockers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_deployment_pb2.DeploymentSpec, _Mapping]] = ..., memory: _Optional[_Union[MemoryPlan, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodePlan, _Mapping]]] = ..., master_port: _Optional[int] = ..., blockers: _Optional[_Iterable[str]] = ...) -> None: ...

class RestartDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RestartDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _deployment_pb2.Deployment
    def __init__(self, deployment: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ...) -> None: ...

class DeploymentLogsRequest(_message.Message):
    __slots__ = ("name", "node_name", "follow", "lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    node_name: str
    follow: bool
    lines: int
    def __init__(self, name: _Optional[str] = ..., node_name: _Optional[str] = ..., follow: _Optional[bool] = ..., lines: _Optional[int] = ...) -> None: ...

class DeploymentLogsResponse(_message.Message):
    __slots__ = ("node_name", "rank", "unit", "time", "message")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    rank: int
    unit: str
    time: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, node_name: _Optional[str] = ..., rank: _Optional[int] = ..., unit: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...
