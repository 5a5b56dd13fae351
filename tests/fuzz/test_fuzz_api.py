"""Property-based fuzzing of every RPC of the local API and of the peer service, against real servers on fakes.

Each method gets at least 200 generated requests per run (hostile values, see
`strategies.py`). A call may fail with any status that names a mistake of the caller,
never INTERNAL or UNKNOWN (an unexpected exception: a bug), and after the run the daemon
still answers and no exception escaped its handlers (the error log holds none).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkd.identity import tls_name
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.v1 import (
    deployment_service_pb2,
    event_service_pb2,
    host_service_pb2,
    node_service_pb2,
    peer_service_pb2,
    status_service_pb2,
)
from tests.api.conftest import Daemon, close_all, head_config, loopback_cluster, peer_channel, worker_hello
from tests.fakes.host import FakeHost
from tests.fuzz.conftest import RESULTS
from tests.fuzz.strategies import messages, unknown_fields

EXAMPLES = 200
BUG = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def methods(module: Any) -> list[tuple[str, Any]]:
    """(full method name, request class) for every method of every service in a generated module."""
    found = []
    for service in module.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            request = getattr(module, m.input_type.name, None)
            if request is None:  # the request type lives in another file of the package
                from google.protobuf import message_factory

                request = message_factory.GetMessageClass(m.input_type)
            found.append((f"/{service.full_name}/{m.name}", request))
    return found


LOCAL = [
    m
    for module in (
        node_service_pb2,
        host_service_pb2,
        peer_service_pb2,
        deployment_service_pb2,
        status_service_pb2,
        event_service_pb2,
    )
    for m in methods(module)
]
PEER = [m for m in methods(peer_pb) if ".PeerService/" in m[0]]
PAIRING = [m for m in methods(peer_pb) if ".PairingService/" in m[0]]


@pytest.fixture(scope="module")
def errors() -> Iterator[list[dict[str, Any]]]:
    """Every error-level log event the daemons write while fuzzed."""
    seen: list[dict[str, Any]] = []

    def capture(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method in ("error", "exception", "critical"):
            seen.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[capture], cache_logger_on_first_use=False)
    try:
        yield seen
    finally:
        structlog.reset_defaults()


def _call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    if _server_streaming(method):
        return _stream(channel, method, payload)
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(payload, timeout=20)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _server_streaming(method: str) -> bool:
    from google.protobuf import descriptor_pool

    try:
        found = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
    except KeyError:
        return False
    return bool(found.server_streaming)


def _stream(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    """Reads a server stream to its end; one that follows (never ends by itself) is cancelled after 50 ms."""
    call = channel.unary_stream(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)(
        payload, timeout=20
    )
    timer = threading.Timer(0.05, call.cancel)
    timer.start()
    try:
        for _ in call:
            pass
    except grpc.RpcError as e:
        return e.code()
    finally:
        timer.cancel()
    return grpc.StatusCode.OK


_SPEC = {"name": "solo", "framework": 1, "model": "/models/tiny", "parallelism": {"pipeline": 1, "tensor": 1}}
#: Valid requests that generated fields are merged onto, so fuzzing also reaches past validation.
TEMPLATES: dict[str, Any] = {
    "/sparkd.v1.DeploymentService/CreateDeployment": deployment_service_pb2.CreateDeploymentRequest(spec=_SPEC),
    "/sparkd.v1.DeploymentService/GetDeployment": deployment_service_pb2.GetDeploymentRequest(name="solo"),
    "/sparkd.v1.DeploymentService/DeleteDeployment": deployment_service_pb2.DeleteDeploymentRequest(name="solo"),
    "/sparkd.peer.v1.PeerService/StartPart": peer_pb.StartPartRequest(
        spec={**_SPEC, "parallelism": {"pipeline": 2, "tensor": 1}},
        assignment=peer_pb.Assignment(rank=1, nnodes=2, master_addr="127.0.0.1", master_port=29501),
    ),
    "/sparkd.peer.v1.PeerService/StopPart": peer_pb.StopPartRequest(name="solo"),
    "handle_hello": peer_pb.HelloRequest(
        node=worker_hello(),
        deployments=[
            peer_pb.DeploymentSummary(name="solo", state="DEPLOYMENT_STATE_READY", unit="sparkd-solo-rank1.service")
        ],
    ),
}


def _merged(template: Any, message: Any) -> Any:
    out = template.__class__()
    out.CopyFrom(template)
    out.MergeFrom(message)
    return out


def requests(method: str, request: Any) -> st.SearchStrategy[Any]:
    generated = messages(request.DESCRIPTOR, request)
    template = TEMPLATES.get(method)
    if template is None:
        return generated
    return st.one_of(generated, generated.map(lambda m: _merged(template, m)), st.just(template))


def _fuzz(channel: grpc.Channel, method: str, request: Any) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests(method, request), unknown_fields(), st.integers(0, 2**32))
    def run(message: Any, extra: bytes, _nonce: int) -> None:
        code = _call(channel, method, message.SerializeToString() + extra)
        RESULTS[method][code.name] += 1
        assert code not in BUG, (method, message)

    run()


@pytest.fixture(scope="module")
def head(errors: list[dict[str, Any]]) -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="sdfz"))
    d = Daemon(head_config(root), FakeHost(root))
    try:
        yield d
    finally:
        d.close()


@pytest.mark.parametrize("method,request_type", LOCAL, ids=[m for m, _ in LOCAL])
def test_local_api(head: Daemon, errors: list[dict[str, Any]], method: str, request_type: Any) -> None:
    _fuzz(head.admin.channel, method, request_type)
    assert head.admin.node.GetVersion(node_service_pb2.GetVersionRequest()).version
    assert errors == []


@pytest.fixture(scope="module")
def cluster(errors: list[dict[str, Any]]) -> Iterator[list[Daemon]]:
    nodes = loopback_cluster()
    try:
        yield nodes
    finally:
        close_all(nodes)


@pytest.mark.parametrize("method,request_type", PEER, ids=[m for m, _ in PEER])
def test_peer_service(cluster: list[Daemon], errors: list[dict[str, Any]], method: str, request_type: Any) -> None:
    """The worker's peer port, called with its head's key (what a compromised or buggy head could send)."""
    head, worker = cluster
    for template in TEMPLATES.values():  # the current session's epoch, so fuzzing reaches past the epoch check
        if hasattr(template, "epoch") and not isinstance(template, peer_pb.HelloRequest):
            template.epoch = worker.system.peer.session.epoch
    with peer_channel(worker.peer_target, head, worker) as channel:
        _fuzz(channel, method, request_type)
    assert worker.admin.node.GetVersion(node_service_pb2.GetVersionRequest()).version
    assert errors == []


@pytest.mark.parametrize("method,request_type", PAIRING, ids=[m for m, _ in PAIRING])
def test_pairing_listener(cluster: list[Daemon], errors: list[dict[str, Any]], method: str, request_type: Any) -> None:
    """The head's pairing listener, open, called by anyone (TLS pinned to the head, as a worker dials it)."""
    head = cluster[0]
    begin = head.admin.peers.BeginPairing(peer_service_pb2.BeginPairingRequest(ttl_seconds=120))
    credentials = grpc.ssl_channel_credentials(root_certificates=head.system.identity.cert_pem.encode())
    options = [("grpc.ssl_target_name_override", tls_name(begin.node_id))]
    target = f"127.0.0.1:{head.system.config.peer.pairing_port}"
    with grpc.secure_channel(target, credentials, options=options) as channel:
        _fuzz(channel, method, request_type)
    assert head.admin.node.GetVersion(node_service_pb2.GetVersionRequest()).version
    assert errors == []


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(requests("handle_hello", peer_pb.HelloRequest), st.booleans())
def test_hello_handling_on_the_head(
    head: Daemon, errors: list[dict[str, Any]], request: Any, from_claimed: bool
) -> None:
    """The head's side of Hello, called directly: the peer port's authorization lets only worker addresses
    through, which a fuzzing client on this machine cannot have, so the handler is fuzzed behind it."""
    from sparkd.errors import SparkdError

    cert = head.system.identity.cert_pem
    member = head.system.membership.by_id("abcdefghijklmnop") or head.system.membership.add_worker(
        "abcdefghijklmnop", "spark2", cert, "0" * 64
    )
    if not from_claimed:
        request.node.node_id = "zzzzzzzzzzzzzzzz"

    def handle() -> str:
        try:
            head.system.peers.handle_hello(request, member)
        except SparkdError as e:
            return e.code.value
        return "OK"

    RESULTS["PeerManager.handle_hello"][head.run(handle)] += 1
    assert errors == []
