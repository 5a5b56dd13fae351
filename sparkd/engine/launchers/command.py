"""The `command` framework: the operator's own command line, on every rank.

`command` is an argv whose elements may hold placeholders, replaced per rank: {rank}, {nnodes},
{master_addr}, {master_port}, {port}, {model}, {served_model_name}, {host_ip}. The environment also
has SPARKD_RANK, SPARKD_NNODES and MASTER_PORT besides every layer's interface variables. The
head's rank must serve an OpenAI-compatible API on `port` (`/health`, `/v1/models`): that is how
sparkd proves it serves.
"""

from __future__ import annotations

import re

from sparkd.engine.launchers.base import ExeLookup, Node, RankUnit, StartOrder
from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode

PLACEHOLDERS = ("rank", "nnodes", "master_addr", "master_port", "port", "model", "served_model_name", "host_ip")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def unknown_placeholders(arg: str) -> list[str]:
    return [name for name in _PLACEHOLDER.findall(arg) if name not in PLACEHOLDERS]


class Command:
    framework = Framework.COMMAND
    mode = LaunchMode.NATIVE
    order = StartOrder()
    token_metric = ""

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        return []  # the spec's own validation checks `command` (required here, placeholders known)

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        values = {
            "rank": str(a.rank),
            "nnodes": str(a.nnodes),
            "master_addr": a.master_addr,
            "master_port": str(a.master_port),
            "port": str(spec.port),
            "model": spec.model,
            "served_model_name": spec.served_model_name,
            "host_ip": node.host_ip,
        }
        argv = tuple(_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in spec.command)
        env = (("SPARKD_RANK", str(a.rank)), ("SPARKD_NNODES", str(a.nnodes)), ("MASTER_PORT", str(a.master_port)))
        return (RankUnit("", argv + spec.extra_args, env),)

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        return (spec.port, a.master_port) if a.rank == 0 else ()


LAUNCHER = Command()
