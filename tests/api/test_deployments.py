"""DeploymentService on a whole daemon on fakes: success paths, error mapping, and bad names."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sparkd.v1 import deployment_pb2, deployment_service_pb2, status_service_pb2
from tests.api.conftest import Daemon

SOLO = "name: solo\nframework: vllm\nmodel: /models/tiny\nparallelism: {pipeline: 1, tensor: 1}\n"


def error(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """The code, the ErrorInfo reason and the BadRequest fields of a failed call."""
    status = rpc_status.from_call(call)
    reason, fields = "", []
    assert status is not None
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return call.code(), reason, fields


def create(d: Daemon, yaml: str = SOLO) -> deployment_pb2.Deployment:
    request = deployment_service_pb2.CreateDeploymentRequest(spec_yaml=yaml)
    deployment: deployment_pb2.Deployment = d.admin.deployments.CreateDeployment(request).deployment
    return deployment


def test_create_starts_the_unit_and_turns_ready_on_evidence(daemon: Daemon) -> None:
    deployment = create(daemon)
    assert deployment.name == "solo" and deployment.spec.parallelism.pipeline == 1
    unit = "sparkd-solo-rank0.service"
    dump = daemon.fake.dump(files=False)
    assert f"unit {unit} active argv=/opt/vllm/bin/vllm serve /models/tiny --served-model-name solo" in dump
    assert f"unit {unit} env NCCL_IB_HCA==rocep1s0f1,roceP2p1s0f1" in dump
    assert f"unit {unit} env VLLM_HOST_IP=192.168.100.1" in dump
    get = deployment_service_pb2.GetDeploymentRequest(name="solo")
    daemon.observe()
    assert daemon.admin.deployments.GetDeployment(get).deployment.state == deployment_pb2.DEPLOYMENT_STATE_STARTING
    daemon.fake.http.serve(8000, "solo")
    daemon.observe()
    got = daemon.admin.deployments.GetDeployment(get).deployment
    assert got.state == deployment_pb2.DEPLOYMENT_STATE_READY
    assert got.message == "serving solo on port 8000 (a probe completion answered)"
    daemon.fake.systemd.crash(unit, status=3)
    daemon.observe()
    got = daemon.ro.deployments.GetDeployment(get).deployment
    assert got.state == deployment_pb2.DEPLOYMENT_STATE_FAILED
    assert got.message == "rank 0 on spark1 failed first: exited with status 3"
    events = [(e.kind, e.subject, e.state) for e in daemon.system.bus.recent if e.kind == "deployment"]
    assert events == [
        ("deployment", "solo", "STARTING"),
        ("deployment", "solo", "READY"),
        ("deployment", "solo", "FAILED"),
    ]


def test_creating_the_same_spec_again_changes_nothing_and_another_spec_is_refused(daemon: Daemon) -> None:
    create(daemon)
    before = daemon.fake.dump()
    create(daemon)
    assert daemon.fake.dump() == before
    with pytest.raises(grpc.RpcError) as e:
        create(daemon, SOLO.replace("/models/tiny", "/models/other"))
    assert error(e.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ALREADY_EXISTS")


def test_delete_stops_the_unit_and_removes_the_record(daemon: Daemon, root: Path) -> None:
    create(daemon)
    stopped = daemon.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="solo"))
    assert list(stopped.stopped_units) == ["sparkd-solo-rank0.service"]
    assert "unit " not in daemon.fake.dump() and not (root / "var/lib/sparkd/deployments/solo.json").exists()
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.deployments.GetDeployment(deployment_service_pb2.GetDeploymentRequest(name="solo"))
    assert error(e.value)[:2] == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_NOT_FOUND")


def test_more_ranks_than_nodes_is_a_precondition(daemon: Daemon) -> None:
    with pytest.raises(grpc.RpcError) as e:
        create(daemon, SOLO.replace("pipeline: 1", "pipeline: 2"))
    assert error(e.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_PRECONDITION_FAILED")
    assert "unit " not in daemon.fake.dump()


@pytest.mark.parametrize("name", ["../../../etc/ssh/sshd_config", "demo\n", "", "x" * 5000, "a\0b", "ssh"])
def test_bad_names_on_get_and_delete_are_invalid_argument_and_touch_nothing(
    daemon: Daemon, root: Path, name: str
) -> None:
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    planted = root / "etc/ssh/sshd_config.json"
    planted.write_text("{}")
    before = daemon.fake.dump()
    for call, request in (
        (daemon.admin.deployments.GetDeployment, deployment_service_pb2.GetDeploymentRequest(name=name)),
        (daemon.admin.deployments.DeleteDeployment, deployment_service_pb2.DeleteDeploymentRequest(name=name)),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call(request)
        code, reason, fields = error(e.value)
        expected = grpc.StatusCode.NOT_FOUND if name == "ssh" else grpc.StatusCode.INVALID_ARGUMENT
        assert code == expected, (name, code)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert reason == "ERROR_REASON_INVALID_SPEC" and fields == ["name"]
    assert planted.exists() and daemon.fake.dump() == before


def test_nul_in_model_or_served_name_never_reaches_systemd(daemon: Daemon) -> None:
    for yaml in (SOLO.replace("/models/tiny", '"/models/ti\\0ny"'), SOLO + 'served_model_name: "a\\0b"\n'):
        with pytest.raises(grpc.RpcError) as e:
            create(daemon, yaml)
        assert error(e.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert daemon.fake.systemd.calls == []


def test_structured_spec_with_an_unknown_enum_value_is_invalid_argument(daemon: Daemon) -> None:
    spec = deployment_pb2.DeploymentSpec(
        name="solo",
        framework=99,  # type: ignore[arg-type]
        model="/m",
        parallelism=deployment_pb2.Parallelism(pipeline=4294967295, tensor=1),
    )
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.deployments.CreateDeployment(deployment_service_pb2.CreateDeploymentRequest(spec=spec))
    code, reason, fields = error(e.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SPEC")
    assert fields == ["spec.framework", "spec.parallelism.pipeline"]


def test_a_20000_character_value_is_cut_short_and_still_invalid_argument(daemon: Daemon) -> None:
    with pytest.raises(grpc.RpcError) as e:
        create(daemon, SOLO.replace("vllm", "x" * 20000))
    assert error(e.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(e.value)
    assert status is not None and status.ByteSize() < 8192


def test_get_status_reads_the_snapshot_only(daemon: Daemon) -> None:
    create(daemon)
    daemon.fake.http.serve(8000, "solo")
    daemon.observe()
    calls = len(daemon.fake.systemd.calls), daemon.fake.http.calls
    for _ in range(20):
        status = daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest())
    assert (len(daemon.fake.systemd.calls), daemon.fake.http.calls) == calls  # no D-Bus, no HTTP on the read path
    assert [d.state for d in status.deployments] == [deployment_pb2.DEPLOYMENT_STATE_READY]
    assert status.node.name == "spark1" and status.node.gpus[0].name == "NVIDIA GB10"


def test_two_deployments_never_share_an_api_port(daemon: Daemon) -> None:
    create(daemon)
    with pytest.raises(grpc.RpcError) as e:
        create(daemon, SOLO.replace("solo", "other"))
    assert error(e.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ALREADY_EXISTS")
    assert "port 8000 is the API port of deployment solo" in str(e.value.details())
