"""NCCL settings for a node, rendered as `/etc/nccl.conf` and as unit environment.

The same variables go to both places: /etc/nccl.conf for interactive shells and
tools on the host, and every supervised unit's environment, because containers do
not see the host's /etc/nccl.conf (DESIGN.md). Format rules (NCCL src/misc/param.cc,
reference/framework-facts.md §4): one `NAME=value` per line, split at the first `=`,
no whitespace trimming (`NCCL_X = 1` defines `"NCCL_X "`), `#` only as the first
character, lines read up to 4095 characters, name and value cut at 1023.
A leading `=` in a value is NCCL's exact-match prefix: `NCCL_SOCKET_IFNAME==enp1s0f1np1`
matches that netdev only (plain values are prefixes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sparkd.model.host import QosSettings
from sparkd.model.inventory import Twins

HEADER = "# Managed by sparkd: rewritten on every host apply. Put local overrides in ~/.nccl.conf.\n"

#: NCCL's limits when it reads a conf file (framework-facts.md §4). Its line limit, 4095, follows:
#: a name, `=` and a value within these make at most 2047 characters.
MAX_NAME = 1023
MAX_VALUE = 1023

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Netdev (IFNAMSIZ 16) and RDMA device (IB_DEVICE_NAME_MAX 64) names as the kernel makes them; this
# also keeps out NCCL's list syntax (`,` separates, `^` excludes, `:` introduces a port).
_NETDEV = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_RDMA_DEVICE = re.compile(r"[A-Za-z0-9_.-]{1,63}")


def host_nccl_env(twins: Twins, qos: QosSettings) -> dict[str, str]:
    """The NCCL variables that belong in production for this node, in a stable order.

    `NCCL_SOCKET_IFNAME` is twin A's netdev and `NCCL_IB_HCA` both twins' RoCE devices, each an
    exact match (`=`): a plain `rocep1s0f1` would also match `rocep1s0f10`. `NCCL_IB_TC` is the RoCE
    ToS when QoS is on, so that NCCL's traffic is marked for the priority that PFC protects, like the
    RDMA CM's (the traffic class is the whole ToS byte, DSCP and ECN; NCCL's default is 0).

    Left out, per reference/framework-facts.md §4 (which wins over the seed guide):
    `NCCL_IB_GID_INDEX`, because the GID index differs per HCA and per address, and NCCL's default (-1)
    selects it dynamically from the address family and RoCE version; `NCCL_IB_ROCE_VERSION_NUM=2`,
    a no-op (2 is the default); `NCCL_NET_GDR_LEVEL`, `NCCL_NET_GDR_READ` and `NCCL_IB_DISABLE`,
    which are in NCCL's Debugging section ("should generally not be set for production code"; on GB10
    GPU and CPU share memory over C2C, which `NCCL_NET_GDR_C2C` already covers by default, and
    `NCCL_IB_DISABLE=0` is the default); `NCCL_DEBUG`, a diagnosis setting; `NCCL_NET=IB`, which would
    turn a missing RoCE device (a container without /dev/infiniband) from a slow run into a failed
    one: an operator who wants that sets it through the `[host]` table's NCCL overrides.
    """
    for port in twins.all():
        if not _NETDEV.fullmatch(port.netdev):
            raise ValueError(f"not a netdev name NCCL_SOCKET_IFNAME can carry: {port.netdev!r}")
        if not _RDMA_DEVICE.fullmatch(port.rdma_device):
            raise ValueError(f"not an RDMA device name NCCL_IB_HCA can carry: {port.rdma_device!r}")
    env = {
        "NCCL_SOCKET_IFNAME": f"={twins.a.netdev}",
        "NCCL_IB_HCA": "=" + ",".join(t.rdma_device for t in twins.all()),
    }
    if qos.enabled:
        if not 0 <= qos.tos <= 255:
            raise ValueError(f"RoCE ToS {qos.tos} is not a byte (0..255): fix [host] qos.tos")
        env["NCCL_IB_TC"] = str(qos.tos)
    return env


def nccl_env(twins: Twins) -> dict[str, str]:
    """The NCCL variables for this node's twins with QoS off: `host_nccl_env` without `NCCL_IB_TC`."""
    return host_nccl_env(twins, QosSettings(enabled=False))


def check_setting(name: str, value: str) -> None:
    """Raises ValueError unless NCCL reads `name=value` back exactly as written."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"not a valid NCCL setting name: {name!r} (letters, digits and `_`, not starting with a digit; "
            "NCCL splits at the first `=` and trims no whitespace)"
        )
    if len(name) > MAX_NAME:
        raise ValueError(f"NCCL setting name {name[:40]}... is {len(name)} characters: NCCL cuts it at {MAX_NAME}")
    if not value:
        raise ValueError(f"NCCL setting {name} has an empty value: leave it out instead")
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(
            f"NCCL setting {name} has a character that is not printable ASCII (a newline, CR, tab...) in {value!r}"
        )
    if value.strip() != value:
        raise ValueError(f"NCCL setting {name} has a space at either end of {value!r}: NCCL would keep it")
    if len(value) > MAX_VALUE:
        raise ValueError(f"the value of NCCL setting {name} is {len(value)} characters: NCCL cuts it at {MAX_VALUE}")


def render_nccl_conf(env: Mapping[str, str]) -> bytes:
    """The contents of /etc/nccl.conf for `env`. Raises ValueError for a setting NCCL would misread."""
    for name, value in env.items():
        check_setting(name, value)
    return (HEADER + "".join(f"{k}={v}\n" for k, v in env.items())).encode()
