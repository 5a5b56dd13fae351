"""The one error hierarchy of sparkd.

Every error the daemon raises on purpose is a `SparkdError`. Subclasses are named
by what the caller should do (nmstate's taxonomy) and carry their gRPC status code
and `ErrorReason`; `sparkd.api.errors` turns them into a gRPC status with a
`google.rpc.ErrorInfo` in one place. Domain code never imports grpc.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Code(Enum):
    """gRPC status codes used by sparkd, by name (grpc.StatusCode member names)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its dotted path and what is wrong with it (and how to fix it)."""

    field: str
    description: str


class SparkdError(Exception):
    """Base of every deliberate sparkd error.

    `reason` is the name of a `sparkd.v1.ErrorReason` value; `metadata` holds the
    dynamic values (lowerCamel keys) so scripts need not parse the message.
    """

    code = Code.INTERNAL
    reason = "ERROR_REASON_INTERNAL"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata)


class InvalidSpec(SparkdError):
    """The request or spec is wrong: resubmit it amended. Lists every bad field found."""

    code = Code.INVALID_ARGUMENT
    reason = "ERROR_REASON_INVALID_SPEC"

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidSpec needs at least one violation")
        self.violations = list(violations)
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid spec: {text}", field=violations[0].field)

    @classmethod
    def one(cls, field: str, description: str) -> InvalidSpec:
        return cls([FieldViolation(field, description)])


class NotFound(SparkdError):
    """The named object does not exist."""

    code = Code.NOT_FOUND
    reason = "ERROR_REASON_NOT_FOUND"


class AlreadyExists(SparkdError):
    """An object with that name exists already (with different contents)."""

    code = Code.ALREADY_EXISTS
    reason = "ERROR_REASON_ALREADY_EXISTS"


class PreconditionFailed(SparkdError):
    """The cluster is not ready for this call; the message says what to do first."""

    code = Code.FAILED_PRECONDITION
    reason = "ERROR_REASON_PRECONDITION_FAILED"


class VerifyFailed(PreconditionFailed):
    """A host change did not verify and was rolled back."""

    reason = "ERROR_REASON_VERIFY_FAILED"


class PeerUnavailable(SparkdError):
    """A peer daemon could not be reached; retry when the link and the peer are up."""

    code = Code.UNAVAILABLE
    reason = "ERROR_REASON_PEER_UNAVAILABLE"


class RouteNotOnInterconnect(PreconditionFailed):
    """The kernel would route peer traffic off the interconnect; sparkd refuses to dial."""

    reason = "ERROR_REASON_ROUTE_NOT_ON_INTERCONNECT"


class HostOperationFailed(SparkdError):
    """A netlink, D-Bus, file or command operation on the host failed."""

    code = Code.INTERNAL
    reason = "ERROR_REASON_HOST_OPERATION_FAILED"


class PermissionDenied(SparkdError):
    """The call is not allowed here (for example a change on the read-only socket)."""

    code = Code.PERMISSION_DENIED
    reason = "ERROR_REASON_PERMISSION_DENIED"


class NotSupported(SparkdError):
    """This daemon version does not implement the request."""

    code = Code.UNIMPLEMENTED
    reason = "ERROR_REASON_NOT_SUPPORTED"


class ConfigError(Exception):
    """The daemon config file is wrong; raised at start-up, before anything is touched."""

    def __init__(self, path: str, field: str, description: str) -> None:
        super().__init__(f"{path}: {field}: {description}")
        self.field = field
