"""A record corrupted on disk (garbage, empty, zeros, null) leaves a daemon that starts, reports it and deletes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkd.model.unit import UnitSpec
from sparkd.v1 import deployment_pb2, deployment_service_pb2, status_service_pb2
from tests.api.conftest import Daemon, head_config
from tests.fakes.host import FakeHost, FakeUnit

RECORDS = "var/lib/sparkd/deployments"


@pytest.mark.parametrize(
    "content", [b"\x89garbage{", b"", b"\0" * 512, b"null"], ids=["garbage", "empty", "zeros", "null"]
)
def test_a_corrupt_record_is_reported_failed_and_can_be_deleted(root: Path, fake: FakeHost, content: bytes) -> None:
    (root / RECORDS).mkdir(parents=True)
    (root / RECORDS / "demo.json").write_bytes(content)
    # The deployment's unit still runs (the record broke, not the model): delete must stop it.
    fake.systemd.units["sparkd-demo-rank0.service"] = FakeUnit(
        UnitSpec("sparkd-demo-rank0.service", ["/opt/vllm/bin/vllm"], "left running")
    )
    daemon = Daemon(head_config(root), fake)  # starts: the record does not break start-up
    try:
        status = daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest())
        (broken,) = status.deployments
        assert broken.name == "demo" and broken.state == deployment_pb2.DEPLOYMENT_STATE_FAILED
        assert "could not be read" in broken.message and "sparkctl-client deploy down demo" in broken.message
        assert (root / RECORDS / "demo.json.corrupt").read_bytes() == content  # kept for the operator, aside
        got = daemon.ro.deployments.GetDeployment(deployment_service_pb2.GetDeploymentRequest(name="demo"))
        assert got.deployment.state == deployment_pb2.DEPLOYMENT_STATE_FAILED
        deleted = daemon.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="demo"))
        assert list(deleted.stopped_units) == ["sparkd-demo-rank0.service"]
        assert not (root / RECORDS / "demo.json.corrupt").exists() and "unit " not in daemon.fake.dump()
        assert list(daemon.ro.status.GetStatus(status_service_pb2.GetStatusRequest()).deployments) == []
    finally:
        daemon.close()


def test_a_planted_record_naming_another_unit_never_stops_it(root: Path, fake: FakeHost) -> None:
    """The walking skeleton stored unit names; a planted one (ssh.service) is never read."""
    (root / RECORDS).mkdir(parents=True)
    (root / RECORDS / "demo.json").write_text(
        '{"format": 1, "unit": "ssh.service", "create_time": 1.0,'
        ' "spec": {"name": "demo", "framework": "vllm", "model": "/m", "served_model_name": "demo",'
        ' "pipeline": 1, "tensor": 1, "port": 8000},'
        ' "assignment": {"rank": 0, "nnodes": 1, "master_addr": "192.168.100.1", "master_port": 29501},'
        ' "parts": [{"node_name": "spark1", "node_id": "", "rank": 0, "address": "192.168.100.1",'
        ' "unit": "ssh.service"}]}'
    )
    fake.systemd.units["ssh.service"] = FakeUnit(UnitSpec("ssh.service", ["/usr/sbin/sshd"], "not sparkd's"))
    daemon = Daemon(head_config(root), fake)
    try:
        daemon.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="demo"))
        assert "unit ssh.service active" in daemon.fake.dump()
        assert "stop ssh.service" not in daemon.fake.systemd.calls
    finally:
        daemon.close()


def test_deleting_a_broken_record_stops_only_its_own_units(root: Path, fake: FakeHost) -> None:
    """`sparkd-a-rank*.service` also matches deployment "a-rank1"'s unit: the glob alone would stop it."""
    (root / RECORDS).mkdir(parents=True)
    (root / RECORDS / "a.json").write_text("garbage")
    for unit in ("sparkd-a-rank0.service", "sparkd-a-rank1-rank0.service", "sparkd-a-rankx.service"):
        fake.systemd.units[unit] = FakeUnit(UnitSpec(unit, ["/bin/true"], "planted"))
    daemon = Daemon(head_config(root), fake)
    try:
        deleted = daemon.admin.deployments.DeleteDeployment(deployment_service_pb2.DeleteDeploymentRequest(name="a"))
        assert list(deleted.stopped_units) == ["sparkd-a-rank0.service"]
        assert sorted(fake.systemd.units) == ["sparkd-a-rank1-rank0.service", "sparkd-a-rankx.service"]
    finally:
        daemon.close()
