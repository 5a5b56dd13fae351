"""Supervision on a loopback head and worker (real gRPC, real peer protocol, fake OS): the wrong states the
walking skeleton reported, coordinated restarts, the circuit breaker, the gates, plans and logs.

The daemons' probes and supervisor run only when a test asks (`observe`, `supervise`), so each test shows
exactly which evidence led to which state."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from sparkd.v1 import deployment_pb2, deployment_service_pb2
from tests.api.conftest import Daemon

SPEC = """name: demo
framework: vllm
model: /models/demo
parallelism: {pipeline: 2, tensor: 1}
port: 8000
"""
HEAD_UNIT, WORKER_UNIT = "sparkd-demo-rank0.service", "sparkd-demo-rank1.service"
DATA = Path(__file__).parent.parent / "data" / "model-configs"


def create(head: Daemon, spec: str = SPEC) -> deployment_pb2.Deployment:
    request = deployment_service_pb2.CreateDeploymentRequest(spec_yaml=spec)
    result: deployment_pb2.Deployment = head.admin.deployments.CreateDeployment(request).deployment
    return result


def get(d: Daemon, name: str = "demo", admin: bool = False) -> deployment_pb2.Deployment:
    """The deployment through the read-only socket (the admin socket's answer adds the journal lines)."""
    result: deployment_pb2.Deployment = (
        (d.admin if admin else d.ro)
        .deployments.GetDeployment(deployment_service_pb2.GetDeploymentRequest(name=name))
        .deployment
    )
    return result


def state(d: deployment_pb2.Deployment) -> str:
    return deployment_pb2.DeploymentState.Name(d.state).removeprefix("DEPLOYMENT_STATE_")


def until(what: str, probe: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def serving(head: Daemon, worker: Daemon, name: str = "demo", port: int = 8000) -> None:
    """The head's framework answers for `name`; both nodes observe; the worker's report reaches the head."""
    head.fake.http.serve(port, name)
    worker.observe()
    until("the worker's report", lambda: head.system.peers.part_report(_worker_id(head), name).summary is not None)
    worker.observe()
    time.sleep(0.6)  # one more hello carries the worker's observed unit state
    head.observe()


def _worker_id(head: Daemon) -> str:
    return head.system.peers.connected_workers()[0].node_id


def observed_state(head: Daemon) -> str:
    head.observe()
    return state(get(head))


def restart_now(head: Daemon) -> None:
    """Makes a planned restart due now (the backoff has a test of its own) and lets the supervisor look."""

    def due() -> None:
        for w in head.system.supervisor._watch.values():
            w.due = 0.0

    head.run(due)
    head.supervise()


def ready(head: Daemon, worker: Daemon, name: str = "demo", port: int = 8000) -> deployment_pb2.Deployment:
    serving(head, worker, name, port)
    d = get(head, name)
    assert state(d) == "READY", d.message
    return d


def test_a_silent_worker_is_never_healthy(cluster: list[Daemon]) -> None:
    """Wrong state 1: with the worker's node silent, the head said READY (`spark2:unknown`)."""
    head, worker = cluster
    create(head)
    ready(head, worker)
    worker.close()  # no more hellos: the node falls silent
    until("the head declares spark2 down", lambda: not head.system.peers.connected_workers(), timeout=8)
    head.observe()
    d = get(head)
    assert state(d) == "UNHEALTHY"
    assert d.message.startswith("rank 1 on spark2: node silent for ") and "no evidence" in d.message
    assert [n.node_reachable for n in d.nodes] == [True, False]


def test_two_deployments_get_their_own_rendezvous_ports_and_both_serve(cluster: list[Daemon]) -> None:
    """Wrong state 2: every deployment used master port 29501."""
    head, worker = cluster
    a = create(head)
    b = create(head, SPEC.replace("name: demo", "name: other").replace("port: 8000", "port: 8001"))
    assert (a.master_port, b.master_port) == (29501, 29502)
    ready(head, worker)
    ready(head, worker, "other", 8001)
    argv = head.fake.systemd.units["sparkd-other-rank0.service"].spec.argv
    assert list(argv[argv.index("--master-port") :][:2]) == ["--master-port", "29502"]


def test_a_port_already_served_is_refused_before_anything_starts(cluster: list[Daemon]) -> None:
    """Wrong state 2, the rest: `deploy up` of a port another process serves printed READY."""
    head, worker = cluster
    head.fake.ports.taken.add(8000)
    with pytest.raises(grpc.RpcError) as e:
        create(head)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "spark1: port 8000, the API port (port) of rank 0, is already in use" in str(e.value.details())
    assert head.fake.systemd.units == {} and worker.fake.systemd.units == {}


def test_a_port_that_answers_for_another_model_is_not_ready(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    serving(head, worker)
    head.fake.http.models[8000] = ["someone-else"]
    head.observe()
    d = get(head)
    assert state(d) == "UNHEALTHY" and "serves someone-else, not demo" in d.message


def test_a_worker_refuses_to_delete_what_the_head_coordinates(cluster: list[Daemon]) -> None:
    """Wrong state 3: `deploy down` on a worker's socket stopped its rank and broke the head's deployment."""
    head, worker = cluster
    create(head)
    with pytest.raises(grpc.RpcError) as e:
        worker.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="demo"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "coordinated by spark1: run `sparkctl-client deploy down demo` on spark1" in str(e.value.details())
    assert worker.fake.systemd.units[WORKER_UNIT].active_state == "active"
    forced = worker.admin.deployments.DeleteDeployment(
        deployment_service_pb2.DeleteDeploymentRequest(name="demo", force=True)
    )
    assert list(forced.stopped_units) == [WORKER_UNIT]
    assert head.fake.systemd.units[HEAD_UNIT].active_state == "active"  # only the worker's own part


def test_status_names_the_rank_that_died_first_with_its_cause_and_journal(cluster: list[Daemon]) -> None:
    """Wrong state 4: after the worker's rank died, the CLI blamed the head's unit."""
    head, worker = cluster
    create(head)
    ready(head, worker)
    worker.fake.journal.add(WORKER_UNIT, "ERROR EngineCore died unexpectedly", 3)
    worker.fake.systemd.crash(WORKER_UNIT, status=3)
    time.sleep(0.01)
    head.fake.systemd.crash(HEAD_UNIT, status=1)  # later: the head's rank follows its peer down
    worker.observe()
    until("the worker reports its failure", lambda: observed_state(head) == "FAILED" and "spark2" in get(head).message)
    d = get(head)
    assert d.message == "rank 1 on spark2 failed first: exited with status 3 (1 more rank(s) down)"
    head.supervise()  # opens the incident: the first failure is recorded ...
    worker.observe()  # ... and the worker's journal lines follow with its next hello

    def tail() -> list[str]:
        head.supervise()
        return list(get(head, admin=True).supervision.last_failure.journal_tail)

    until("the journal lines", lambda: tail() != [])
    f = get(head, admin=True).supervision.last_failure
    assert (f.rank, f.node_name, f.unit, f.cause) == (1, "spark2", WORKER_UNIT, "exited with status 3")
    assert "ERROR EngineCore died unexpectedly" in list(f.journal_tail)


def test_a_dead_worker_rank_is_restarted_in_order_and_serves_again(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    ready(head, worker)
    pids = head.fake.systemd.units[HEAD_UNIT].main_pid, worker.fake.systemd.units[WORKER_UNIT].main_pid
    worker.fake.systemd.crash(WORKER_UNIT, status=3)
    worker.observe()
    until("the head sees the dead rank", lambda: observed_state(head) == "FAILED")
    head.supervise()  # the incident: failure 1, a restart due after the first backoff (1 s)
    assert get(head).supervision.failures_in_row == 1
    time.sleep(1.1)
    head.supervise()  # the restart: every rank stopped, then the worker's started, then the head's
    d = get(head)
    assert d.supervision.restarts == 1
    # Both ranks run new processes: the head's was stopped too (a pipeline restarts as one).
    assert head.fake.systemd.units[HEAD_UNIT].main_pid != pids[0]
    assert worker.fake.systemd.units[WORKER_UNIT].main_pid != pids[1]
    ready(head, worker)
    events = [(e.subject, e.state) for e in head.system.bus.recent if e.kind == "deployment"]
    assert ("demo", "failure") in events and ("demo", "restart") in events


def test_five_failures_in_a_row_open_the_breaker_and_restart_closes_it(cluster: list[Daemon]) -> None:
    head = cluster[0]
    create(head)
    for n in range(1, 6):
        head.fake.systemd.crash(HEAD_UNIT, status=1)
        head.observe()
        head.supervise()
        d = get(head)
        assert d.supervision.failures_in_row == n
        if n < 5:
            restart_now(head)
            assert get(head).supervision.restarts == n
    d = get(head)
    assert d.supervision.breaker_open and state(d) == "FAILED"
    assert d.message.startswith("circuit breaker open after 5 failures in a row, every rank stopped; last: rank 0")
    # The ranks still up could not serve without the dead one: stopped, the nodes' memory is free again.
    assert HEAD_UNIT not in head.fake.systemd.units and WORKER_UNIT not in cluster[1].fake.systemd.units
    assert "deploy restart demo" in d.message
    assert ("demo", "breaker_open") in [(e.subject, e.state) for e in head.system.bus.recent]
    head.supervise()
    assert get(head).supervision.restarts == 4  # open: no more restarts
    r = head.admin.deployments.RestartDeployment(deployment_service_pb2.RestartDeploymentRequest(name="demo"))
    assert not r.deployment.supervision.breaker_open and r.deployment.supervision.restarts == 5


def test_a_wedge_is_a_failure_and_restarted(cluster: list[Daemon]) -> None:
    """/health answers 200 and the processes live, but no token comes out."""
    head, worker = cluster
    create(head)
    ready(head, worker)
    head.fake.http.wedged.add(8000)
    head.observe()
    d = get(head)
    assert state(d) == "UNHEALTHY" and "no token" in d.message  # one failed probe is not a wedge yet
    head.observe()
    d = get(head)
    assert state(d) == "FAILED" and "wedged: /health answers 200 but a probe completion got no token" in d.message
    head.supervise()
    restart_now(head)
    assert get(head).supervision.restarts == 1 and head.fake.systemd.units[HEAD_UNIT].active_state == "active"


def test_a_restarted_daemon_adopts_its_units_and_keeps_its_counters(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    ready(head, worker)
    head.fake.systemd.crash(HEAD_UNIT)
    head.observe()
    head.supervise()
    restart_now(head)
    pid = head.fake.systemd.units[HEAD_UNIT].main_pid
    record = json.loads((head.fake.root / "var/lib/sparkd/deployments/demo.json").read_text())
    assert record["supervision"]["restarts"] == 1
    ready(head, worker)
    head.close()  # sparkd stops; its units do not
    again = Daemon(head.system.config, head.fake)
    cluster[0] = again
    try:
        until("the worker reconnects", lambda: bool(again.system.peers.connected_workers()))
        ready(again, worker)
        again.supervise()
        assert get(again).supervision.restarts == 1  # read back from the record
        assert again.fake.systemd.units[HEAD_UNIT].main_pid == pid  # adopted, never restarted
    finally:
        again.close()


def test_a_rank_that_died_earlier_but_reported_later_is_recorded_as_first(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    ready(head, worker)
    worker.fake.systemd.crash(WORKER_UNIT, status=3)  # dies first ...
    time.sleep(0.01)
    head.fake.systemd.crash(HEAD_UNIT, status=1)  # ... the head follows, and sees its own death first
    head.observe()
    head.supervise()
    assert get(head).supervision.last_failure.rank == 0
    worker.observe()  # the worker's report, with its earlier exit time, comes with its next hello

    def first() -> int:
        head.supervise()
        return get(head).supervision.last_failure.rank

    until("the record names the worker", lambda: first() == 1)
    assert get(head).supervision.failures_in_row == 1  # still one incident


def test_a_restarted_run_starts_with_fresh_evidence(cluster: list[Daemon]) -> None:
    """The new run loads its weights for minutes: its /health 503 is a start, not a lost /health."""
    head, worker = cluster
    create(head)
    ready(head, worker)
    head.fake.systemd.crash(HEAD_UNIT)
    head.observe()
    head.supervise()
    head.fake.http.answers[8000] = 503
    restart_now(head)
    assert state(get(head)) != "READY"  # not the previous run's evidence
    for _ in range(5):
        head.observe()
    d = get(head)
    assert state(d) == "STARTING" and d.supervision.failures_in_row == 1, d.message
    head.supervise()
    assert get(head).supervision.failures_in_row == 1


def test_a_deployment_that_never_gets_ready_is_a_failure(cluster: list[Daemon]) -> None:
    head = cluster[0]
    create(head)
    supervisor = head.system.supervisor
    head.run(lambda: setattr(supervisor, "policy", dataclasses.replace(supervisor.policy, start_s=0.0)))
    head.observe()
    head.supervise()
    f = get(head).supervision.last_failure
    assert f.rank == 0 and f.cause.startswith("not READY 0 s after its start")


def test_a_deployment_being_deleted_is_never_restarted(cluster: list[Daemon]) -> None:
    head, worker = cluster
    create(head)
    worker.close()  # `deploy down` cannot reach it
    until("spark2 down", lambda: not head.system.peers.connected_workers(), timeout=8)
    with pytest.raises(grpc.RpcError):
        head.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="demo"))
    head.observe()
    assert state(get(head)) == "STOPPING"
    head.supervise()
    assert HEAD_UNIT not in head.fake.systemd.units  # stopped, and stays so
    with pytest.raises(grpc.RpcError) as e:
        head.admin.deployments.RestartDeployment(deployment_service_pb2.RestartDeploymentRequest(name="demo"))
    assert "is being deleted" in str(e.value.details())
