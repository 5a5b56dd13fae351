"""The one place where errors become gRPC statuses.

A server interceptor wraps every unary handler: a `SparkdError` becomes its status code
with a `google.rpc.ErrorInfo` (reason = the `sparkd.v1.ErrorReason` name, domain
`sparkd.dev`, metadata = the error's dynamic values) and, for `InvalidSpec`, a
`google.rpc.BadRequest` listing every field violation. Anything else is a bug: INTERNAL,
reason ERROR_REASON_INTERNAL, logged with its traceback. Servicers never abort by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sparkd.errors import InvalidSpec, SparkdError

log = structlog.get_logger(__name__)

DOMAIN = "sparkd.dev"


def to_status(error: SparkdError) -> status_pb2.Status:
    """The google.rpc.Status for `error`."""
    code = getattr(code_pb2, error.code.value)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [info]
    if isinstance(error, InvalidSpec):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return status_pb2.Status(code=code, message=error.message, details=packed)


def _wrap(behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        bound = structlog.contextvars.bind_contextvars(rpc=method)
        try:
            return await behavior(request, context)
        except SparkdError as e:
            log.info("api.error", reason=e.reason, message=e.message)
            await context.abort_with_status(rpc_status.to_status(to_status(e)))
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            log.exception("api.internal_error")
            internal = SparkdError(f"internal error in {method}: {type(e).__name__}: {e} (see the daemon log)")
            await context.abort_with_status(rpc_status.to_status(to_status(internal)))
        finally:
            structlog.contextvars.reset_contextvars(**bound)

    return wrapped


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps exceptions of unary-unary handlers to statuses (see the module docstring)."""

    def __init__(self, denied: Callable[[str], SparkdError | None] | None = None) -> None:
        # `denied(method)` returns an error for methods this server refuses (the read-only socket).
        self.denied = denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method
        behavior = handler.unary_unary
        if self.denied is not None and (refusal := self.denied(method)) is not None:

            async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
                raise refusal

            behavior = refuse
        return grpc.unary_unary_rpc_method_handler(
            _wrap(behavior, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
