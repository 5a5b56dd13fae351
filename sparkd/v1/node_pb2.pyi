from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_ROLE_UNSPECIFIED: _ClassVar[NodeRole]
    NODE_ROLE_HEAD: _ClassVar[NodeRole]
    NODE_ROLE_WORKER: _ClassVar[NodeRole]

class Twin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TWIN_UNSPECIFIED: _ClassVar[Twin]
    TWIN_A: _ClassVar[Twin]
    TWIN_B: _ClassVar[Twin]
NODE_ROLE_UNSPECIFIED: NodeRole
NODE_ROLE_HEAD: NodeRole
NODE_ROLE_WORKER: NodeRole
TWIN_UNSPECIFIED: Twin
TWIN_A: Twin
TWIN_B: Twin

class Node(_message.Message):
    __slots__ = ("id", "name", "role", "index", "sparkd_version", "kernel", "memory", "ports", "gpus", "gpu_unavailable_reason", "key_fingerprint")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SPARKD_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: NodeRole
    index: int
    sparkd_version: str
    kernel: str
    memory: Memory
    ports: _containers.RepeatedCompositeFieldContainer[NetworkPort]
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    gpu_unavailable_reason: str
    key_fingerprint: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[NodeRole, str]] = ..., index: _Optional[int] = ..., sparkd_version: _Optional[str] = ..., kernel: _Optional[str] = ..., memory: _Optional[_Union[Memory, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[NetworkPort, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., gpu_unavailable_reason: _Optional[str] = ..., key_fingerprint: _Optional[str] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("total_bytes", "available_bytes")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    available_bytes: int
    def __init__(self, total_bytes: _Optional[int] = ..., available_bytes: _Optional[int] = ...) -> None: ...

class NetworkPort(_message.Message):
    __slots__ = ("netdev", "rdma_device", "pci_address", "twin", "cabled", "carrier", "operstate", "mtu", "addresses", "rate_gbps", "rdma_state")
    NETDEV_FIELD_NUMBER: _ClassVar[int]
    RDMA_DEVICE_FIELD_NUMBER: _ClassVar[int]
    PCI_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TWIN_FIELD_NUMBER: _ClassVar[int]
    CABLED_FIELD_NUMBER: _ClassVar[int]
    CARRIER_FIELD_NUMBER: _ClassVar[int]
    OPERSTATE_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    RATE_GBPS_FIELD_NUMBER: _ClassVar[int]
    RDMA_STATE_FIELD_NUMBER: _ClassVar[int]
    netdev: str
    rdma_device: str
    pci_address: str
    twin: Twin
    cabled: bool
    carrier: bool
    operstate: str
    mtu: int
    addresses: _containers.RepeatedScalarFieldContainer[str]
    rate_gbps: int
    rdma_state: str
    def __init__(self, netdev: _Optional[str] = ..., rdma_device: _Optional[str] = ..., pci_address: _Optional[str] = ..., twin: _Optional[_Union[Twin, str]] = ..., cabled: _Optional[bool] = ..., carrier: _Optional[bool] = ..., operstate: _Optional[str] = ..., mtu: _Optional[int] = ..., addresses: _Optional[_Iterable[str]] = ..., rate_gbps: _Optional[int] = ..., rdma_state: _Optional[str] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("index", "name", "uuid", "driver_version", "cuda_version")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    uuid: str
    driver_version: str
    cuda_version: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., uuid: _Optional[str] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ...) -> None: ...
