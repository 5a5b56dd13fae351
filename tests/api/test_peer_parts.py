"""The worker's side of the peer service, over a real TCP peer server on loopback, on fakes."""

from __future__ import annotations

import grpc
import pytest

from sparkd.config import Config
from sparkd.peer.server import caller_role
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.peer.v1 import peer_service_pb2_grpc as peer_grpc
from tests.api.conftest import Daemon

SPEC = {"name": "demo", "framework": 1, "model": "/models/demo", "parallelism": {"pipeline": 2, "tensor": 1}}


def start(worker: Daemon, **assignment: object) -> peer_pb.StartPartResponse:
    fields = {"rank": 1, "nnodes": 2, "master_addr": "127.0.0.1", "master_port": 29501, **assignment}
    with grpc.insecure_channel(worker.peer_target) as channel:
        request = peer_pb.StartPartRequest(spec=SPEC, assignment=peer_pb.Assignment(**fields))  # type: ignore[arg-type]
        answer: peer_pb.StartPartResponse = peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=10)
        return answer


def test_start_part_renders_the_workers_own_launch_plan(worker: Daemon) -> None:
    answer = start(worker)
    assert (answer.unit, answer.unit_active_state) == ("sparkd-demo-rank1.service", "active")
    dump = worker.fake.dump(files=False)
    assert (
        "unit sparkd-demo-rank1.service active argv=/opt/vllm/bin/vllm serve /models/demo --served-model-name demo "
        "--tensor-parallel-size 1 --pipeline-parallel-size 2 --distributed-executor-backend mp --nnodes 2 "
        "--node-rank 1 --master-addr 127.0.0.1 --master-port 29501 --headless"
    ) in dump
    assert "unit sparkd-demo-rank1.service env VLLM_HOST_IP=127.0.0.2" in dump
    start(worker)  # again: adopted, not restarted
    assert worker.fake.systemd.units["sparkd-demo-rank1.service"].invocations == 1


@pytest.mark.parametrize(
    "assignment",
    [{"rank": 0}, {"rank": 2}, {"nnodes": 100}, {"master_addr": "10.0.0.1"}, {"master_port": 0}],
    ids=["head-rank", "rank-past-nnodes", "too-many-nodes", "another-master", "port-0"],
)
def test_a_bad_assignment_is_invalid_argument_and_starts_nothing(worker: Daemon, assignment: dict[str, object]) -> None:
    with pytest.raises(grpc.RpcError) as e:
        start(worker, **assignment)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert worker.fake.systemd.units == {}


@pytest.mark.parametrize("name", ["../../etc/passwd", "demo\n", "", "a" * 300])
def test_stop_part_refuses_bad_names(worker: Daemon, name: str) -> None:
    start(worker)
    with grpc.insecure_channel(worker.peer_target) as channel, pytest.raises(grpc.RpcError) as e:
        peer_grpc.PeerServiceStub(channel).StopPart(peer_pb.StopPartRequest(name=name), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sparkd-demo-rank1.service" in worker.fake.systemd.units


def test_stop_part_stops_and_forgets(worker: Daemon) -> None:
    start(worker)
    with grpc.insecure_channel(worker.peer_target) as channel:
        answer = peer_grpc.PeerServiceStub(channel).StopPart(peer_pb.StopPartRequest(name="demo"), timeout=10)
    assert answer.unit == "sparkd-demo-rank1.service" and worker.fake.systemd.units == {}
    assert not (worker.fake.root / "var/lib/sparkd/deployments/demo.json").exists()


def test_caller_roles_come_from_twin_a_addresses() -> None:
    from sparkd.config import NodeConfig

    config = Config(node=NodeConfig("spark2", "worker", 1))
    assert caller_role(config, "192.168.100.1") == "head"
    assert caller_role(config, "192.168.100.3") == "worker"
    assert caller_role(config, "192.168.101.1") == ""  # twin B: not a caller address
    assert caller_role(config, "10.0.0.1") == "" and caller_role(config, "unix:") == ""


def test_a_reassigned_part_replaces_the_old_one(worker: Daemon) -> None:
    start(worker)
    assert "sparkd-demo-rank1.service" in worker.fake.systemd.units
    with grpc.insecure_channel(worker.peer_target) as channel:
        request = peer_pb.StartPartRequest(
            spec={**SPEC, "parallelism": {"pipeline": 3, "tensor": 1}},
            assignment=peer_pb.Assignment(rank=2, nnodes=3, master_addr="127.0.0.1", master_port=29501),
        )
        peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=10)
    assert sorted(worker.fake.systemd.units) == ["sparkd-demo-rank2.service"]  # nothing left unwatched
