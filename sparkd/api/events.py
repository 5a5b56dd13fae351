"""sparkd.v1.EventService: the event bus as a resumable stream (thin shim over `EventBus.watch`).

The interceptor (`sparkd.rpc.errors`) counts each call against the socket's cap on
long-lived streams and writes what the generator yields. A client that goes away
cancels the call: the watch is cancelled where it waits, and holds nothing else. A
server that stops ends the stream after its grace period (or at once, after
`EventBus.close()`), and the client resumes from the last event it received.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2

from sparkd.errors import FieldViolation, InvalidSpec, shown
from sparkd.events import Event, EventBus
from sparkd.v1 import event_pb2
from sparkd.v1 import event_service_pb2 as pb
from sparkd.v1 import event_service_pb2_grpc as pb_grpc

MAX_KINDS = 16
MAX_KIND_CHARS = 32
MAX_STREAM_ID_CHARS = 32
KIND_RE = re.compile(r"[a-z][a-z_.]*")


def event_to_proto(event: Event, stream_id: str) -> event_pb2.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(event.time * 1e9))
    return event_pb2.Event(
        position=event.position,
        stream_id=stream_id,
        time=stamp,
        kind=event.kind,
        subject=event.subject,
        state=event.state,
        previous=event.previous,
        message=event.message,
    )


def validate(request: pb.WatchEventsRequest) -> frozenset[str]:
    """The requested kinds; raises InvalidSpec naming every bad field."""
    violations: list[FieldViolation] = []
    if len(request.stream_id) > MAX_STREAM_ID_CHARS:
        violations.append(
            FieldViolation(
                "stream_id",
                f"at most {MAX_STREAM_ID_CHARS} characters (pass back an Event.stream_id); "
                f"got {len(request.stream_id)}",
            )
        )
    if len(request.kinds) > MAX_KINDS:
        violations.append(FieldViolation("kinds", f"at most {MAX_KINDS} kinds; got {len(request.kinds)}"))
    for i, kind in enumerate(request.kinds[:MAX_KINDS]):
        if len(kind) > MAX_KIND_CHARS or not KIND_RE.fullmatch(kind):
            violations.append(
                FieldViolation(
                    f"kinds[{i}]",
                    f"must be 1 to {MAX_KIND_CHARS} characters, a lowercase letter then lowercase letters, "
                    f"'_' or '.' (such as 'deployment'); got {shown(kind)}",
                )
            )
    if violations:
        raise InvalidSpec(violations)
    return frozenset(request.kinds)


class EventServicer(pb_grpc.EventServiceServicer):  # type: ignore[misc]
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        kinds = validate(request)
        stream_id = self.bus.stream_id
        async for d in self.bus.watch(request.after_position, request.stream_id, request.follow, kinds):
            yield pb.WatchEventsResponse(event=event_to_proto(d.event, stream_id), reset=d.reset, missed=d.missed)
