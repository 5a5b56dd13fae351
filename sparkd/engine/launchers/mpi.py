"""The remote command that OpenMPI's mpirun hands its `plm_rsh_agent`, checked before anything runs it.

mpirun (OpenMPI 4) runs `AGENT HOST WORDS...` where WORDS are a command line meant for a remote shell
(`orted -mca ess "env" -mca ess_base_jobid "870645760" ... --mca plm_rsh_agent "AGENT" ...`). sparkd's
launch agent sends them, joined, to its sparkd, which hands them to the peer sparkd; both split them
with shlex (no shell ever sees them) and accept only `orted` followed by MCA settings of the keys that
mpirun's launcher itself sets. Anything else (another program, a shell operator, a setting that loads
code from a path or names another launcher) is refused, naming the word.
"""

from __future__ import annotations

import posixpath
import re
import shlex

MAX_COMMAND_BYTES = 16 * 1024
MAX_WORDS = 256
MAX_VALUE = 1024
#: MCA keys an orted may be given: mpirun's own (ess, orte, plm, routed, rmaps, pmix) and the
#: transports' interface choices (btl, oob), which sparkd sets itself through the environment.
#: The MCA settings mpirun 4.1's rsh launcher gives an orted (recorded: tests/data/orted-argv*.txt), and the
#: transports' interface choices, which sparkd sets itself through the environment. Nothing else.
KEYS = frozenset(
    {
        "ess", "ess_base_jobid", "ess_base_vpid", "ess_base_num_procs", "orte_node_regex", "orte_hnp_uri",
        "orte_parent_uri", "plm", "plm_rsh_agent", "plm_rsh_no_tree_spawn", "routed", "pmix",
        "rmaps_base_mapping_policy", "hwloc_base_binding_policy", "btl_tcp_if_include", "oob_tcp_if_include",
    }
)  # fmt: skip
_URI_HOSTS = re.compile(r"tcp6?://\[?([0-9A-Fa-f:.]+)\]?:[0-9]+")
#: Keys that would let the command choose what runs (the launch agent, a launcher, a path to load from).
_REFUSED_KEYS = ("orte_launch_agent", "orte_fork_agent", "orte_prefix", "orte_startup_timeout_file")


#: The environment mpirun sets first when it was run by its absolute path (as if --prefix): dropped, since
#: the rank's unit has its own PATH, and the orted that runs is the runtime's.
PRELUDE_VARS = ("PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")


def _without_prelude(words: list[str]) -> list[str]:
    """`words` after mpirun's `NAME=VALUE ; export NAME ;` prelude (only for PRELUDE_VARS)."""
    i = 0
    while i < len(words) and "=" in words[i] and not words[i].startswith("-"):
        name = words[i].split("=", 1)[0]
        if name not in PRELUDE_VARS or words[i + 1 : i + 5] != [";", "export", name, ";"]:
            raise OrtedRefused(f"{words[i][:80]!r} is not the PATH prelude mpirun writes")
        i += 5
    return words[i:]


class OrtedRefused(ValueError):
    """The command is not an orted launch sparkd runs; the message names the word."""


def orted_command(command: str, agent: str, head: str = "") -> tuple[str, ...]:
    """The orted argv in `command` (words after its `orted`), or OrtedRefused. `agent` is the only
    plm_rsh_agent the command may name (this deployment's launch agent); `head`, when given, the only
    address its mpirun may be reached at (orte_hnp_uri, orte_parent_uri)."""
    if len(command.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
        raise OrtedRefused(f"the command is longer than {MAX_COMMAND_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in command):
        raise OrtedRefused("the command holds control characters")
    try:
        words = shlex.split(command)
    except ValueError as e:
        raise OrtedRefused(f"the command does not split into words: {e}") from None
    if not words or len(words) > MAX_WORDS:
        raise OrtedRefused(f"the command must be orted and at most {MAX_WORDS} words")
    words = _without_prelude(words)
    if not words or posixpath.basename(words[0]) != "orted":
        raise OrtedRefused(f"only orted is started, not {(words or [''])[0][:80]!r}")
    # `--daemonize` (mpirun asks it when it spawns every orted itself): the unit is the orted's supervisor, so
    # it runs in the foreground (a daemonized orted would leave its unit finished, and be killed with it).
    rest, i = [w for w in words[1:] if w != "--daemonize"], 0
    while i < len(rest):
        word = rest[i]
        if word not in ("-mca", "--mca") or i + 2 >= len(rest):
            raise OrtedRefused(f"word {i + 2} ({word[:80]!r}) is not an MCA setting (-mca KEY VALUE)")
        key, value = rest[i + 1], rest[i + 2]
        if key in _REFUSED_KEYS or key not in KEYS:
            raise OrtedRefused(f"MCA key {key[:80]!r} is not one mpirun's launcher sets")
        if key == "plm_rsh_no_tree_spawn" and value != "1":
            raise OrtedRefused("plm_rsh_no_tree_spawn must be 1: an orted never launches further ones")
        if head and key in ("orte_hnp_uri", "orte_parent_uri"):
            hosts = _URI_HOSTS.findall(value)
            if not hosts or any(h != head for h in hosts):
                raise OrtedRefused(f"{key} must reach the head's mpirun at {head}, not {value[:80]!r}")
        if len(value) > MAX_VALUE:
            raise OrtedRefused(f"the value of {key} is longer than {MAX_VALUE} characters")
        if key == "plm_rsh_agent" and value != agent:
            raise OrtedRefused(
                f"plm_rsh_agent must be this deployment's launch agent {agent}, not {value[:80]!r} (is "
                "frameworks.launch_agent the same on every node?)"
            )
        i += 3
    return ("orted", *rest)
