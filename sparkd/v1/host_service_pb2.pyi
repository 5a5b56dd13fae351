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
HOST_ACTION_KIND_UNSPECIFIED: HostActionKind
HOST_ACTION_KIND_SET_MTU: HostActionKind
HOST_ACTION_KIND_ADD_ADDRESS: HostActionKind
HOST_ACTION_KIND_REMOVE_ADDRESS: HostActionKind
HOST_ACTION_KIND_SET_LINK_UP: HostActionKind
HOST_ACTION_KIND_WRITE_FILE: HostActionKind

class HostAction(_message.Message):
    __slots__ = ("kind", "target", "current", "desired", "description")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    kind: HostActionKind
    target: str
    current: str
    desired: str
    description: str
    def __init__(self, kind: _Optional[_Union[HostActionKind, str]] = ..., target: _Optional[str] = ..., current: _Optional[str] = ..., desired: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class PlanHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PlanHostResponse(_message.Message):
    __slots__ = ("changed", "actions")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[HostAction]
    def __init__(self, changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[HostAction, _Mapping]]] = ...) -> None: ...

class ApplyHostRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ApplyHostResponse(_message.Message):
    __slots__ = ("changed", "actions", "verified")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actions: _containers.RepeatedCompositeFieldContainer[HostAction]
    verified: bool
    def __init__(self, changed: _Optional[bool] = ..., actions: _Optional[_Iterable[_Union[HostAction, _Mapping]]] = ..., verified: _Optional[bool] = ...) -> None: ...
