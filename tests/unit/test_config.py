"""The daemon config: defaults, strictness, and errors that name the field."""

from __future__ import annotations

import ipaddress

import pytest

from sparkd.config import parse
from sparkd.errors import ConfigError


def test_defaults_make_a_head_on_the_default_subnets() -> None:
    c = parse('[node]\nname = "spark1"\n')
    assert (c.node.role, c.node.index) == ("head", 0)
    assert c.node_address() == ipaddress.IPv4Interface("192.168.100.1/24")
    assert c.interconnect.address(c.interconnect.subnet_b, 2) == ipaddress.IPv4Interface("192.168.101.3/24")
    assert c.api.socket == "/run/sparkd/sparkd.sock" and c.peer.port == 7471


def test_worker_defaults_to_index_one() -> None:
    c = parse('[node]\nrole = "worker"\n')
    assert c.node.index == 1 and str(c.node_address().ip) == "192.168.100.2"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[node]\nrole = "boss"\n', "node.role"),
        ('[node]\nrole = "head"\nindex = 3\n', "node.index"),
        ("[interconnect]\nmtu = 100000\n", "interconnect.mtu"),
        ('[interconnect]\nsubnet_a = "300.1.1.0/24"\n', "interconnect.subnet_a"),
        ("[peer]\nprot = 1\n", "peer.prot"),
        ("colour = 1\n", "colour"),
        ("version = 2\n", "version"),
        ('[peer]\nport = "7471"\n', "peer.port"),
    ],
)
def test_bad_config_names_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text, "/etc/sparkd/sparkd.toml")
    assert e.value.field == field
    assert field in str(e.value)
