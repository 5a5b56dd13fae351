"""NCCL settings for a node, rendered as `/etc/nccl.conf` and as unit environment.

The same variables go to both places: /etc/nccl.conf for interactive shells and
tools on the host, and every supervised unit's environment, because containers do
not see the host's /etc/nccl.conf (DESIGN.md). Format rules (NCCL src/misc/param.cc):
one `NAME=value` per line, no spaces around `=`, `#` only as the first character.
A leading `=` in a value is NCCL's exact-match prefix: `NCCL_SOCKET_IFNAME==enp1s0f1np1`
matches that netdev only (plain values are prefixes).
"""

from __future__ import annotations

from sparkd.model.inventory import Twins

HEADER = "# Managed by sparkd: rewritten on every host apply. Put local overrides in ~/.nccl.conf.\n"


def nccl_env(twins: Twins) -> dict[str, str]:
    """The NCCL variables for this node's twins, in a stable order."""
    return {
        "NCCL_SOCKET_IFNAME": f"={twins.a.netdev}",
        "NCCL_IB_HCA": "=" + ",".join(t.rdma_device for t in twins.all()),
    }


def render_nccl_conf(env: dict[str, str]) -> bytes:
    """The contents of /etc/nccl.conf for `env`."""
    for name, value in env.items():
        if not name.isidentifier() or "\n" in value or name.strip() != name:
            raise ValueError(f"not a valid NCCL setting: {name!r}={value!r}")
    return (HEADER + "".join(f"{k}={v}\n" for k, v in env.items())).encode()
