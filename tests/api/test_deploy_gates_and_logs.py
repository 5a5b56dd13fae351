"""Gates, plans and logs on a loopback head and worker (real gRPC and peer protocol, fake OS): model files and
memory refuse a start naming the node, `deploy plan` shows every node's unit, `deploy logs` reads every rank's
journal through the peer API, and the read-only socket never shows journal lines."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from sparkd.host.protocols import CommandResult
from sparkd.lab import fixtures
from sparkd.v1 import deployment_service_pb2
from tests.api.conftest import Daemon
from tests.api.test_supervision import HEAD_UNIT, SPEC, WORKER_UNIT, create, get

DATA = Path(__file__).parent.parent / "data" / "model-configs"


def test_model_files_that_differ_refuse_the_start_naming_the_side(cluster: list[Daemon]) -> None:
    head, worker = cluster
    fixtures.write_model(worker.fake.root, "/models/demo", weights=b"other weights")
    with pytest.raises(grpc.RpcError) as e:
        create(head)
    details = str(e.value.details())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "model.safetensors" in details
    assert "spark1" in details and "spark2" in details
    assert head.fake.systemd.units == {} and worker.fake.systemd.units == {}


def test_a_model_that_does_not_fit_is_refused_with_the_shortfall(cluster: list[Daemon]) -> None:
    head, worker = cluster
    for d in cluster:
        model = d.fake.root / "models/llama-70b"
        model.mkdir(parents=True)
        (model / "config.json").write_text((DATA / "llama-3.1-70b-instruct.json").read_text())
    one = SPEC.replace("/models/demo", "/models/llama-70b").replace("pipeline: 2", "pipeline: 1")
    with pytest.raises(grpc.RpcError) as e:
        create(head, one)
    assert "rank 0 on spark1: weights 141.1 GB + reserve 2.0 GB exceed the budget of 120.2 GB" in str(e.value.details())
    plan = head.admin.deployments.PlanDeployment(
        deployment_service_pb2.PlanDeploymentRequest(spec_yaml=one.replace("pipeline: 1", "pipeline: 2"))
    )
    assert list(plan.blockers) == [] and plan.memory.fits
    assert [(n.node_name, n.first_layer, n.end_layer) for n in plan.memory.nodes] == [
        ("spark1", 0, 40),
        ("spark2", 40, 80),
    ]
    assert [n.node_name for n in plan.nodes] == ["spark1", "spark2"] and "--headless" in plan.nodes[1].argv
    assert plan.nodes[1].environment["VLLM_HOST_IP"] == "127.0.0.2"
    assert head.fake.systemd.units == {} and worker.fake.systemd.units == {}


def test_logs_come_from_every_rank_through_the_peer_api(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    head.fake.journal.add(HEAD_UNIT, "head says hello")
    worker.fake.journal.add(WORKER_UNIT, "worker says hello")
    request = deployment_service_pb2.DeploymentLogsRequest(name="demo")
    lines = {(r.node_name, r.rank, r.message) for r in head.admin.deployments.DeploymentLogs(request)}
    assert {("spark1", 0, "head says hello"), ("spark2", 1, "worker says hello")} <= lines
    only = deployment_service_pb2.DeploymentLogsRequest(name="demo", node_name="spark2")
    assert {r.node_name for r in head.admin.deployments.DeploymentLogs(only)} == {"spark2"}
    with pytest.raises(grpc.RpcError) as e:
        list(head.ro.deployments.DeploymentLogs(request))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_logs_follow_streams_new_lines_from_the_worker(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    request = deployment_service_pb2.DeploymentLogsRequest(name="demo", node_name="spark2", follow=True, lines=1)
    stream = head.admin.deployments.DeploymentLogs(request)
    try:
        worker.run(lambda: worker.fake.journal.add(WORKER_UNIT, "first line"))
        worker.run(lambda: worker.fake.journal.add(WORKER_UNIT, "a line written while followed"))
        seen = []
        for line in stream:
            seen.append(line.message)
            if line.message == "a line written while followed":
                break
        assert seen[-1] == "a line written while followed" and line.node_name == "spark2"
    finally:
        stream.cancel()


def test_the_read_only_socket_shows_the_cause_but_not_the_journal(cluster: list[Daemon]) -> None:
    head = cluster[0]
    create(head)
    head.fake.journal.add(HEAD_UNIT, "prompt: a secret")
    head.fake.systemd.crash(HEAD_UNIT)
    head.observe()
    head.supervise()
    admin = head.admin.deployments.GetDeployment(deployment_service_pb2.GetDeploymentRequest(name="demo"))
    assert "prompt: a secret" in list(admin.deployment.supervision.last_failure.journal_tail)
    ro = get(head).supervision.last_failure
    assert ro.cause == "exited with status 1" and list(ro.journal_tail) == []


def test_the_gates_hold_up_no_other_deployment(cluster: list[Daemon]) -> None:
    """A first manifest of a big model hashes for minutes: meanwhile another deployment can still be deleted."""
    import asyncio
    import threading

    head, worker = cluster
    create(head, SPEC.replace("name: demo", "name: other").replace("port: 8000", "port: 8001"))
    release = worker.run(asyncio.Event)
    gates = worker.system.deployments.gates
    original = gates.local_plan

    async def slow(*args: object) -> object:
        await release.wait()
        return await original(*args)  # type: ignore[arg-type]

    worker.run(lambda: setattr(gates, "local_plan", slow))
    created: list[object] = []
    thread = threading.Thread(target=lambda: created.append(create(head)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "demo" not in head.run(lambda: dict(head.system.deployments.busy)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stopped = head.admin.deployments.DeleteDeployment(
            deployment_service_pb2.DeleteDeploymentRequest(name="other"), timeout=5
        )
        assert list(stopped.stopped_units) == ["sparkd-other-rank0.service", "sparkd-other-rank1.service"]
        assert thread.is_alive() and not created  # demo's gates still wait
    finally:
        worker.run(release.set)
        thread.join(timeout=10)
    assert created and HEAD_UNIT in head.fake.systemd.units


CONTAINER_SPEC = SPEC + 'runtime: {image: "nvcr.io/nvidia/vllm:26.05-py3"}\n'
IMAGE_A, IMAGE_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _image(d: Daemon, image_id: str, returncode: int = 0, stderr: str = "") -> None:
    d.fake.runner.results["/usr/bin/docker"] = CommandResult(("docker",), returncode, image_id + "\n", stderr)


def test_a_container_image_that_differs_between_nodes_refuses_the_start(cluster: list[Daemon]) -> None:
    head, worker = cluster
    _image(head, IMAGE_A)
    _image(worker, IMAGE_B)
    with pytest.raises(grpc.RpcError) as e:
        create(head, CONTAINER_SPEC)
    details = str(e.value.details())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "spark2: image nvcr.io/nvidia/vllm:26.05-py3 is sha256:bbbbbbbbbbbb" in details and "spark1" in details
    assert head.fake.systemd.units == {} and worker.fake.systemd.units == {}
    inspected = [a for a in worker.fake.runner.argvs if a[:3] == ("/usr/bin/docker", "image", "inspect")]
    assert inspected and inspected[-1][-1] == "nvcr.io/nvidia/vllm:26.05-py3"


def test_an_image_missing_on_a_node_is_named_with_the_pull_to_run(cluster: list[Daemon]) -> None:
    head, worker = cluster
    _image(head, IMAGE_A)
    _image(worker, "", 1, "Error: No such image: nvcr.io/nvidia/vllm:26.05-py3")
    with pytest.raises(grpc.RpcError) as e:
        create(head, CONTAINER_SPEC)
    assert "docker pull nvcr.io/nvidia/vllm:26.05-py3" in str(e.value.details())


def test_the_same_image_on_every_node_passes_and_the_ranks_run_docker(cluster: list[Daemon]) -> None:
    head, worker = cluster
    for d in cluster:
        _image(d, IMAGE_A)
    create(head, CONTAINER_SPEC)
    for d, unit in ((head, HEAD_UNIT), (worker, WORKER_UNIT)):
        argv = list(d.fake.systemd.units[unit].spec.argv)
        assert argv[:2] == ["/usr/bin/docker", "run"] and "nvcr.io/nvidia/vllm:26.05-py3" in argv
