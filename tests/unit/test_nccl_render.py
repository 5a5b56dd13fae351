"""/etc/nccl.conf rendering: NCCL's own format, exact-match names for both twins, NCCL_IB_TC with QoS."""

from __future__ import annotations

import pytest

from sparkd.model.host import QosSettings
from sparkd.model.inventory import RdmaPort, Twins
from sparkd.render.nccl import host_nccl_env, nccl_env, render_nccl_conf

A = RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE")
B = RdmaPort("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE")


def test_golden_dual_twin() -> None:
    assert render_nccl_conf(nccl_env(Twins(A, B))).decode() == (
        "# Managed by sparkd: rewritten on every host apply. Put local overrides in ~/.nccl.conf.\n"
        "NCCL_SOCKET_IFNAME==enp1s0f1np1\n"
        "NCCL_IB_HCA==rocep1s0f1,roceP2p1s0f1\n"
    )


def test_single_twin_names_one_hca() -> None:
    assert nccl_env(Twins(A, None))["NCCL_IB_HCA"] == "=rocep1s0f1"


def test_every_line_is_name_equals_value_without_spaces() -> None:
    for line in render_nccl_conf(nccl_env(Twins(A, B))).decode().splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert name.isidentifier() and " " not in line and value


def test_refuses_a_value_with_a_newline() -> None:
    with pytest.raises(ValueError):
        render_nccl_conf({"NCCL_DEBUG": "INFO\nNCCL_X=1"})


def test_host_env_with_qos_adds_the_traffic_class_of_the_roce_tos() -> None:
    env = host_nccl_env(Twins(A, B), QosSettings())
    assert env == {
        "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",
        "NCCL_IB_HCA": "=rocep1s0f1,roceP2p1s0f1",
        "NCCL_IB_TC": "106",
    }
    assert render_nccl_conf(env) == (
        b"# Managed by sparkd: rewritten on every host apply. Put local overrides in ~/.nccl.conf.\n"
        b"NCCL_SOCKET_IFNAME==enp1s0f1np1\n"
        b"NCCL_IB_HCA==rocep1s0f1,roceP2p1s0f1\n"
        b"NCCL_IB_TC=106\n"
    )


def test_host_env_follows_a_configured_tos() -> None:
    assert host_nccl_env(Twins(A, None), QosSettings(tos=98))["NCCL_IB_TC"] == "98"


def test_qos_off_sets_no_traffic_class_and_equals_nccl_env() -> None:
    env = host_nccl_env(Twins(A, B), QosSettings(enabled=False))
    assert "NCCL_IB_TC" not in env
    assert env == nccl_env(Twins(A, B))


def test_host_env_leaves_out_debugging_and_no_op_variables() -> None:
    env = host_nccl_env(Twins(A, B), QosSettings())
    for name in (
        "NCCL_IB_GID_INDEX",
        "NCCL_IB_ROCE_VERSION_NUM",
        "NCCL_NET_GDR_LEVEL",
        "NCCL_NET_GDR_READ",
        "NCCL_IB_DISABLE",
        "NCCL_DEBUG",
    ):
        assert name not in env


def test_refuses_a_tos_that_is_not_a_byte() -> None:
    with pytest.raises(ValueError, match="ToS 256"):
        host_nccl_env(Twins(A, B), QosSettings(tos=256))


@pytest.mark.parametrize(
    "port",
    [
        RdmaPort("rocep1s0f1", "enp1s0f1,lo", "0000:01:00.1", 200, "ACTIVE"),
        RdmaPort("rocep1s0f1", "enp1s0f1np1xxxxx", "0000:01:00.1", 200, "ACTIVE"),  # 16 characters
        RdmaPort("rocep1s0f1:1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
        RdmaPort("", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
    ],
)
def test_refuses_device_names_that_break_nccl_lists(port: RdmaPort) -> None:
    with pytest.raises(ValueError):
        host_nccl_env(Twins(port, None), QosSettings())


@pytest.mark.parametrize(
    "name",
    ["NCCL_X=Y", "NCCL X", "NCCL_X ", " NCCL_X", "#NCCL_X", "1NCCL", "", "NCCL_\u00e9", "NCCL_X\n"],
)
def test_refuses_names_nccl_would_misread(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        render_nccl_conf({name: "1"})


@pytest.mark.parametrize("value", ["", " INFO", "INFO ", "a\rb", "a\tb", "a\x00b", "caf\u00e9"])
def test_refuses_values_nccl_would_misread(value: str) -> None:
    with pytest.raises(ValueError, match="NCCL_DEBUG"):
        render_nccl_conf({"NCCL_DEBUG": value})


def test_value_length_limit_is_nccls() -> None:
    assert render_nccl_conf({"NCCL_X": "a" * 1023}).endswith(b"NCCL_X=" + b"a" * 1023 + b"\n")
    with pytest.raises(ValueError, match="1024 characters"):
        render_nccl_conf({"NCCL_X": "a" * 1024})


def test_name_length_limit_is_nccls() -> None:
    render_nccl_conf({"N" * 1023: "1"})
    with pytest.raises(ValueError, match="1024 characters"):
        render_nccl_conf({"N" * 1024: "1"})


def test_a_value_may_hold_equals_signs() -> None:
    assert render_nccl_conf({"NCCL_IB_HCA": "=a,b"}).endswith(b"\nNCCL_IB_HCA==a,b\n")
