"""The worker's side of the peer service: a paired worker, called by its head's key over mutual TLS on
loopback (the real peer server and pairing; fakes under the engine)."""

from __future__ import annotations

import grpc
import pytest

from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.peer.v1 import peer_service_pb2_grpc as peer_grpc
from tests.api.conftest import Daemon, peer_channel

SPEC = {"name": "demo", "framework": 1, "model": "/models/demo", "parallelism": {"pipeline": 2, "tensor": 1}}


def as_head(worker: Daemon) -> grpc.Channel:
    """A channel to the worker's peer port with its head's key (the head is the caller it trusts)."""
    head = worker.cluster[0]
    return peer_channel(worker.peer_target, head, worker)


def epoch(worker: Daemon) -> int:
    return int(worker.system.peer.session.epoch)


def start(worker: Daemon, **assignment: object) -> peer_pb.StartPartResponse:
    fields = {"rank": 1, "nnodes": 2, "master_addr": "127.0.0.1", "master_port": 29501, **assignment}
    with as_head(worker) as channel:
        request = peer_pb.StartPartRequest(
            spec=SPEC,
            assignment=peer_pb.Assignment(**fields),  # type: ignore[arg-type]
            epoch=epoch(worker),
        )
        answer: peer_pb.StartPartResponse = peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=10)
        return answer


def stop(worker: Daemon, name: str) -> peer_pb.StopPartResponse:
    with as_head(worker) as channel:
        request = peer_pb.StopPartRequest(name=name, epoch=epoch(worker))
        answer: peer_pb.StopPartResponse = peer_grpc.PeerServiceStub(channel).StopPart(request, timeout=10)
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
    [
        {"rank": 0},
        {"rank": 2},
        {"nnodes": 100},
        {"nnodes": 3, "rank": 2},
        {"master_addr": "10.0.0.1"},
        {"master_addr": "127.0.0.2"},
        {"master_port": 0},
        {"master_port": 29565},
    ],
    ids=[
        "head-rank",
        "rank-past-nnodes",
        "too-many-nodes",
        "not-the-specs-world-size",
        "another-master",
        "the-worker-itself-as-master",
        "port-0",
        "outside-the-rendezvous-range",
    ],
)
def test_a_bad_assignment_is_invalid_argument_and_starts_nothing(worker: Daemon, assignment: dict[str, object]) -> None:
    with pytest.raises(grpc.RpcError) as e:
        start(worker, **assignment)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert worker.fake.systemd.units == {}


@pytest.mark.parametrize("name", ["../../etc/passwd", "demo\n", "", "a" * 300])
def test_stop_part_refuses_bad_names(worker: Daemon, name: str) -> None:
    start(worker)
    with pytest.raises(grpc.RpcError) as e:
        stop(worker, name)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sparkd-demo-rank1.service" in worker.fake.systemd.units


def test_stop_part_stops_and_forgets(worker: Daemon) -> None:
    start(worker)
    answer = stop(worker, "demo")
    assert answer.unit == "sparkd-demo-rank1.service" and worker.fake.systemd.units == {}
    assert not (worker.fake.root / "var/lib/sparkd/deployments/demo.json").exists()


def test_a_reassigned_part_replaces_the_old_one(worker: Daemon) -> None:
    start(worker)
    assert "sparkd-demo-rank1.service" in worker.fake.systemd.units
    with as_head(worker) as channel:
        request = peer_pb.StartPartRequest(
            spec={**SPEC, "parallelism": {"pipeline": 3, "tensor": 1}},
            assignment=peer_pb.Assignment(rank=2, nnodes=3, master_addr="127.0.0.1", master_port=29501),
            epoch=epoch(worker),
        )
        peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=10)
    assert sorted(worker.fake.systemd.units) == ["sparkd-demo-rank2.service"]  # nothing left unwatched


TRT = {"name": "trt", "framework": 3, "model": "/models/demo", "parallelism": {"pipeline": 2, "tensor": 1}}
ORTED = (
    'orted -mca ess "env" -mca ess_base_jobid "1" -mca ess_base_vpid 1 -mca ess_base_num_procs "2" '
    '-mca orte_hnp_uri "1.0;tcp://127.0.0.1:4000" --mca plm_rsh_agent "/usr/lib/sparkd/sparkd-launch-agent" '
    '--mca plm_rsh_no_tree_spawn "1" -mca plm "rsh"'
)


def start_trt(worker: Daemon, command: str = "") -> peer_pb.StartPartResponse:
    a = peer_pb.Assignment(rank=1, nnodes=2, master_addr="127.0.0.1", master_port=29502)
    with as_head(worker) as channel:
        request = peer_pb.StartPartRequest(spec=TRT, assignment=a, epoch=epoch(worker), launch_command=command)
        answer: peer_pb.StartPartResponse = peer_grpc.PeerServiceStub(channel).StartPart(request, timeout=10)
        return answer


def test_a_tensorrt_llm_rank_runs_only_the_orted_its_armed_part_was_asked_for(worker: Daemon) -> None:
    with pytest.raises(grpc.RpcError) as e:  # not armed by the head in this run: nothing starts
        start_trt(worker, ORTED)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is not armed" in str(e.value.details())
    assert worker.fake.systemd.units == {}
    start_trt(worker)  # armed: a record, no unit (mpirun starts it)
    assert worker.fake.systemd.units == {}
    for bad in ("sh -c id", ORTED.replace("127.0.0.1:4000", "10.0.0.66:4000")):
        with pytest.raises(grpc.RpcError) as e:
            start_trt(worker, bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "launch_command" in str(e.value.details())
    assert worker.fake.systemd.units == {}
    answer = start_trt(worker, ORTED)
    argv = list(worker.fake.systemd.units[answer.unit].spec.argv)
    assert argv[0] == "/usr/bin/orted" and "--daemonize" not in argv and argv[argv.index("ess_base_vpid") + 1] == "1"
