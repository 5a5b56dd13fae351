"""The walking skeleton end to end, on a two-node lab (issue 2's "What it must show").

The tests share one lab but not an order: each states what it needs through a fixture
(`demo`: the demo deployment READY; `no_deployment`: none at all), which brings the lab
there from whatever the previous test left. The leak guard is checked after every test.
"""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from tests.capture import PROBE, UDP, Capture, sparkd_frames
from tests.e2e.conftest import ROOT, MgmtCapture, addresses, client, default_route, sparkd

pytestmark = pytest.mark.usefixtures("lab")

DEMO = ROOT / "examples/demo.yaml"


def status(node: str) -> dict:  # type: ignore[type-arg]
    r = client(node, "-o", "json", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def unit_props(unit: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", "-p", "ActiveState,InvocationID,MainPID", unit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def units(pattern: str) -> list[str]:
    out = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", pattern],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_for(what: str, probe, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def _deployments() -> list[dict]:  # type: ignore[type-arg]
    return status("spark1")["deployments"]  # type: ignore[no-any-return]


def _down_demo() -> None:
    if _deployments():
        r = client("spark1", "deploy", "down", "demo")
        assert r.returncode == 0, r.stderr
    wait_for("no deployment unit", lambda: units("sparkd-*-rank*.service") == [])


@pytest.fixture
def no_deployment() -> None:
    """No deployment exists on any node."""
    _down_demo()
    wait_for("spark2 to have no deployment", lambda: status("spark2")["deployments"] == [])


@pytest.fixture
def demo() -> None:
    """The demo deployment exists and is READY (made afresh if an earlier test broke it)."""
    if [d["state"] for d in _deployments()] != ["DEPLOYMENT_STATE_READY"]:
        _down_demo()
        r = client("spark1", "deploy", "up", "-f", str(DEMO), "--wait", "--timeout", "60")
        assert r.returncode == 0, r.stderr
    wait_for(
        "spark2 to see demo READY",
        lambda: [d["state"] for d in status("spark2")["deployments"]] == ["DEPLOYMENT_STATE_READY"],
    )


def test_spark1_link_addresses_mtu_and_nccl_conf() -> None:
    out = subprocess.run(["ip", "-n", "spark1", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    links = {i["ifname"]: i for i in json.loads(out)}
    for netdev, address in (("enp1s0f1np1", "192.168.100.1"), ("enP2p1s0f1np1", "192.168.101.1")):
        assert links[netdev]["mtu"] == 9000
        assert [(a["local"], a["prefixlen"]) for a in links[netdev]["addr_info"] if a["family"] == "inet"] == [
            (address, 24)
        ]
    conf = (lab_mod.sysroot("spark1") / "etc/nccl.conf").read_text().splitlines()
    settings = [line for line in conf if not line.startswith("#")]
    assert settings == ["NCCL_SOCKET_IFNAME==enp1s0f1np1", "NCCL_IB_HCA==rocep1s0f1,roceP2p1s0f1", "NCCL_IB_TC=106"]


def test_every_node_has_mgmt0_carrying_the_default_route() -> None:
    for number, node in enumerate(("spark1", "spark2"), start=1):
        assert addresses(node, "mgmt0", "inet") == [f"10.77.0.{number}/24"]
        assert default_route(node) == ("10.77.0.254", "mgmt0")


SEND_PROBES = f"""
import socket
probe = {PROBE!r} + b" from spark1"
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.sendto(probe, ("10.77.0.2", 7472))
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
    index = socket.if_nametoindex("mgmt0")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    s.sendto(probe, ("ff02::1", 7472, 0, index))
"""


def test_capture_sees_datagrams_to_sparkd_ports_on_mgmt0(mgmt_capture: MgmtCapture, tmp_path: Path) -> None:
    # Proof that the capture, and the session's check of it, would see sparkd traffic on mgmt0: two
    # datagrams to the discovery port that carry the test's marker, unicast and IPv6 multicast.
    own = Capture("spark2", "mgmt0", tmp_path / "spark2-mgmt0.jsonl").start().ready()
    try:
        r = sparkd("lab", "exec", "spark1", "--", "python", "-c", SEND_PROBES)
        assert r.returncode == 0, r.stderr
        wait_for("both probes captured on spark2", lambda: sum(f.probe for f in own.frames()) == 2, timeout=5)
    finally:
        frames = own.stop()
    probes = sorted((f.direction, f.proto, f.src, f.dst, f.dport) for f in frames if f.probe)
    assert probes[0] == ("in", UDP, "10.77.0.1", "10.77.0.2", 7472)
    assert probes[1][:2] == ("in", UDP) and probes[1][2].startswith("fe80:") and probes[1][3:] == ("ff02::1", 7472)
    # The check flags both, unless left out as test probes; everything else spark2 saw is not sparkd's.
    assert sparkd_frames(frames, include_probes=True) == [f for f in frames if f.probe]
    assert sparkd_frames(frames) == []
    # The session's capture saw them too: leaving spark1's mgmt0, arriving at spark2's.
    seen = {(f.node, f.direction) for f in mgmt_capture.current() if f.probe}
    assert {("spark1", "out"), ("spark2", "in")} <= seen


def test_host_apply_again_changes_nothing() -> None:
    for node in ("spark1", "spark2"):
        r = client(node, "-o", "json", "host", "apply")
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)
        assert (answer["changed"], answer["actions"], answer["verified"], answer["nodes"]) == (False, [], True, [])


def test_lab_status_shows_every_node() -> None:
    r = sparkd("lab", "status")
    assert r.returncode == 0, r.stderr
    assert "== spark1" in r.stdout and "== spark2" in r.stdout and "CONNECTED" in r.stdout


def test_status_json_contract_and_peers_connected_both_ways(no_deployment: None) -> None:
    head, worker = status("spark1"), status("spark2")
    assert head["node"]["role"] == "NODE_ROLE_HEAD" and len(head["node"]["id"]) == 16
    assert worker["node"]["role"] == "NODE_ROLE_WORKER" and worker["node"]["id"] != head["node"]["id"]
    assert [(p["name"], p["state"]) for p in head["peers"]] == [("spark2", "PEER_STATE_CONNECTED")]
    assert [(p["name"], p["state"]) for p in worker["peers"]] == [("spark1", "PEER_STATE_CONNECTED")]
    assert head["peers"][0]["node_id"] == worker["node"]["id"]
    # Every field present, also false, zero and empty ones.
    assert head["peers"][0]["last_error"] == "" and head["deployments"] == []
    port = next(p for p in head["node"]["ports"] if p["netdev"] == "enp1s0f0np0")
    assert port["cabled"] is False and port["mtu"] == 0 and port["addresses"] == []
    assert head["node"]["memory"]["total_bytes"] == str(127600748 * 1024)
    assert head["node"]["gpus"][0]["name"] == "NVIDIA GB10"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"framework": "ollama"}, "framework"),
        ({"parallelism": {"pipeline": 0, "tensor": 1}}, "parallelism.pipeline"),
        ({"replicas": 2}, "replicas"),
        ({"model": None}, "model"),
    ],
)
def test_bad_spec_refused_naming_the_field_and_nothing_started(
    no_deployment: None,
    tmp_path: Path,
    bad: dict,  # type: ignore[type-arg]
    field: str,
) -> None:
    import yaml

    doc = yaml.safe_load(DEMO.read_text())
    doc.update(bad)
    doc = {k: v for k, v in doc.items() if v is not None}
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(doc))
    r = client("spark1", "deploy", "up", "-f", str(spec))
    assert r.returncode == 1
    assert "INVALID_ARGUMENT [ERROR_REASON_INVALID_SPEC]" in r.stderr and f"  {field}: " in r.stderr
    assert units("sparkd-*-rank*.service") == []
    assert json.loads(client("spark1", "-o", "json", "deploy", "list").stdout) == {"deployments": []}
    assert not list((lab_mod.sysroot("spark1") / "var/lib/sparkd/deployments").glob("*.json"))


def test_daemons_notify_ready_and_status_to_systemd() -> None:
    for node in ("spark1", "spark2"):
        out = subprocess.run(
            ["systemctl", "show", "-p", "Type,ActiveState,StatusText", lab_mod.daemon_unit(node)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        props = dict(line.split("=", 1) for line in out.splitlines())
        assert props["Type"] == "notify" and props["ActiveState"] == "active"
        assert props["StatusText"].startswith("serving on ")


def test_sockets_key_and_standard_services() -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    run = lab_mod.sysroot("spark1") / "run/sparkd"
    assert stat.S_IMODE(run.stat().st_mode) == 0o755
    assert stat.S_IMODE((run / "sparkd.sock").stat().st_mode) == 0o660
    assert stat.S_ISSOCK((run / "sparkd.sock").stat().st_mode)
    key = lab_mod.sysroot("spark1") / "var/lib/sparkd/node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with grpc.insecure_channel(f"unix:{run / 'sparkd.sock'}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in reply.list_services_response.service}
        assert {"sparkd.v1.StatusService", "sparkd.v1.DeploymentService", "grpc.health.v1.Health"} <= names


def test_more_ranks_than_nodes_is_a_failed_precondition(no_deployment: None, tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(DEMO.read_text().replace("pipeline: 2", "pipeline: 3"))
    r = client("spark1", "deploy", "up", "-f", str(spec))
    assert r.returncode == 4, r.stderr
    assert "needs 3 nodes" in r.stderr and "only 2 are connected" in r.stderr
    assert units("sparkd-*-rank*.service") == []


def test_read_only_socket_refuses_changes_and_answers_reads(no_deployment: None) -> None:
    ro = str(lab_mod.sysroot("spark1") / "run/sparkd/sparkd-ro.sock")
    r = client("spark1", "--socket", ro, "deploy", "up", "-f", str(DEMO))
    assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr
    assert client("spark1", "--socket", ro, "status").returncode == 0
    assert units("sparkd-*-rank*.service") == []


def test_unreachable_daemon_exits_3_with_a_hint() -> None:
    r = client("spark1", "--socket", "/nonexistent/sparkd.sock", "status")
    assert r.returncode == 3 and "hint:" in r.stderr


def test_demo_deploys_ready_and_answers_a_chat_through_the_head(no_deployment: None) -> None:
    r = client("spark1", "-o", "json", "deploy", "up", "-f", str(DEMO), "--wait", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    deployment = json.loads(r.stdout)["deployment"]
    assert deployment["state"] == "DEPLOYMENT_STATE_READY"
    assert [(n["node_name"], n["rank"], n["unit_active_state"]) for n in deployment["nodes"]] == [
        ("spark1", 0, "active"),
        ("spark2", 1, "active"),
    ]
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hello"}]})
    r = sparkd(
        "lab",
        "exec",
        "spark2",
        "--",
        "curl",
        "-sf",
        "http://192.168.100.1:8000/v1/chat/completions",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    )
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)["choices"][0]["message"]["content"]
    assert "stage 0 (192.168.100.1) -> stage 1 (192.168.100.2)" in answer
    # Creating it again is a no-op; the same name with another spec is refused.
    again = client("spark1", "-o", "json", "deploy", "up", "-f", str(DEMO))
    assert again.returncode == 0 and json.loads(again.stdout)["deployment"]["state"] == "DEPLOYMENT_STATE_READY"
    other = client("spark1", "deploy", "up", "-f", "-", input=DEMO.read_text().replace("port: 8000", "port: 8001"))
    assert other.returncode == 1 and "ALREADY_EXISTS" in other.stderr
    # The worker sees the deployment READY too (from the head's hellos).
    wait_for(
        "spark2 to see demo READY", lambda: status("spark2")["deployments"][0]["state"] == "DEPLOYMENT_STATE_READY"
    )


@pytest.mark.parametrize(("node", "rank"), [("spark2", 1), ("spark1", 0)])
def test_killed_daemon_leaves_unit_running_and_readopts_it(demo: None, node: str, rank: int) -> None:
    deployment_unit, daemon_unit = f"sparkd-demo-rank{rank}.service", lab_mod.daemon_unit(node)
    before, daemon_before = unit_props(deployment_unit), unit_props(daemon_unit)
    node_id = status(node)["node"]["id"]
    assert before["ActiveState"] == "active"
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", daemon_unit], check=True)
    wait_for(
        f"{daemon_unit} to be restarted",
        lambda: (
            unit_props(daemon_unit)["InvocationID"] != daemon_before["InvocationID"]
            and unit_props(daemon_unit)["ActiveState"] == "active"
        ),
    )
    wait_for(
        f"{node} to report demo READY",
        lambda: [d["state"] for d in status(node)["deployments"]] == ["DEPLOYMENT_STATE_READY"],
    )
    after = unit_props(deployment_unit)
    assert after["ActiveState"] == "active"
    assert after["InvocationID"] == before["InvocationID"], "the deployment unit was restarted"
    assert after["MainPID"] == before["MainPID"]
    assert status(node)["node"]["id"] == node_id, "the node key must survive a restart"


def test_deploy_down_with_a_silent_worker_stops_what_it_can_and_can_be_retried(demo: None) -> None:
    daemon = lab_mod.daemon_unit("spark2")
    subprocess.run(["systemctl", "kill", "--signal=SIGSTOP", daemon], check=True)
    try:
        wait_for(
            "the head to see spark2 disconnected",
            lambda: [p["state"] for p in status("spark1")["peers"]] == ["PEER_STATE_DISCONNECTED"],
        )
        r = client("spark1", "deploy", "down", "demo")
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr and "could not reach spark2" in r.stderr
        assert unit_props("sparkd-demo-rank0.service")["ActiveState"] == "inactive"
        assert [d["name"] for d in status("spark1")["deployments"]] == ["demo"]  # kept, to retry
    finally:
        subprocess.run(["systemctl", "kill", "--signal=SIGCONT", daemon], check=True)
    wait_for(
        "spark2 to reconnect",
        lambda: [p["state"] for p in status("spark1")["peers"]] == ["PEER_STATE_CONNECTED"],
    )
    r = client("spark1", "deploy", "down", "demo")
    assert r.returncode == 0, r.stderr
    assert units("sparkd-demo-*.service") == []
    assert status("spark1")["deployments"] == [] and status("spark2")["deployments"] == []


def test_a_rebooted_worker_rendezvous_with_its_new_boot_id_under_a_new_epoch(no_deployment: None) -> None:
    """`sparkd lab reboot`: the worker's sparkd comes back with another boot ID; the head sees a new session."""
    (before,) = status("spark1")["peers"]
    r = sparkd("lab", "reboot", "spark2")
    assert r.returncode == 0, r.stderr
    wait_for(
        "the head to see spark2 back with its new boot ID",
        lambda: (
            (p := status("spark1")["peers"][0])["state"] == "PEER_STATE_CONNECTED" and p["boot_id"] != before["boot_id"]
        ),
    )
    (after,) = status("spark1")["peers"]
    assert int(after["epoch"]) > int(before["epoch"]) and after["node_id"] == before["node_id"]
    assert after["boot_id"] == (lab_mod.sysroot("spark2") / "proc/sys/kernel/random/boot_id").read_text().strip()
