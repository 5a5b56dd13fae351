import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Framework(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAMEWORK_UNSPECIFIED: _ClassVar[Framework]
    FRAMEWORK_VLLM: _ClassVar[Framework]
    FRAMEWORK_SGLANG: _ClassVar[Framework]
    FRAMEWORK_TRTLLM: _ClassVar[Framework]
    FRAMEWORK_COMMAND: _ClassVar[Framework]

class LaunchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAUNCH_MODE_UNSPECIFIED: _ClassVar[LaunchMode]
    LAUNCH_MODE_NATIVE: _ClassVar[LaunchMode]
    LAUNCH_MODE_RAY: _ClassVar[LaunchMode]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_PENDING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_STARTING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_READY: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_STOPPING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_UNHEALTHY: _ClassVar[DeploymentState]
FRAMEWORK_UNSPECIFIED: Framework
FRAMEWORK_VLLM: Framework
FRAMEWORK_SGLANG: Framework
FRAMEWORK_TRTLLM: Framework
FRAMEWORK_COMMAND: Framework
LAUNCH_MODE_UNSPECIFIED: LaunchMode
LAUNCH_MODE_NATIVE: LaunchMode
LAUNCH_MODE_RAY: LaunchMode
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_PENDING: DeploymentState
DEPLOYMENT_STATE_STARTING: DeploymentState
DEPLOYMENT_STATE_READY: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_STATE_STOPPING: DeploymentState
DEPLOYMENT_STATE_UNHEALTHY: DeploymentState

class Parallelism(_message.Message):
    __slots__ = ("pipeline", "tensor")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    pipeline: int
    tensor: int
    def __init__(self, pipeline: _Optional[int] = ..., tensor: _Optional[int] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ("name", "framework", "model", "served_model_name", "parallelism", "port", "engine", "mode", "runtime", "extra_args", "env", "command")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    name: str
    framework: Framework
    model: str
    served_model_name: str
    parallelism: Parallelism
    port: int
    engine: EngineOptions
    mode: LaunchMode
    runtime: Runtime
    extra_args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    command: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., framework: _Optional[_Union[Framework, str]] = ..., model: _Optional[str] = ..., served_model_name: _Optional[str] = ..., parallelism: _Optional[_Union[Parallelism, _Mapping]] = ..., port: _Optional[int] = ..., engine: _Optional[_Union[EngineOptions, _Mapping]] = ..., mode: _Optional[_Union[LaunchMode, str]] = ..., runtime: _Optional[_Union[Runtime, _Mapping]] = ..., extra_args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., command: _Optional[_Iterable[str]] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("image", "venv")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VENV_FIELD_NUMBER: _ClassVar[int]
    image: str
    venv: str
    def __init__(self, image: _Optional[str] = ..., venv: _Optional[str] = ...) -> None: ...

class Speculative(_message.Message):
    __slots__ = ("method", "model", "tokens", "steps", "topk")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOPK_FIELD_NUMBER: _ClassVar[int]
    method: str
    model: str
    tokens: int
    steps: int
    topk: int
    def __init__(self, method: _Optional[str] = ..., model: _Optional[str] = ..., tokens: _Optional[int] = ..., steps: _Optional[int] = ..., topk: _Optional[int] = ...) -> None: ...

class EngineOptions(_message.Message):
    __slots__ = ("context_length", "concurrency", "memory_fraction", "kv_cache_dtype", "max_batched_tokens", "quantization", "chunked_prefill", "speculative")
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    CHUNKED_PREFILL_FIELD_NUMBER: _ClassVar[int]
    SPECULATIVE_FIELD_NUMBER: _ClassVar[int]
    context_length: int
    concurrency: int
    memory_fraction: float
    kv_cache_dtype: str
    max_batched_tokens: int
    quantization: str
    chunked_prefill: bool
    speculative: Speculative
    def __init__(self, context_length: _Optional[int] = ..., concurrency: _Optional[int] = ..., memory_fraction: _Optional[float] = ..., kv_cache_dtype: _Optional[str] = ..., max_batched_tokens: _Optional[int] = ..., quantization: _Optional[str] = ..., chunked_prefill: _Optional[bool] = ..., speculative: _Optional[_Union[Speculative, _Mapping]] = ...) -> None: ...

class DeploymentNode(_message.Message):
    __slots__ = ("node_name", "rank", "address", "unit", "unit_active_state", "health", "node_reachable")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    NODE_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    rank: int
    address: str
    unit: str
    unit_active_state: str
    health: str
    node_reachable: bool
    def __init__(self, node_name: _Optional[str] = ..., rank: _Optional[int] = ..., address: _Optional[str] = ..., unit: _Optional[str] = ..., unit_active_state: _Optional[str] = ..., health: _Optional[str] = ..., node_reachable: _Optional[bool] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("rank", "node_name", "unit", "cause", "journal_tail", "time")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_TAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    rank: int
    node_name: str
    unit: str
    cause: str
    journal_tail: _containers.RepeatedScalarFieldContainer[str]
    time: _timestamp_pb2.Timestamp
    def __init__(self, rank: _Optional[int] = ..., node_name: _Optional[str] = ..., unit: _Optional[str] = ..., cause: _Optional[str] = ..., journal_tail: _Optional[_Iterable[str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Supervision(_message.Message):
    __slots__ = ("restarts", "failures_in_row", "max_failures", "breaker_open", "last_failure", "next_restart_time")
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_IN_ROW_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURES_FIELD_NUMBER: _ClassVar[int]
    BREAKER_OPEN_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RESTART_TIME_FIELD_NUMBER: _ClassVar[int]
    restarts: int
    failures_in_row: int
    max_failures: int
    breaker_open: bool
    last_failure: Failure
    next_restart_time: _timestamp_pb2.Timestamp
    def __init__(self, restarts: _Optional[int] = ..., failures_in_row: _Optional[int] = ..., max_failures: _Optional[int] = ..., breaker_open: _Optional[bool] = ..., last_failure: _Optional[_Union[Failure, _Mapping]] = ..., next_restart_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "spec", "state", "message", "nodes", "create_time", "supervision", "master_port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUPERVISION_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: DeploymentSpec
    state: DeploymentState
    message: str
    nodes: _containers.RepeatedCompositeFieldContainer[DeploymentNode]
    create_time: _timestamp_pb2.Timestamp
    supervision: Supervision
    master_port: int
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., message: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[DeploymentNode, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., supervision: _Optional[_Union[Supervision, _Mapping]] = ..., master_port: _Optional[int] = ...) -> None: ...
