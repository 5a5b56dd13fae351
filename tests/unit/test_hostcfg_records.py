"""The host configuration's records are input too: a hostile or corrupted journal is never acted on blindly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sparkd.config import Config, NodeConfig
from sparkd.engine.hostcfg import desired as desired_mod
from sparkd.engine.hostcfg.configurator import HostConfigurator
from sparkd.errors import HostOperationFailed
from tests.fakes.host import FakeHost
from tests.hostcfg_helpers import configurator

JOURNAL = "var/lib/sparkd/host/journal.json"


def setup(tmp_path: Path) -> tuple[FakeHost, HostConfigurator]:
    fake = FakeHost(tmp_path / "root")
    host = configurator(fake, Config(node=NodeConfig("spark1", "head", 0)), fake.tools)
    return fake, host


def test_a_journal_naming_a_file_sparkd_does_not_manage_is_not_acted_on(tmp_path: Path) -> None:
    fake, host = setup(tmp_path)
    shadow = fake.root / "etc/shadow"
    shadow.parent.mkdir(parents=True, exist_ok=True)
    shadow.write_text("root:x:0:0\n")
    record = {"content": "", "mode": 0o644, "uid": 0, "gid": 0}
    journal = {
        "id": "x",
        "phase": "applying",
        "desired": {},
        "deadline": 0.0,
        "started": 0.0,
        "what": "host apply",
        "prior": {"files": {"/etc/shadow": record, "/etc/netplan/../shadow": record}},
    }
    (fake.root / JOURNAL).parent.mkdir(parents=True, exist_ok=True)
    (fake.root / JOURNAL).write_text(json.dumps(journal))
    with pytest.raises(HostOperationFailed, match="not a key sparkd manages"):
        asyncio.run(host.pipeline.recover())
    assert shadow.read_text() == "root:x:0:0\n"


def test_a_corrupted_journal_is_set_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    fake, host = setup(tmp_path)
    (fake.root / JOURNAL).parent.mkdir(parents=True, exist_ok=True)
    (fake.root / JOURNAL).write_text('{"id": "x", "phase": "applying"')
    assert asyncio.run(host.start()) == ""
    assert not (fake.root / JOURNAL).exists() and (fake.root / (JOURNAL + ".bad")).exists()


def test_a_committed_state_taking_over_a_file_elsewhere_is_refused() -> None:
    fake_record = {
        "twins": [["enp1s0f1np1", "rocep1s0f1", "192.168.100.1/24"]],
        "mtu": 9000,
        "persist": True,
        "qos": [True, 3, "dscp", 106],
        "peermem": False,
        "nccl": [],
        "hosts": [],
        "firewall": [],
        "hostname": "",
        "existing": "take-over",
        "adopted": [],
        "subnets": [],
        "takeover": [["/etc/shadow", ""]],
    }
    with pytest.raises(ValueError, match="no netplan or NetworkManager file"):
        desired_mod.from_record(fake_record)
    fake_record["takeover"] = []
    assert desired_mod.from_record(fake_record).mtu == 9000
