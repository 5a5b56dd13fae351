"""How exposed a deployment unit is, in systemd's own words: `systemd-analyze security` of the units sparkd
starts for a vLLM rank, native and in a container (needs systemd-analyze with --offline: systemd 250+).

    .venv/bin/python benchmarks/unit_security.py [--user dynamic|ACCOUNT] [--groups G,...] [--quiet]

Builds the head's rank of a two-node vLLM deployment with the real launch plan (sparkd.engine.launch),
sandboxes it as the node's config would (sparkd.engine.sandbox, `frameworks.user`/`frameworks.groups`),
writes each as a unit file (sparkd.model.unit.unit_file) into a temporary directory and prints
`systemd-analyze security --offline=true`'s table and overall exposure (0 is best, 10 is an unsandboxed
root service) for each. The native rank keeps what a GPU and RDMA rank needs (docs/unit-sandbox.md says
which lines stay ✗ and why); the container unit is the docker CLI, the container's own confinement
being `docker run`'s. Nothing is started. Figures are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sparkd.config import FrameworksConfig
from sparkd.engine.launch import LocalFacts, plan_units
from sparkd.engine.sandbox import sandbox_units, unit_sandbox
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, Runtime
from sparkd.model.inventory import RdmaPort, Twins
from sparkd.model.unit import UnitSpec, unit_file

TWINS = Twins(
    RdmaPort("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1", 200, "ACTIVE"),
    RdmaPort("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1", 200, "ACTIVE"),
)
IMAGE = "nvcr.io/nvidia/vllm:26.05-py3"


def units(frameworks: FrameworksConfig) -> list[tuple[str, UnitSpec]]:
    """(kind, unit) for a native and a container vLLM head rank."""
    spec = DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", pipeline=2, tensor=1, port=8000)
    facts = LocalFacts(host_ip="192.168.100.1", twins=TWINS, frameworks=FrameworksConfig(vllm_venv="/opt/vllm"))
    assignment = Assignment(0, 2, "192.168.100.1", 29501)
    out = []
    for kind, container in (("native", False), ("container", True)):
        s = dataclasses.replace(spec, name=f"demo-{kind}", runtime=Runtime(image=IMAGE if container else ""))
        planned = plan_units(s, assignment, facts)  # a container rank: the runtime's `docker run` already
        fields = unit_sandbox(frameworks, s.name, container)
        out += [(kind, unit) for unit in sandbox_units(planned, fields)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="dynamic", help='frameworks.user: "dynamic" or an account name')
    parser.add_argument("--groups", default="", help="frameworks.groups, comma-separated")
    parser.add_argument("--quiet", action="store_true", help="print the scores only, not the tables")
    args = parser.parse_args()
    frameworks = FrameworksConfig(user=args.user, groups=tuple(g for g in args.groups.split(",") if g))
    scores = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, unit in units(frameworks):
            path = Path(tmp) / unit.name
            path.write_text(unit_file(unit))
            result = subprocess.run(
                ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            found = re.search(r"Overall exposure level for \S+: ([0-9.]+ \S+)", result.stdout)
            score = found.group(1) if found else "?"
            scores.append(f"{kind:9} {unit.name}: {score}")
            if not args.quiet:
                print(f"## {kind}: {unit.name}\n\n{unit_file(unit)}\n{result.stdout}")
    print("\n".join(["exposure (systemd-analyze security --offline=true, 0 best, 10 worst):", *scores]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
