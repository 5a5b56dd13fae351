"""sparkd's launch agent for OpenMPI (`mpirun --mca plm_rsh_agent sparkd-launch-agent`): no ssh.

mpirun runs `sparkd-launch-agent HOST WORDS...` to start its daemon on another node. This program
sends HOST and the words, as one command line, to this node's sparkd over the unix socket named by
SPARKD_LAUNCH_AGENT_SOCKET (set in the TensorRT-LLM deployment's mpirun unit); sparkd checks that the
caller is that unit (by its cgroup), that HOST holds one of the deployment's planned ranks and that
the command is an orted launch, and has the peer sparkd start it as that rank's unit. It answers one
JSON line; this program exits 0 once the rank's unit is started, or prints the refusal and exits 1.

Standard library only, nothing of the daemon: it runs inside the deployment's unit (and image).
"""

from __future__ import annotations

import json
import os
import socket
import sys

SOCKET_ENV = "SPARKD_LAUNCH_AGENT_SOCKET"
TIMEOUT_S = 120.0
MAX_REPLY = 64 * 1024


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: sparkd-launch-agent HOST COMMAND... (run by mpirun as its plm_rsh_agent)", file=sys.stderr)
        return 2
    path = os.environ.get(SOCKET_ENV, "")
    if not path:
        print(f"sparkd-launch-agent: {SOCKET_ENV} is not set (it runs in a sparkd deployment's unit)", file=sys.stderr)
        return 2
    request = json.dumps({"host": args[0], "command": " ".join(args[1:])}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT_S)
            s.connect(path)
            try:
                s.sendall(request)
            except BrokenPipeError:
                pass  # sparkd answered (a refusal) before it read the request: the answer is waiting
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < MAX_REPLY:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as e:
        print(f"sparkd-launch-agent: cannot reach sparkd at {path}: {e}", file=sys.stderr)
        return 1
    try:
        answer = json.loads(reply)
    except ValueError:
        print("sparkd-launch-agent: sparkd's answer was not JSON", file=sys.stderr)
        return 1
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        error = answer.get("error") if isinstance(answer, dict) else None
        print(f"sparkd-launch-agent: refused: {str(error)[:1000]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
