"""The daemon config: defaults, strictness, and errors that name the field."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from sparkd.config import load, parse
from sparkd.errors import ConfigError


def _refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse(text, "/etc/sparkd/sparkd.toml")
    return e.value


def test_defaults_leave_role_and_index_to_pairing() -> None:
    c = parse('[node]\nname = "spark1"\n')
    assert (c.node.role, c.node.index) == ("", None)
    assert c.node_address(0) == ipaddress.IPv4Interface("192.168.100.1/24")
    assert c.node_address(1) == ipaddress.IPv4Interface("192.168.100.2/24")
    assert c.interconnect.address(c.interconnect.subnet_b, 2) == ipaddress.IPv4Interface("192.168.101.3/24")
    assert c.api.socket == "/run/sparkd/sparkd.sock" and c.peer.port == 7471
    assert (c.peer.discovery_port, c.peer.pairing_port) == (7472, 7473)
    assert (c.peer.heartbeat_s, c.peer.timeout_s) == (0.5, 3.0)


def test_a_pinned_head_has_index_zero() -> None:
    c = parse('[node]\nrole = "head"\n')
    assert (c.node.role, c.node.index) == ("head", 0)
    assert str(c.node_address(0).ip) == "192.168.100.1"


def test_a_pinned_worker_without_an_index_leaves_it_to_pairing() -> None:
    c = parse('[node]\nrole = "worker"\n')
    assert (c.node.role, c.node.index) == ("worker", None)


def test_a_pinned_worker_keeps_its_index() -> None:
    c = parse('[node]\nrole = "worker"\nindex = 3\n')
    assert (c.node.role, c.node.index) == ("worker", 3)
    assert str(c.node_address(3).ip) == "192.168.100.4"


def test_an_index_without_a_role_is_refused() -> None:
    e = _refused("[node]\nindex = 1\n")
    assert e.field == "node.index"
    assert "only together with node.role" in str(e)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[node]\nrole = "boss"\n', "node.role"),
        ('[node]\nrole = "head"\nindex = 3\n', "node.index"),
        ('[node]\nrole = "worker"\nindex = 0\n', "node.index"),
        ('[node]\nrole = "worker"\nindex = 251\n', "node.index"),
        ("[node]\nindex = 0\n", "node.index"),
        ('[node]\nrole = ""\n', "node.role"),
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


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("[peer]\nheartbeat_s = -1\n", "peer.heartbeat_s", "between 0.1 and 60"),
        ("[peer]\nheartbeat_s = 0\n", "peer.heartbeat_s", "between 0.1 and 60"),
        ("[peer]\nheartbeat_s = 0.01\n", "peer.heartbeat_s", "between 0.1 and 60"),
        ("[peer]\nheartbeat_s = 61\n", "peer.heartbeat_s", "between 0.1 and 60"),
        ("[peer]\nheartbeat_s = nan\n", "peer.heartbeat_s", "must be a finite number"),
        ("[peer]\nheartbeat_s = inf\n", "peer.heartbeat_s", "must be a finite number"),
        ("[peer]\nheartbeat_s = -inf\n", "peer.heartbeat_s", "must be a finite number"),
        ("[peer]\ntimeout_s = nan\n", "peer.timeout_s", "must be a finite number"),
        ("[peer]\ntimeout_s = inf\n", "peer.timeout_s", "must be a finite number"),
        ("[peer]\ntimeout_s = -6\n", "peer.timeout_s", "between 0.1 and 600"),
        ("[peer]\ntimeout_s = 601\n", "peer.timeout_s", "between 0.1 and 600"),
    ],
)
def test_peer_timers_must_be_finite_and_in_range(text: str, field: str, fix: str) -> None:
    e = _refused(text)
    assert e.field == field
    assert fix in str(e) and "use e.g." in str(e)


@pytest.mark.parametrize(
    "text",
    [
        "[peer]\nheartbeat_s = 2.0\ntimeout_s = 2.0\n",
        "[peer]\nheartbeat_s = 5\ntimeout_s = 3\n",
        "[peer]\nheartbeat_s = 2.0\ntimeout_s = 1.5\n",
        "[peer]\ntimeout_s = 0.5\n",  # equal to the default heartbeat (0.5)
    ],
)
def test_timeout_must_exceed_heartbeat(text: str) -> None:
    e = _refused(text)
    assert e.field == "peer.timeout_s"
    assert "must be greater than peer.heartbeat_s (" in str(e)


def test_timeout_message_quotes_the_heartbeat() -> None:
    assert "must be greater than peer.heartbeat_s (5.0)" in str(_refused("[peer]\nheartbeat_s = 5\ntimeout_s = 3\n"))


def test_valid_peer_timers_are_kept() -> None:
    c = parse("[peer]\nheartbeat_s = 0.5\ntimeout_s = 2\nport = 65535\n")
    assert (c.peer.heartbeat_s, c.peer.timeout_s, c.peer.port) == (0.5, 2.0, 65535)


@pytest.mark.parametrize("key", ["port", "discovery_port", "pairing_port"])
@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_peer_ports_must_be_ports(key: str, port: int) -> None:
    e = _refused(f"[peer]\n{key} = {port}\n")
    assert e.field == f"peer.{key}"
    assert "from 1 to 65535" in str(e) and f"got {port}" in str(e)


@pytest.mark.parametrize("key", ["port", "discovery_port", "pairing_port"])
def test_peer_ports_must_be_integers(key: str) -> None:
    e = _refused(f'[peer]\n{key} = "7471"\n')
    assert e.field == f"peer.{key}"
    assert "must be a int" in str(e)


@pytest.mark.parametrize(
    ("text", "equal"),
    [
        ("[peer]\npairing_port = 7471\n", ("port", "pairing_port")),  # the default peer.port
        ("[peer]\ndiscovery_port = 7473\n", ("discovery_port", "pairing_port")),  # the default pairing_port
        ("[peer]\nport = 9000\npairing_port = 9000\n", ("port", "pairing_port")),
        ("[peer]\ndiscovery_port = 9000\npairing_port = 9000\n", ("discovery_port", "pairing_port")),
        ("[peer]\nport = 9000\ndiscovery_port = 9000\npairing_port = 9000\n", ("port", "discovery_port")),
        ("[peer]\nport = 7472\n", ("port", "discovery_port")),  # the default peer.discovery_port
    ],
)
def test_peer_ports_must_differ(text: str, equal: tuple[str, str]) -> None:
    e = _refused(text)
    assert "must differ" in str(e)
    assert all(f"peer.{key}" in str(e) for key in equal)
    assert e.field == f"peer.{equal[1]}"  # the later field of the first clash, in file order


def test_distinct_peer_ports_are_kept() -> None:
    c = parse("[peer]\nport = 1\ndiscovery_port = 65535\npairing_port = 8000\n")
    assert (c.peer.port, c.peer.discovery_port, c.peer.pairing_port) == (1, 65535, 8000)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[interconnect]\nsubnet_a = "192.168.100.0/31"\n', "interconnect.subnet_a"),
        ('[interconnect]\nsubnet_a = "192.168.100.0/32"\n', "interconnect.subnet_a"),
        ('[interconnect]\nsubnet_a = "192.168.100.7"\n', "interconnect.subnet_a"),  # no prefix: a /32
        ('[interconnect]\nsubnet_b = "192.168.101.0/31"\n', "interconnect.subnet_b"),
        # A /30 has two hosts (.1, .2): worker 2 would get .3, the broadcast address.
        ('[node]\nrole = "worker"\nindex = 2\n[interconnect]\nsubnet_a = "10.0.0.0/30"\n', "interconnect.subnet_a"),
        # A /29 has six hosts (.1 to .6): worker 6 would get .7, the broadcast address.
        ('[node]\nrole = "worker"\nindex = 6\n[interconnect]\nsubnet_b = "10.0.1.0/29"\n', "interconnect.subnet_b"),
    ],
)
def test_subnet_must_have_room_for_this_node(text: str, field: str) -> None:
    e = _refused(text)
    assert e.field == field
    assert "no usable host address" in str(e) and "use a larger subnet" in str(e)


def test_a_30_fits_a_head_and_one_worker() -> None:
    for role, index, ip in (("head", 0, "10.0.0.1"), ("worker", 1, "10.0.0.2")):
        c = parse(f'[node]\nrole = "{role}"\nindex = {index}\n[interconnect]\nsubnet_a = "10.0.0.0/30"\n')
        assert str(c.node_address(index).ip) == ip


@pytest.mark.parametrize(
    ("subnet", "what"),
    [
        ("127.0.0.0/8", "loopback"),
        ("127.1.0.0/24", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("239.1.1.0/24", "multicast"),
        ("169.254.0.0/24", "link-local"),
        ("0.0.0.0/24", "unspecified"),
        ("0.0.0.0/0", "unspecified"),
        ("240.0.0.0/24", "reserved"),
    ],
)
def test_subnet_must_not_be_special(subnet: str, what: str) -> None:
    e = _refused(f'[interconnect]\nsubnet_a = "{subnet}"\n')
    assert e.field == "interconnect.subnet_a"
    assert what in str(e) and "use a private subnet" in str(e)


def test_subnets_must_not_overlap() -> None:
    e = _refused('[interconnect]\nsubnet_a = "10.0.0.0/16"\nsubnet_b = "10.0.1.0/24"\n')
    assert e.field == "interconnect.subnet_b"
    assert "must not overlap" in str(e)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('state_dir = "var/lib/sparkd"\n', "state_dir"),
        ('sysroot = "."\n', "sysroot"),
        ('sysroot = ""\n', "sysroot"),
        ('[api]\nsocket = "sparkd.sock"\n', "api.socket"),
        ('[api]\nro_socket = "run/sparkd-ro.sock"\n', "api.ro_socket"),
        ('[frameworks]\nvllm_venv = "~/vllm"\n', "frameworks.vllm_venv"),
        ('[units]\nnetwork_namespace_path = "netns/spark1"\n', "units.network_namespace_path"),
        ('[lab]\nnvml_fixture = "nvml.json"\n', "lab.nvml_fixture"),
    ],
)
def test_paths_must_be_absolute(text: str, field: str) -> None:
    e = _refused(text)
    assert e.field == field
    assert "must be an absolute path (starting with /)" in str(e)


def test_paths_must_not_step_out_of_the_sysroot() -> None:
    e = _refused('state_dir = "/var/lib/../../etc"\n')
    assert e.field == "state_dir"
    assert "must not contain '..'" in str(e)


def test_optional_paths_may_be_empty() -> None:
    c = parse('[units]\nnetwork_namespace_path = ""\n[lab]\nnvml_fixture = ""\n')
    assert (c.units.network_namespace_path, c.lab.nvml_fixture) == ("", "")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('state_dir = "/var/lib/sparkd\\u0000x"\n', "state_dir"),
        ('[api]\nsocket = "/run/sparkd/sparkd.sock\\n"\n', "api.socket"),
        ('[node]\nname = "spark\\u001b[2J1"\n', "node.name"),
        ('log_format = "json\\u007f"\n', "log_format"),
        ('[interconnect]\nsubnet_a = "192.168.100.0/24\\t"\n', "interconnect.subnet_a"),
        ('[api]\nsocket_group = "sparkd\\u0085"\n', "api.socket_group"),
    ],
)
def test_strings_must_not_hold_control_characters(text: str, field: str) -> None:
    e = _refused(text)
    assert e.field == field
    assert "must not contain NUL or other control characters; remove them" in str(e)


def test_strings_are_capped() -> None:
    e = _refused(f'state_dir = "/{"a" * 5000}"\n')
    assert e.field == "state_dir"
    assert "too long" in str(e) and "at most 4096" in str(e)


@pytest.mark.parametrize("name", ["spark1\\n", "", "spark 1", "spark1.lan", "a" * 64, "spärk", "../etc"])
def test_node_name_is_a_hostname_like_label(name: str) -> None:
    e = _refused(f'[node]\nname = "{name}"\n')
    assert e.field == "node.name"
    assert "node.name" in str(e) and ("letters, digits" in str(e) or "control characters" in str(e))


def test_node_name_with_a_trailing_newline_is_refused() -> None:
    e = _refused('[node]\nname = "spark1\\n"\n')
    assert e.field == "node.name"
    assert "remove them" in str(e)


@pytest.mark.parametrize("name", ["spark1", "Spark-2", "node_3", "a" * 63])
def test_good_node_names(name: str) -> None:
    assert parse(f'[node]\nname = "{name}"\n').node.name == name


@pytest.mark.parametrize("group", ["", "spark d", "a" * 33, "sparkd:x"])
def test_socket_group_is_a_group_name(group: str) -> None:
    e = _refused(f'[api]\nsocket_group = "{group}"\n')
    assert e.field == "api.socket_group"
    assert "1 to 32 letters, digits" in str(e)


def test_control_characters_in_an_unknown_key_are_not_echoed() -> None:
    e = _refused('"bad\\u001bkey" = 1\n')
    assert "\x1b" not in str(e)
    assert e.field == "'bad\\x1bkey'"


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "etc/sparkd/sparkd.toml"
    with pytest.raises(ConfigError) as e:
        load(missing)
    assert e.value.field == "(file)"
    assert str(missing) in str(e.value)
    assert "config file not found" in str(e.value) and "--config PATH" in str(e.value)
    # How to get the packaged file back: dpkg reinstalls a missing conffile only when told to.
    assert "apt install --reinstall -o Dpkg::Options::=--force-confmiss sparkd" in str(e.value)
    assert "/usr/share/doc/sparkd/examples/sparkd.toml" in str(e.value)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "sparkd.toml"
    big.write_text('[node]\nname = "spark1"\n' + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError) as e:
        load(big)
    assert e.value.field == "(file)"
    assert str(big) in str(e.value) and "larger than 1048576 bytes" in str(e.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path)
    assert e.value.field == "(file)"
    assert "not a regular file" in str(e.value)


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "sparkd.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as e:
        load(fifo)
    assert "not a regular file" in str(e.value)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "sparkd.toml"
    f.write_bytes(b'[node]\nname = "sp\xffark"\n')
    with pytest.raises(ConfigError) as e:
        load(f)
    assert e.value.field == "(file)"
    assert "not UTF-8" in str(e.value)


def test_load_reads_a_file(tmp_path: Path) -> None:
    f = tmp_path / "sparkd.toml"
    f.write_text('[node]\nname = "spark2"\nrole = "worker"\nindex = 1\n')
    c = load(f)
    assert (c.node.name, c.node.role, c.node.index) == ("spark2", "worker", 1)


@pytest.mark.parametrize(
    ("api", "field"),
    [
        ('socket = "/run/sparkd/x.sock"\nro_socket = "/run/sparkd/x.sock"', "api.ro_socket"),
        ('socket = "/tmp/sparkd.sock"', "api.socket"),
        ('ro_socket = "/run/ro.sock"', "api.ro_socket"),
        (f'socket = "/run/sparkd/{"s" * 100}.sock"', "api.socket"),
    ],
    ids=["same-path", "in-tmp", "directly-in-run", "too-long"],
)
def test_socket_paths_are_their_own_and_fit(api: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(f'[node]\nname = "spark1"\n[api]\n{api}\n')
    assert e.value.field == field
