"""HostService on a whole daemon on fakes: one apply at a time, bad input, the management guard, confirmation,
and the cluster-wide apply over the real peer protocol (loopback), committing everywhere or nowhere."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import CommandResult
from sparkd.v1 import host_service_pb2 as pb
from tests.api.conftest import Daemon
from tests.api.test_deployments import error


def _apply(d: Daemon, text: str = "", confirm_timeout_s: float = 0.0) -> pb.ApplyHostResponse:
    request = pb.ApplyHostRequest(target=pb.HostTarget(desired_state=text), confirm_timeout_s=confirm_timeout_s)
    response: pb.ApplyHostResponse = d.admin.host.ApplyHost(request)
    return response


def test_two_applies_started_together_one_runs_the_other_is_aborted(daemon: Daemon) -> None:
    daemon.fake.netlink.delay = 0.3  # each MTU change takes a while: the second apply comes in during the first
    results: dict[str, object] = {}

    def first() -> None:
        results["first"] = _apply(daemon)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.15)
    with pytest.raises(grpc.RpcError) as e:
        _apply(daemon)
    thread.join(timeout=30)
    assert error(e.value)[:2] == (grpc.StatusCode.ABORTED, "ERROR_REASON_ABORTED")
    assert "host apply is in progress" in str(e.value.details())
    first_result = results["first"]
    assert isinstance(first_result, pb.ApplyHostResponse) and first_result.changed and first_result.verified
    # Nothing was rolled back: the first apply's state stands, and a third apply finds nothing to do.
    assert "link enp1s0f1np1 up carrier mtu=9000 addr=192.168.100.1/24" in daemon.fake.dump()
    assert not _apply(daemon).changed


BAD = {
    "an invalid CIDR": ('[host]\naddress_a = "192.168.100.300/24"\n', "desired_state.host.address_a"),
    "an MTU below 1280": ("[interconnect]\nmtu = 1279\n", "desired_state.interconnect.mtu"),
    "an MTU above 9216": ("[interconnect]\nmtu = 9217\n", "desired_state.interconnect.mtu"),
    "an unknown interface": ('[host]\ntwin_a = "eth9"\n', "host.twin_a"),
    "a subnet overlapping the management network": (
        '[interconnect]\nsubnet_a = "10.77.0.0/24"\n',
        "interconnect.subnet_a",
    ),
    "twins on one subnet": (
        '[host]\naddress_a = "192.168.100.1/24"\naddress_b = "192.168.100.5/24"\n',
        "desired_state.host.address_b",
    ),
    "twins on one subnet (subnets)": (
        '[interconnect]\nsubnet_a = "192.168.100.0/24"\nsubnet_b = "192.168.100.0/25"\n',
        "desired_state.interconnect.subnet_b",
    ),
    "an unknown key": ("[host]\nmtu = 9000\n", "desired_state.host.mtu"),
    "not TOML": ("[host\n", "desired_state"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_desired_state_is_invalid_argument_naming_the_field_and_changes_nothing(daemon: Daemon, case: str) -> None:
    daemon.fake.netlink.add_link("mgmt0", "10.77.0.1/24")
    text, field = BAD[case]
    before = daemon.fake.dump()
    for call in (
        lambda: daemon.admin.host.PlanHost(pb.PlanHostRequest(target=pb.HostTarget(desired_state=text))),
        lambda: _apply(daemon, text),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        code, reason, violations = error(e.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SPEC")
        assert field in violations, violations
    assert daemon.fake.dump() == before


def test_the_management_interface_is_changed_only_with_the_risk_accepted(daemon: Daemon) -> None:
    daemon.fake.netlink.add_link("mgmt0", "10.77.0.1/24")
    text = '[interconnect]\nmode = "single"\nsubnet_a = "10.78.0.0/24"\n[host]\ntwin_a = "mgmt0"\nqos = false\n'
    before = daemon.fake.dump()
    target = pb.HostTarget(desired_state=text, ssh_address="10.77.0.1")
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.host.ApplyHost(pb.ApplyHostRequest(target=target))
    assert error(e.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert "mgmt0 carries your SSH connection (10.77.0.1)" in str(e.value.details())
    assert "--accept-risk=lose-connection" in str(e.value.details())
    assert daemon.fake.dump() == before
    target.accept_risk = "lose-connection"
    assert daemon.admin.host.ApplyHost(pb.ApplyHostRequest(target=target)).changed
    assert "link mgmt0 up carrier mtu=9000 addr=10.77.0.1/24 10.78.0.1/24" in daemon.fake.dump()


def test_the_default_route_interface_is_guarded_too(daemon: Daemon) -> None:
    daemon.fake.netlink.routes["203.0.113.1"] = "enp1s0f1np1"  # twin A carries the default route here
    with pytest.raises(grpc.RpcError) as e:
        daemon.ro.host.PlanHost(pb.PlanHostRequest())
    assert "enp1s0f1np1 carries the default route" in str(e.value.details())


def test_an_unconfirmed_apply_reverts_by_itself_and_a_confirmed_one_stays(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    r = _apply(daemon, confirm_timeout_s=3.0)
    assert r.changed and r.pending_until > time.time() - 1
    with pytest.raises(grpc.RpcError) as e:  # nothing else while it waits
        _apply(daemon)
    assert error(e.value)[0] == grpc.StatusCode.ABORTED and "waiting for confirmation" in str(e.value.details())
    deadline = time.monotonic() + 20
    while daemon.fake.dump() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.fake.dump() == before
    r = _apply(daemon, confirm_timeout_s=30)
    kept = daemon.admin.host.ConfirmHost(pb.ConfirmHostRequest())
    assert kept.apply_id
    assert "mtu=9000 addr=192.168.100.1/24" in daemon.fake.dump()
    assert not _apply(daemon).changed


def test_rollback_undoes_a_pending_apply_now(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    _apply(daemon, confirm_timeout_s=60)
    assert daemon.admin.host.RollbackHost(pb.RollbackHostRequest()).apply_id
    assert daemon.fake.dump() == before
    with pytest.raises(grpc.RpcError) as e:
        daemon.admin.host.ConfirmHost(pb.ConfirmHostRequest())
    assert error(e.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_the_read_only_socket_cannot_change_the_host(daemon: Daemon) -> None:
    calls = [
        (daemon.ro.host.ApplyHost, pb.ApplyHostRequest()),
        (daemon.ro.host.ConfirmHost, pb.ConfirmHostRequest()),
        (daemon.ro.host.RestoreHost, pb.RestoreHostRequest()),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as e:
            method(request)
        assert error(e.value)[0] == grpc.StatusCode.PERMISSION_DENIED


def _ping(d: Daemon, ok: bool) -> None:
    d.fake.runner.programs["ping"] = "/usr/bin/ping"  # the fake runner answers; nothing is sent anywhere
    d.fake.runner.results["/usr/bin/ping"] = CommandResult(("ping",), 0 if ok else 1, "", "")


def _state(d: Daemon) -> list[str]:
    """The node's dump without the pings (observations, not changes)."""
    return [line for line in d.fake.dump().splitlines() if not line.startswith("ran /usr/bin/ping")]


def test_a_cluster_apply_that_fails_to_verify_on_one_node_leaves_every_node_as_before(
    cluster: list[Daemon],
) -> None:
    head, worker = cluster
    _ping(head, True)
    _ping(worker, False)  # the worker cannot reach the head's twins: its peer twin is held down, say
    before = [_state(d) for d in cluster]
    with pytest.raises(grpc.RpcError) as e:
        head.admin.host.ApplyHost(pb.ApplyHostRequest(cluster=True))
    assert error(e.value)[1] == "ERROR_REASON_VERIFY_FAILED"
    assert "from spark2" in str(e.value.details()) and "Every node was rolled back" in str(e.value.details())
    assert [_state(d) for d in cluster] == before  # netlink, QoS and every file byte-identical
    assert all(d.system.configurator.pipeline.pending is None for d in cluster)


def test_a_cluster_apply_commits_everywhere_workers_first(cluster: list[Daemon]) -> None:
    head, worker = cluster
    _ping(head, True)
    _ping(worker, True)
    r = head.admin.host.ApplyHost(pb.ApplyHostRequest(cluster=True))
    assert [n.node for n in r.nodes] == ["spark2", "spark1"] and all(n.changed for n in r.nodes)
    for d, own in ((head, "127.0.0.1"), (worker, "127.0.0.2")):
        dump = d.fake.dump()
        assert f"link enp1s0f1np1 up carrier mtu=9000 addr={own}/24" in dump
        assert "file /etc/hosts 0o644 002 127.0.0.1 spark1" in dump
        assert "file /etc/hosts 0o644 003 127.0.0.2 spark2" in dump
        assert d.system.configurator.committed() is not None
    pings = [a for a in head.fake.runner.argvs if a[0] == "/usr/bin/ping"]
    assert pings[0][3:7] == ("-M", "do", "-s", "8972") and pings[0][-1] in ("127.0.0.2", "127.0.1.2")
    again = head.admin.host.ApplyHost(pb.ApplyHostRequest(cluster=True))
    assert not again.changed


def test_drift_is_reported_in_status_and_repaired_only_when_asked(daemon: Daemon) -> None:
    from sparkd.v1 import status_service_pb2

    _apply(daemon)
    daemon.run(lambda: daemon.fake.netlink.set_mtu("enP2p1s0f1np1", 1500))  # a hand-changed MTU
    conf = daemon.fake.root / "etc/nccl.conf"
    conf.write_text(conf.read_text() + "NCCL_DEBUG=INFO\n")  # an edited nccl.conf
    drift = daemon.run(daemon.system.configurator.check_drift)
    assert [a.description for a in drift] == ["set MTU of enP2p1s0f1np1 from 1500 to 9000", "rewrite /etc/nccl.conf"]
    status = daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest())
    assert status.host.committed and "set MTU of enP2p1s0f1np1 from 1500 to 9000" in status.host.drift
    assert "mtu=1500" in daemon.fake.dump()  # reported, not repaired (host.drift = "report")
    daemon.run(lambda: daemon.system.configurator.check_drift(repair=True))
    assert "NCCL_DEBUG" not in conf.read_text() and "link enP2p1s0f1np1 up carrier mtu=9000" in daemon.fake.dump()
    assert daemon.run(daemon.system.configurator.check_drift) == []


def test_at_start_the_committed_state_is_applied_again(daemon: Daemon) -> None:
    """A reboot forgets addresses, MTU and QoS: the next start re-applies them before READY."""

    def host(d: Daemon) -> list[str]:  # the host without sparkd's own records (each apply has its own id)
        return [line for line in d.fake.dump().splitlines() if not line.startswith("file /var/lib/sparkd/host/")]

    _apply(daemon)
    configured = host(daemon)
    netlink = daemon.fake.netlink

    async def reboot() -> None:  # what the kernel has after a reboot
        for netdev in ("enp1s0f1np1", "enP2p1s0f1np1"):
            await netlink.set_mtu(netdev, 1500)
            for address in (await netlink.links())[netdev].addresses:
                await netlink.remove_address(netdev, address)

    daemon.run(reboot)
    assert daemon.run(daemon.system.configurator.start).startswith("re-applied 4 host changes")
    assert host(daemon) == configured


def test_an_apply_whose_rollback_failed_blocks_the_next_until_a_rollback_succeeds(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    netlink = daemon.fake.netlink
    netlink.fail.update({"add_address:enP2p1s0f1np1", "set_mtu:enp1s0f1np1"})  # the apply fails, and so will MTU's undo
    netlink.fail.discard("set_mtu:enp1s0f1np1")
    real_set_mtu = netlink.set_mtu
    calls: list[int] = []

    async def set_mtu(ifname: str, mtu: int) -> None:  # the MTU can be raised once, never lowered back
        calls.append(mtu)
        if mtu == 1500 and len(calls) <= 4:
            raise HostOperationFailed("netlink: set MTU failed: injected")
        await real_set_mtu(ifname, mtu)

    netlink.set_mtu = set_mtu  # type: ignore[method-assign]
    with pytest.raises(grpc.RpcError):
        _apply(daemon)
    with pytest.raises(grpc.RpcError) as e:  # the journal of the state to bring back is kept: no new apply
        _apply(daemon)
    assert error(e.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert "could not be rolled back completely" in str(e.value.details())
    netlink.fail.clear()
    assert daemon.admin.host.RollbackHost(pb.RollbackHostRequest()).apply_id
    assert daemon.fake.dump() == before


def test_bad_confirm_timeouts_and_flag_combinations_are_refused(daemon: Daemon) -> None:
    before = daemon.fake.dump()
    for request in (
        pb.ApplyHostRequest(confirm_timeout_s=float("nan")),
        pb.ApplyHostRequest(confirm_timeout_s=-1),
        pb.ApplyHostRequest(confirm_timeout_s=3601),
        pb.ApplyHostRequest(cluster=True, confirm_timeout_s=30),
        pb.ApplyHostRequest(cluster=True, dry_run=True),
    ):
        with pytest.raises(grpc.RpcError) as e:
            daemon.admin.host.ApplyHost(request)
        assert error(e.value)[0] == grpc.StatusCode.INVALID_ARGUMENT, request
    assert daemon.fake.dump() == before


def test_a_desired_state_file_needs_the_admin_socket(daemon: Daemon) -> None:
    target = pb.HostTarget(desired_state='[host]\ntwin_a = "enp1s0f1np1"\n')
    with pytest.raises(grpc.RpcError) as e:
        daemon.ro.host.PlanHost(pb.PlanHostRequest(target=target))
    assert error(e.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert daemon.admin.host.PlanHost(pb.PlanHostRequest(target=target)).changed


def test_a_worker_finishes_only_the_heads_pending_apply(cluster: list[Daemon]) -> None:
    from sparkd.peer.v1 import peer_service_pb2 as peer_pb
    from sparkd.peer.v1 import peer_service_pb2_grpc as peer_grpc
    from tests.api.conftest import peer_channel

    head, worker = cluster
    _apply(worker, confirm_timeout_s=60)  # a local operator's apply, waiting for its own confirmation
    with peer_channel(worker.peer_target, head, worker) as channel:
        stub = peer_grpc.PeerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.FinishHost(peer_pb.FinishHostRequest(commit=True, apply_id="anything"), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert worker.system.configurator.pipeline.pending is not None  # still the operator's to keep or undo
    worker.admin.host.RollbackHost(pb.RollbackHostRequest())
