"""The one error mapping: SparkdError -> google.rpc.Status with ErrorInfo (and BadRequest for specs)."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from sparkd.errors import FieldViolation, InvalidSpec, PeerUnavailable, RouteNotOnInterconnect
from sparkd.rpc.errors import DOMAIN, to_status
from sparkd.v1 import error_reason_pb2

M = TypeVar("M", bound=Message)


def unpack(status: status_pb2.Status, kind: type[M]) -> M:
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            return message
    raise AssertionError(f"no {kind.__name__} in details")


def test_invalid_spec_carries_error_info_and_every_violation() -> None:
    error = InvalidSpec([FieldViolation("framework", "unknown"), FieldViolation("model", "required")])
    status = to_status(error)
    assert status.code == code_pb2.INVALID_ARGUMENT
    info = unpack(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "ERROR_REASON_INVALID_SPEC",
        DOMAIN,
        {"field": "framework"},
    )
    bad = unpack(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [("framework", "unknown"), ("model", "required")]


def test_codes_and_reasons_follow_the_class() -> None:
    route = to_status(RouteNotOnInterconnect("no", address="10.0.0.2", ifname="eth0"))
    assert route.code == code_pb2.FAILED_PRECONDITION
    assert unpack(route, error_details_pb2.ErrorInfo).metadata["ifname"] == "eth0"
    assert to_status(PeerUnavailable("gone")).code == code_pb2.UNAVAILABLE


def test_every_reason_used_is_a_proto_enum_value() -> None:
    from sparkd import errors

    names = set(error_reason_pb2.ErrorReason.keys())
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.SparkdError):
            assert cls.reason in names, cls
