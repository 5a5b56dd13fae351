"""Deployment records: atomic JSON under the sysroot, round trip, unreadable records skipped."""

from __future__ import annotations

import stat
from pathlib import Path

from sparkd.engine.store import DeploymentStore
from sparkd.host.sysroot import Sysroot
from sparkd.model.deployment import Assignment, DeploymentRecord, DeploymentSpec, Framework, NodePart

RECORD = DeploymentRecord(
    spec=DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", 2, 1, 8000),
    assignment=Assignment(0, 2, "192.168.100.1", 29501),
    unit="sparkd-demo-rank0.service",
    parts=(
        NodePart("spark1", "", 0, "192.168.100.1", "sparkd-demo-rank0.service"),
        NodePart("spark2", "abc", 1, "192.168.100.2", "sparkd-demo-rank1.service"),
    ),
    create_time=1.5,
)


def test_round_trip_under_the_sysroot(tmp_path: Path) -> None:
    store = DeploymentStore(Sysroot(tmp_path), "/var/lib/sparkd")
    store.save(RECORD)
    path = tmp_path / "var/lib/sparkd/deployments/demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("demo") == RECORD and store.all() == [RECORD]
    store.delete("demo")
    assert store.load("demo") is None and store.all() == []


def test_an_unreadable_record_is_skipped(tmp_path: Path) -> None:
    store = DeploymentStore(Sysroot(tmp_path), "/var/lib/sparkd")
    store.save(RECORD)
    (tmp_path / "var/lib/sparkd/deployments/broken.json").write_text("{not json")
    assert store.all() == [RECORD]
