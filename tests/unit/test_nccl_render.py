"""/etc/nccl.conf rendering: NCCL's own format, exact-match names for both twins."""

from __future__ import annotations

import pytest

from sparkd.model.inventory import RdmaPort, Twins
from sparkd.render.nccl import nccl_env, render_nccl_conf

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
