from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_SPEC: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_PRECONDITION_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_ROUTE_NOT_ON_INTERCONNECT: _ClassVar[ErrorReason]
    ERROR_REASON_VERIFY_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_HOST_OPERATION_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_SUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
    ERROR_REASON_RESOURCE_EXHAUSTED: _ClassVar[ErrorReason]
    ERROR_REASON_ABORTED: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_SPEC: ErrorReason
ERROR_REASON_NOT_FOUND: ErrorReason
ERROR_REASON_ALREADY_EXISTS: ErrorReason
ERROR_REASON_PRECONDITION_FAILED: ErrorReason
ERROR_REASON_PEER_UNAVAILABLE: ErrorReason
ERROR_REASON_ROUTE_NOT_ON_INTERCONNECT: ErrorReason
ERROR_REASON_VERIFY_FAILED: ErrorReason
ERROR_REASON_HOST_OPERATION_FAILED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_NOT_SUPPORTED: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_RESOURCE_EXHAUSTED: ErrorReason
ERROR_REASON_ABORTED: ErrorReason
