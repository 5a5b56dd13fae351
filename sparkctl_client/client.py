"""A typed wrapper over the sparkd.v1 stubs on a unix socket, with errors decoded once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sparkd.v1 import (
    deployment_service_pb2_grpc,
    event_service_pb2_grpc,
    host_service_pb2_grpc,
    node_service_pb2_grpc,
    peer_service_pb2_grpc,
    status_service_pb2_grpc,
)

DEFAULT_SOCKET = "/run/sparkd/sparkd.sock"
#: The read-only socket beside it (status, plans, events): for any local user.
READ_ONLY_SOCKET = "/run/sparkd/sparkd-ro.sock"
#: Reconnect within 2 s of the daemon coming back (grpc's default backoff grows to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
M = TypeVar("M", bound=Message)


def default_socket() -> str:
    """$SPARKD_SOCKET; else the admin socket, or for a user who may not use it (neither root nor in the group
    sparkd: connecting needs write access to the socket) the read-only socket, so `status` works for anyone."""
    chosen = os.environ.get("SPARKD_SOCKET")
    if chosen:
        return chosen
    if os.path.exists(DEFAULT_SOCKET) and not os.access(DEFAULT_SOCKET, os.W_OK) and os.path.exists(READ_ONLY_SOCKET):
        return READ_ONLY_SOCKET
    return DEFAULT_SOCKET


class ClientError(Exception):
    """A failed call: the gRPC code, the ErrorInfo reason and metadata, and the field violations."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        violations: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.metadata = metadata or {}
        self.violations = violations or []

    @property
    def unreachable(self) -> bool:
        return self.code is grpc.StatusCode.UNAVAILABLE and not self.reason


def decode(error: grpc.RpcError) -> ClientError:
    """Turns an RpcError into a ClientError, reading google.rpc.ErrorInfo and BadRequest details."""
    call: Any = error
    status = rpc_status.from_call(call)
    reason, metadata, violations = "", {}, []
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(bad.DESCRIPTOR):
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    return ClientError(call.code(), call.details() or "", reason, metadata, violations)


class Client:
    """Stubs of every sparkd.v1 service on one channel."""

    def __init__(self, socket_path: str | None = None, timeout: float = 30.0) -> None:
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=CHANNEL_OPTIONS)
        self.node = node_service_pb2_grpc.NodeServiceStub(self.channel)
        self.host = host_service_pb2_grpc.HostServiceStub(self.channel)
        self.peers = peer_service_pb2_grpc.PeerServiceStub(self.channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self.channel)
        self.status = status_service_pb2_grpc.StatusServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)

    def call(self, method: Callable[..., Any], request: M, timeout: float | None = None) -> Any:
        """Calls `method` (a stub method: untyped, generated) and returns its response message;
        raises ClientError (decoded) on failure."""
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise decode(e) from None

    def stream(self, method: Callable[..., Any], request: M, timeout: float | None = None) -> Iterator[Any]:
        """Calls a server-streaming `method` and yields its responses; raises ClientError (decoded) on
        failure. No deadline unless `timeout`; closing the iterator (or Ctrl-C) cancels the call."""
        call = method(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            raise decode(e) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self.channel.close()
