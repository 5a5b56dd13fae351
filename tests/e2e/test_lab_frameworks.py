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
    "sglang": ("sglang.yaml", "demo-sglang", 30000),
    "command": ("command.yaml", "demo-command", 8020),
}


def chat(port: int, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})
    url = f"http://192.168.100.1:{port}/v1/chat/completions"
    r = sparkd("lab", "exec", "spark2", "--", "curl", "-sf", url, "-H", "Content-Type: application/json", "-d", body)
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["choices"][0]["message"]["content"])


@pytest.mark.parametrize("framework", sorted(EXAMPLES))
def test_example_deploys_ready_answers_through_the_head_and_leaves_no_unit(framework: str) -> None:
    file, name, port = EXAMPLES[framework]
    wait_for("no deployment unit before", lambda: units("sparkd-*-rank*.service") == [], timeout=60)
    r = client("spark1", "-o", "json", "deploy", "up", "-f", str(ROOT / "examples" / file), "--wait", "--timeout", "90")
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        deployment = json.loads(r.stdout)["deployment"]
        assert deployment["state"] == "DEPLOYMENT_STATE_READY", deployment["message"]
        answer = chat(port, name)
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
