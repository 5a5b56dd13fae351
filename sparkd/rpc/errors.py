"""The one place where errors become gRPC statuses, and where every call is authorized.

A server interceptor wraps every handler, unary and streaming alike: first the
authorization check (`sparkd.rpc.authz`, through the `authorize` callback each server
passes), then the call. A `SparkdError` becomes its status code with a
`google.rpc.ErrorInfo` (reason = the `sparkd.v1.ErrorReason` name, domain `sparkd.dev`,
metadata = the error's dynamic values) and, for `InvalidSpec`, a `google.rpc.BadRequest`
listing every field violation; the whole status is kept under 8 KiB. Anything else is a
bug: INTERNAL, reason ERROR_REASON_INTERNAL, logged with its traceback. Repeated errors
are logged once per interval with a count of those suppressed, so a flood of bad calls
cannot flood the journal. Servicers never abort by hand.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sparkd.errors import InvalidSpec, ResourceExhausted, SparkdError

log = structlog.get_logger(__name__)

DOMAIN = "sparkd.dev"
MAX_DETAILS_BYTES = 8 * 1024
_MESSAGE_LIMIT = 2048
_METADATA_LIMIT = 256


def to_status(error: SparkdError) -> status_pb2.Status:
    """The google.rpc.Status for `error`, at most MAX_DETAILS_BYTES serialized."""
    code = getattr(code_pb2, error.code.value)
    metadata = {k[:64]: str(v)[:_METADATA_LIMIT] for k, v in list(error.metadata.items())[:16]}
    details: list[Any] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)]
    if isinstance(error, InvalidSpec):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
    message = error.message if len(error.message) <= _MESSAGE_LIMIT else error.message[:_MESSAGE_LIMIT] + "…"
    status = status_pb2.Status(code=code, message=message, details=[_pack(d) for d in details])
    while status.ByteSize() > MAX_DETAILS_BYTES and len(status.details) > 1:
        del status.details[-1]  # the BadRequest goes first; the message still names the fields
    return status


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class RateLimitedLog:
    """Logs an event at most once per `interval` for each key, counting what it suppressed."""

    def __init__(self, interval: float = 10.0, max_keys: int = 1024) -> None:
        self.interval, self.max_keys = interval, max_keys
        self._last: dict[tuple[str, ...], tuple[float, int]] = {}

    def allow(self, *key: str) -> int | None:
        """None to suppress; else the number suppressed since the last one logged."""
        now = time.monotonic()
        last, suppressed = self._last.get(key, (0.0, 0))
        if last and now - last < self.interval:
            self._last[key] = (last, suppressed + 1)
            return None
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        return suppressed


#: `authorize(method, context)` raises a SparkdError when the call is not allowed.
Authorize = Callable[[str, grpc.aio.ServicerContext], None]


@dataclass
class ErrorLogs:
    """One server's rate limits for logging errors: callers' mistakes, and bugs."""

    errors: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(10.0))
    internal: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(60.0))


async def _fail(context: grpc.aio.ServicerContext, method: str, error: Exception, logs: ErrorLogs) -> None:
    if isinstance(error, SparkdError):
        suppressed = logs.errors.allow(method, error.reason)
        if suppressed is not None:
            log.info("api.error", rpc=method, reason=error.reason, message=error.message[:300], suppressed=suppressed)
        await context.abort_with_status(rpc_status.to_status(to_status(error)))
    suppressed = logs.internal.allow(method, type(error).__name__)
    if suppressed is not None:
        log.error("api.internal_error", rpc=method, suppressed=suppressed, exc_info=error)
    text = str(error)[:300]
    internal = SparkdError(f"internal error in {method}: {type(error).__name__}: {text} (see the daemon log)")
    await context.abort_with_status(rpc_status.to_status(to_status(internal)))


def _unary(behavior: Any, method: str, authorize: Authorize, logs: ErrorLogs) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            authorize(method, context)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await _fail(context, method, e, logs)

    return wrapped


@dataclass
class StreamSlots:
    """Long-lived streams (health Watch, reflection) are capped below the server's concurrent-RPC limit, so
    a local user holding streams open can never starve the unary calls."""

    limit: int
    open: int = 0


def _streaming(behavior: Any, method: str, authorize: Authorize, logs: ErrorLogs, slots: StreamSlots) -> Any:
    """For unary-stream and stream-stream handlers, async generators or coroutines alike."""

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> None:
        taken = False
        try:
            authorize(method, context)
            if slots.open >= slots.limit:
                raise ResourceExhausted(
                    f"{slots.limit} streams are open on this socket already; close some (or retry later)",
                    method=method,
                )
            slots.open, taken = slots.open + 1, True
            result = behavior(request, context)
            if isinstance(result, AsyncIterator):
                async for item in result:
                    await context.write(item)
            else:
                await result
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await _fail(context, method, e, logs)
        finally:
            if taken:
                slots.open -= 1

    return wrapped


class Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authorizes every call and maps its errors (see the module docstring)."""

    def __init__(self, authorize: Authorize, max_streams: int = 16) -> None:
        self.authorize = authorize
        self.logs = ErrorLogs()
        self.slots = StreamSlots(max_streams)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None  # UNIMPLEMENTED, from grpc itself
        method = details.method
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method, self.authorize, self.logs), des, ser
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, method, self.authorize, self.logs), des, ser
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method, self.authorize, self.logs, self.slots), des, ser
            )
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, method, self.authorize, self.logs, self.slots), des, ser
        )
