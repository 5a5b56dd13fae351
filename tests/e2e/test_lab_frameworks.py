"""Every framework and mode, end to end in the lab: `deploy up` -> READY -> a chat completion answered
through the head -> `deploy down` leaves no unit behind (issue 8's first "What it must show").

Each example spec under examples/ runs as written, with the lab's stand-ins (sparkd/lab/standins/),
whose parsers are built from the facts file's flag tables and which rendezvous for real across the
two lab nodes.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import ROOT, client, sparkd
from tests.e2e.test_lab import units, wait_for

pytestmark = pytest.mark.usefixtures("lab")

EXAMPLES = {
    "vllm-native": ("demo.yaml", "demo", 8000),
    "vllm-ray": ("vllm-ray.yaml", "demo-ray", 8010),  # a real Ray cluster: Ray head, Ray worker, then vllm serve
    "sglang": ("sglang.yaml", "demo-sglang", 30000),
    "command": ("command.yaml", "demo-command", 8020),
    "trtllm": ("trtllm.yaml", "/models/demo", 8355),  # trtllm-serve serves the model under its path
}
NAMES = {"trtllm": "demo-trtllm"}


def chat(port: int, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})
    url = f"http://192.168.100.1:{port}/v1/chat/completions"
    r = sparkd("lab", "exec", "spark2", "--", "curl", "-sf", url, "-H", "Content-Type: application/json", "-d", body)
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["choices"][0]["message"]["content"])


@pytest.mark.parametrize("framework", sorted(EXAMPLES))
def test_example_deploys_ready_answers_through_the_head_and_leaves_no_unit(framework: str) -> None:
    file, served, port = EXAMPLES[framework]
    name = NAMES.get(framework, served)
    wait_for("no deployment unit before", lambda: units("sparkd-*-rank*.service") == [], timeout=60)
    r = client("spark1", "-o", "json", "deploy", "up", "-f", str(ROOT / "examples" / file), "--wait", "--timeout", "90")
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        deployment = json.loads(r.stdout)["deployment"]
        assert deployment["state"] == "DEPLOYMENT_STATE_READY", deployment["message"]
        answer = chat(port, served)
        assert "192.168.100.1" in answer and "192.168.100.2" in answer  # through both ranks
    finally:
        down = client("spark1", "deploy", "down", name)
    assert down.returncode == 0, down.stderr
    try:
        wait_for("no deployment unit after", lambda: units("sparkd-*-rank*.service") == [], timeout=60)
    except BaseException:
        listing = subprocess.run(["systemctl", "list-units", "--all", "sparkd-*"], capture_output=True, text=True)
        print("units left:", listing.stdout)
        raise


AGENT = "/var/lib/sparkd-lab/frameworks/sparkd/bin/sparkd-launch-agent"
AGENT_SOCKET = "/var/lib/sparkd-lab/nodes/spark1/root/run/sparkd-agent/agent.sock"


def test_tensorrt_llm_starts_its_remote_rank_through_the_launch_agent_and_nothing_else_may() -> None:
    wait_for("no deployment unit before", lambda: units("sparkd-*-rank*.service") == [], timeout=60)
    r = client(
        "spark1", "-o", "json", "deploy", "up", "-f", str(ROOT / "examples/trtllm.yaml"), "--wait", "--timeout", "90"
    )
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        head = subprocess.run(
            ["systemctl", "show", "-p", "ExecStart", "--value", "sparkd-demo-trtllm-rank0.service"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"plm_rsh_agent {AGENT}" in head  # mpirun's remote shell is sparkd's launch agent
        assert "ssh" not in head
        worker = subprocess.run(
            ["systemctl", "show", "-p", "ExecStart", "--value", "sparkd-demo-trtllm-rank1.service"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "/usr/bin/orted" in worker and "--daemonize" not in worker  # the rank mpirun asked for, supervised
        # A process that is not the deployment's mpirun (its own unit, on the head's node) is refused.
        other = subprocess.run(
            [
                "systemd-run",
                "--wait",
                "--pipe",
                "--quiet",
                "-p",
                "NetworkNamespacePath=/run/netns/spark1",
                "-p",
                "DynamicUser=yes",
                f"--setenv=SPARKD_LAUNCH_AGENT_SOCKET={AGENT_SOCKET}",
                AGENT,
                "192.168.100.2",
                "orted",
                "-mca",
                "ess",
                "env",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 1
        assert "is not the mpirun of a TensorRT-LLM deployment this node heads" in other.stdout + other.stderr
    finally:
        down = client("spark1", "deploy", "down", "demo-trtllm")
    assert down.returncode == 0, down.stderr
    wait_for("no deployment unit after", lambda: units("sparkd-*-rank*.service") == [], timeout=60)
