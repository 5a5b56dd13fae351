"""The one error hierarchy of sparkd.

Every error the daemon raises on purpose is a `SparkdError`. Subclasses are named
by what the caller should do (nmstate's taxonomy) and carry their gRPC status code
and `ErrorReason`; `sparkd.api.errors` turns them into a gRPC status with a
`google.rpc.ErrorInfo` in one place. Domain code never imports grpc.
"""

from __future__ import annotations

import re
import reprlib
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
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
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


def shown(value: object, limit: int = 60) -> str:
    """`value` as it may be echoed in an error: its repr, cut to `limit` chars ("…(N chars)" after).

    Every value a caller sent that an error message repeats goes through here, so a hostile
    value can neither bloat the error past what gRPC carries nor put control characters in it
    (repr escapes them). Huge integers are described, not printed (their repr is slow or refused).
    """
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
            text = f"<{value.bit_length()}-bit integer>"
        elif isinstance(value, (str, bytes, int, float, type(None))):
            text = repr(value)
        else:
            text = _BOUNDED_REPR.repr(value)
    except Exception:  # a hostile __repr__ must not turn a refusal into a crash
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[: max(limit, 0)]}…({len(text)} chars)"


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxdict = r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = 6
    r.maxstring = r.maxother = r.maxlong = 60
    return r


_BOUNDED_REPR = _bounded_repr()


class InvalidSpec(SparkdError):
    """The request or spec is wrong: resubmit it amended. Lists every bad field found.

    Whatever the input, the error stays well within gRPC's trailing metadata (8 KiB by default,
    which carries the message twice: percent-encoded as grpc-message, and in the base64
    grpc-status-details-bin with the details): field paths are cut to MAX_FIELD_CHARS,
    descriptions to MAX_DESCRIPTION_CHARS, at most MAX_VIOLATIONS violations are kept while their
    total stays within MAX_DETAILS_BYTES (a final "(N more)" violation counts the rest), and the
    message is cut to MAX_MESSAGE_BYTES. Worst case (all 4-byte characters) about 5.5 KiB.
    """

    code = Code.INVALID_ARGUMENT
    reason = "ERROR_REASON_INVALID_SPEC"

    MAX_FIELD_CHARS = 128
    MAX_DESCRIPTION_CHARS = 512
    MAX_VIOLATIONS = 20
    MAX_DETAILS_BYTES = 1536  # UTF-8 bytes of all kept fields and descriptions (the "(N more)" aside)
    MAX_MESSAGE_BYTES = 512  # the details list every violation; the message is the summary
    _MORE_RE = re.compile(r"\((\d{1,9}) more\)\Z")  # the final violation of an InvalidSpec cut short

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidSpec needs at least one violation")
        given = list(violations)
        hidden = 0
        if (more := self._MORE_RE.search(given[-1].field)) is not None:  # re-raised with new field paths
            hidden = int(more.group(1))
            given = given[:-1]
        kept: list[FieldViolation] = []
        size = 0
        for v in given:
            field = self._cut(v.field, self.MAX_FIELD_CHARS)
            description = self._cut(v.description, self.MAX_DESCRIPTION_CHARS)
            field_bytes = len(field.encode("utf-8", "surrogatepass"))
            if not kept:  # the first is always kept, cut to the budget if need be
                description = self._cut_bytes(description, self.MAX_DETAILS_BYTES - field_bytes)
            extra = field_bytes + len(description.encode("utf-8", "surrogatepass"))
            if kept and (len(kept) == self.MAX_VIOLATIONS or size + extra > self.MAX_DETAILS_BYTES):
                break
            kept.append(FieldViolation(field, description))
            size += extra
        hidden += len(given) - len(kept)
        if hidden or not kept:
            kept.append(
                FieldViolation(
                    f"({hidden} more)", f"{hidden} more not shown; fix the violations above and resubmit to see them"
                )
            )
        self.violations = kept
        text = "; ".join(f"{v.field}: {v.description}" for v in kept)
        message = self._cut_bytes(f"invalid spec: {text}", self.MAX_MESSAGE_BYTES)
        super().__init__(message, field=kept[0].field)

    @classmethod
    def one(cls, field: str, description: str) -> InvalidSpec:
        return cls([FieldViolation(field, description)])

    @staticmethod
    def _cut(text: str, limit: int) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"

    @staticmethod
    def _cut_bytes(text: str, limit: int) -> str:
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return text
        return data[: limit - len("…".encode())].decode("utf-8", "ignore") + "…"


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


class Aborted(SparkdError):
    """Another operation of the same kind is in progress; retry when it has ended. Nothing was changed."""

    code = Code.ABORTED
    reason = "ERROR_REASON_ABORTED"


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


class ResourceExhausted(SparkdError):
    """A limit of the daemon was reached; retry later. The message names the limit."""

    code = Code.RESOURCE_EXHAUSTED
    reason = "ERROR_REASON_RESOURCE_EXHAUSTED"


class NotSupported(SparkdError):
    """This daemon version does not implement the request."""

    code = Code.UNIMPLEMENTED
    reason = "ERROR_REASON_NOT_SUPPORTED"


class ConfigError(Exception):
    """The daemon config file is wrong; raised at start-up, before anything is touched."""

    def __init__(self, path: str, field: str, description: str) -> None:
        super().__init__(f"{path}: {field}: {description}")
        self.field = field


class IdentityError(Exception):
    """The node key (`<state_dir>/node.key`) cannot be used or created; raised at start-up.

    The message names the file, what is wrong with it and what to do. sparkd never replaces
    an existing key on its own: the key is the node's identity, which its peers pin at pairing.
    """
