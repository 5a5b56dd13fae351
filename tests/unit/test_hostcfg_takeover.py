"""Taking over a Spark set up by NVIDIA's playbook: `host plan` names what it found, adopt and take over
both end with one owner, and `host restore` brings the old setup back byte for byte.

The node is a FakeHost (files in a sysroot, netlink in memory) prepared like a Spark that followed the
"Connect two Sparks" playbook: /etc/netplan/40-cx7.yaml (0600) with 192.168.100.10/.101.10 on the twins,
and those addresses on the links, MTU 1500. The configurator and every component are the real ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from sparkd.config import Config, NodeConfig
from sparkd.config_host import HostConfig
from sparkd.engine.hostcfg.configurator import HostConfigurator
from tests.fakes.host import FakeHost
from tests.hostcfg_helpers import configurator

PLAYBOOK = (Path(__file__).parents[1] / "data/foreign/40-cx7-static.yaml").read_bytes()
NETPLAN = "etc/netplan/40-cx7.yaml"
BACKUP = "var/lib/sparkd/host/backup/etc/netplan/40-cx7.yaml"
HOSTS = b"127.0.0.1\tlocalhost\n127.0.1.1\tspark-fb97\n"


def spark_from_the_playbook(tmp_path: Path) -> FakeHost:
    fake = FakeHost(tmp_path / "root")
    (fake.root / "etc/netplan").mkdir(parents=True)
    (fake.root / NETPLAN).write_bytes(PLAYBOOK)
    (fake.root / NETPLAN).chmod(0o600)
    (fake.root / "etc/hosts").write_bytes(HOSTS)
    for netdev, address in (("enp1s0f1np1", "192.168.100.10/24"), ("enP2p1s0f1np1", "192.168.101.10/24")):
        asyncio.run(fake.netlink.add_address(netdev, ipaddress.IPv4Interface(address)))
    return fake


def host(fake: FakeHost, existing: str) -> HostConfigurator:
    config = Config(node=NodeConfig("spark1", "head", 0), host=HostConfig(existing=existing))
    return configurator(fake, config, fake.tools)


def addresses(fake: FakeHost, netdev: str) -> list[str]:
    return [str(a) for a in asyncio.run(fake.netlink.links())[netdev].addresses]


def test_plan_names_the_playbook_file_and_what_it_configures(tmp_path: Path) -> None:
    fake = spark_from_the_playbook(tmp_path)
    before = fake.dump()
    plan = asyncio.run(host(fake, "take-over").plan())
    assert (
        "existing setup: /etc/netplan/40-cx7.yaml (netplan): enp1s0f1np1 192.168.100.10/24, "
        "enP2p1s0f1np1 192.168.101.10/24"
    ) in plan.notes
    descriptions = [a.description for a in plan.actions]
    assert "remove address 192.168.100.10/24 from enp1s0f1np1" in descriptions
    assert "write /var/lib/sparkd/host/backup/etc/netplan/40-cx7.yaml" in descriptions
    assert "remove /etc/netplan/40-cx7.yaml" in descriptions
    assert fake.dump() == before  # a plan changes nothing


@pytest.mark.parametrize(
    ("existing", "twin_a", "twin_b"),
    [
        ("take-over", ["192.168.100.1/24"], ["192.168.101.1/24"]),
        ("adopt", ["192.168.100.1/24", "192.168.100.10/24"], ["192.168.101.1/24", "192.168.101.10/24"]),
    ],
)
def test_both_choices_end_with_one_owner_and_restore_brings_the_old_setup_back(
    tmp_path: Path, existing: str, twin_a: list[str], twin_b: list[str]
) -> None:
    fake = spark_from_the_playbook(tmp_path)
    links_before = asyncio.run(fake.netlink.links())
    qos_before = (fake.tools / "qos-state.json").read_bytes()
    configurator = host(fake, existing)
    outcome = asyncio.run(configurator.apply())
    assert outcome.changed and outcome.verified
    # One owner: netplan's file is gone (kept as a backup, byte for byte, 0600), NetworkManager is told to leave
    # the twins alone, and sparkd holds the addresses.
    assert not (fake.root / NETPLAN).exists()
    assert (fake.root / BACKUP).read_bytes() == PLAYBOOK and (fake.root / BACKUP).stat().st_mode & 0o777 == 0o600
    nm = (fake.root / "etc/NetworkManager/conf.d/90-sparkd-interconnect.conf").read_text()
    assert "unmanaged-devices+=interface-name:=enp1s0f1np1;interface-name:=enP2p1s0f1np1" in nm
    assert addresses(fake, "enp1s0f1np1") == twin_a and addresses(fake, "enP2p1s0f1np1") == twin_b
    again = asyncio.run(configurator.plan())
    assert again.actions == [] and not any(n.startswith("existing setup") for n in again.notes)

    restored = asyncio.run(configurator.restore())
    assert "files /etc/netplan/40-cx7.yaml" in restored
    assert (fake.root / NETPLAN).read_bytes() == PLAYBOOK and (fake.root / NETPLAN).stat().st_mode & 0o777 == 0o600
    assert (fake.root / "etc/hosts").read_bytes() == HOSTS
    for gone in ("etc/nccl.conf", "etc/profile.d/sparkd-nccl.sh", "etc/NetworkManager/conf.d", BACKUP):
        path = fake.root / gone
        assert not path.exists() or (path.is_dir() and not any(path.iterdir())), gone
    assert asyncio.run(fake.netlink.links()) == links_before  # addresses and MTU as NVIDIA's setup left them
    assert (fake.tools / "qos-state.json").read_bytes() == qos_before
    assert configurator.committed() is None  # sparkd manages nothing until the next apply


def test_restore_without_a_change_says_there_is_nothing_to_restore(tmp_path: Path) -> None:
    from sparkd.errors import PreconditionFailed

    fake = spark_from_the_playbook(tmp_path)
    with pytest.raises(PreconditionFailed, match="nothing to restore"):
        asyncio.run(host(fake, "take-over").restore())


def test_a_file_that_also_configures_the_management_port_is_not_taken_over(tmp_path: Path) -> None:
    from sparkd.errors import PreconditionFailed

    fake = spark_from_the_playbook(tmp_path)
    (fake.root / NETPLAN).write_bytes(PLAYBOOK + b"    enP7s7:\n      dhcp4: yes\n")
    before = fake.dump()
    with pytest.raises(PreconditionFailed, match="cannot take it over whole: it also configures enP7s7"):
        asyncio.run(host(fake, "take-over").apply())
    assert fake.dump() == before
