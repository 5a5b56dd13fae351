"""Launchers: one per framework and launch mode, behind one protocol.

A launcher is pure: from the spec, the node's assignment and its local facts it plans the node's
units (argv, environment, properties) as if natively; `sparkd.engine.launch` then wraps them in the
runtime (`sparkd.engine.runtimes`) and the sandbox. Each launcher also validates what only it knows
(which quantization methods its framework has, how it drafts speculatively) and says how its ranks
start: which of the head's units come before the workers', whether the workers' units are started
by sparkd or by the framework's own launcher (TensorRT-LLM's mpirun, through sparkd's launch
agent), and what to wait for in between (Ray's GPUs).
"""

from __future__ import annotations

from sparkd.engine.launchers import command, sglang, trtllm, vllm, vllm_ray
from sparkd.engine.launchers.base import Launcher, Node, StartOrder
from sparkd.model.deployment import DeploymentSpec, Framework, LaunchMode

__all__ = ["Launcher", "Node", "StartOrder", "launcher_for"]

_BY_FRAMEWORK: dict[Framework, Launcher] = {
    Framework.SGLANG: sglang.LAUNCHER,
    Framework.TRTLLM: trtllm.LAUNCHER,
    Framework.COMMAND: command.LAUNCHER,
}


def launcher_for(spec: DeploymentSpec) -> Launcher:
    """The launcher of `spec`'s framework and mode (validation has refused a mode a framework lacks)."""
    if spec.framework is Framework.VLLM:
        return vllm_ray.LAUNCHER if spec.mode is LaunchMode.RAY else vllm.LAUNCHER
    return _BY_FRAMEWORK[spec.framework]
