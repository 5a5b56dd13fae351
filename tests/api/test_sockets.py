"""The two local sockets: modes, the read-only allow-list, and streaming handlers under the same interceptor."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sparkd.errors import InvalidSpec, PermissionDenied
from sparkd.rpc.errors import Interceptor
from sparkd.v1 import deployment_service_pb2, host_service_pb2, status_service_pb2
from tests.api.conftest import Daemon
from tests.api.test_deployments import SOLO, create, error


def test_socket_and_directory_modes(daemon: Daemon) -> None:
    run = daemon.system.admin_socket.parent
    assert stat.S_IMODE(run.stat().st_mode) == 0o755  # any local user reaches the read-only socket
    assert stat.S_IMODE(daemon.system.admin_socket.stat().st_mode) == 0o660
    assert stat.S_IMODE(daemon.system.ro_socket.stat().st_mode) == 0o666


MUTATING = {
    "ApplyHost": lambda s: s.host.ApplyHost(host_service_pb2.ApplyHostRequest()),
    "ApplyHost(dry_run)": lambda s: s.host.ApplyHost(host_service_pb2.ApplyHostRequest(dry_run=True)),
    "CreateDeployment": lambda s: s.deployments.CreateDeployment(
        deployment_service_pb2.CreateDeploymentRequest(spec_yaml=SOLO)
    ),
    "DeleteDeployment": lambda s: s.deployments.DeleteDeployment(
        deployment_service_pb2.DeleteDeploymentRequest(name="solo")
    ),
}


@pytest.mark.parametrize("method", sorted(MUTATING))
def test_the_read_only_socket_refuses_every_mutating_method_and_changes_nothing(daemon: Daemon, method: str) -> None:
    create(daemon)
    before = daemon.fake.dump()
    with pytest.raises(grpc.RpcError) as e:
        MUTATING[method](daemon.ro)
    assert error(e.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")
    assert daemon.fake.dump() == before
    daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest())  # reads still work there


def test_streaming_services_are_served_on_the_read_only_socket(daemon: Daemon) -> None:
    watch = health_pb2_grpc.HealthStub(daemon.ro.channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    reflection = reflection_pb2_grpc.ServerReflectionStub(daemon.ro.channel)
    (answer,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert "sparkd.v1.StatusService" in {s.name for s in answer.list_services_response.service}


def test_streaming_handlers_get_the_same_authorization_and_error_mapping(tmp_path: Path) -> None:
    async def main() -> None:
        def deny(method: str, context: grpc.aio.ServicerContext) -> None:
            if method.endswith("/Watch"):
                raise PermissionDenied(f"{method} refused")

        class Broken(health.aio.HealthServicer):  # type: ignore[misc]
            async def Check(self, request: object, context: object) -> object:
                raise InvalidSpec.one("service", "bad")

        server = grpc.aio.server(interceptors=[Interceptor(deny)])
        health_pb2_grpc.add_HealthServicer_to_server(Broken(), server)
        server.add_insecure_port(f"unix:{tmp_path}/s.sock")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix:{tmp_path}/s.sock") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    async for _ in stub.Watch(health_pb2.HealthCheckRequest()):
                        pass
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.Check(health_pb2.HealthCheckRequest())
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_held_streams_never_starve_reads_on_the_read_only_socket(daemon: Daemon) -> None:
    from sparkd.rpc import limits

    stub = health_pb2_grpc.HealthStub(daemon.ro.channel)
    held = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(limits.LOCAL.max_streams)]
    try:
        for watch in held:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        extra = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.RpcError) as e:
            next(extra)
        assert error(e.value)[:2] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_RESOURCE_EXHAUSTED")
        for _ in range(20):  # unary reads still answer
            daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest(), timeout=2)
    finally:
        for watch in held:
            watch.cancel()


def test_the_methods_served_are_exactly_the_authorization_table(daemon: Daemon) -> None:
    """Asks the running daemon (reflection) what it serves: every method of every registered service must
    have a row in the table, so registering a new service without rows fails here."""
    from google.protobuf import descriptor_pb2

    from sparkd.rpc import authz

    reflection = reflection_pb2_grpc.ServerReflectionStub(daemon.ro.channel)

    def ask(request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        (answer,) = reflection.ServerReflectionInfo(iter([request]))
        return answer

    served = set()
    for service in ask(reflection_pb2.ServerReflectionRequest(list_services="")).list_services_response.service:
        files = ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=service.name))
        for raw in files.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for s in proto.service:
                if f"{proto.package}.{s.name}" == service.name:
                    served |= {f"/{service.name}/{m.name}" for m in s.method}
    assert served == set(authz.LOCAL)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_any_local_user_reaches_the_read_only_socket_and_no_one_else_the_admin_one(daemon: Daemon) -> None:
    """A real unprivileged process (uid 65534) connects: the kernel enforces the modes, not sparkd."""
    import shutil
    import subprocess

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    os.chmod(daemon.fake.root, 0o755)  # the test's sysroot stands in for /, which anyone may traverse
    probe = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path); print('ok')\n"
        "    except PermissionError:\n"
        "        print('denied')\n"
    )
    out = subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            probe,
            str(daemon.system.ro_socket),
            str(daemon.system.admin_socket),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["ok", "denied"]
