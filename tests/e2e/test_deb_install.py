"""The .deb's life cycle on this machine, where systemd runs (the lab's sandbox): install, upgrade with a
deployment serving, remove, purge. The package is the real one (`packaging/build-deb`, revision 1, then 2
for the upgrade), installed with `apt-get install ./sparkd_*.deb` into this machine's own root, as an
operator would; the module's finalizer purges it whatever happens.

The unit is the package's, with one test-only drop-in in /run: `NetworkNamespacePath=` (the installed
daemon runs in a namespace of its own, then in lab node spark1's, never in this machine's root namespace),
and a short watchdog for the watchdog test. Debian's policy-rc.d (CI machines have one that says no)
decides whether postinst starts the daemon; where it does not, the test starts it as the operator would.

Skipped where a sparkd package is installed already (the test would replace an operator's daemon)."""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkd.lab import lab as lab_mod
from sparkd.lab import sandbox
from tests.e2e.conftest import MgmtCapture, lab_up
from tests.packaging import debs

ROOT = Path(__file__).parents[2]
UNIT = "sparkd.service"
DROPIN = Path("/run/systemd/system/sparkd.service.d/50-test.conf")
OWN_NETNS = "sparkd-deb"
CLI = "/usr/bin/sparkctl-client"


def sh(*argv: str, check: bool = True, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out  # type: ignore[no-any-return]


def apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return sh("apt-get", "-y", "-q", "--no-install-recommends", *args, env=env, timeout=600)


def installed() -> bool:
    return sh("dpkg-query", "-W", "-f=${Status}", "sparkd", check=False).stdout.startswith("install ok installed")


def show(unit: str, prop: str) -> str:
    return sh("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def policy_allows(action: str) -> bool:
    """What deb-systemd-invoke asks /usr/sbin/policy-rc.d before it starts or stops a unit (absent: allowed)."""
    policy = Path("/usr/sbin/policy-rc.d")
    return not policy.exists() or sh(str(policy), "sparkd", action, check=False).returncode in (0, 104)


def write_dropin(netns: str, extra: str = "") -> None:
    DROPIN.parent.mkdir(parents=True, exist_ok=True)
    DROPIN.write_text(
        f"# tests/e2e/test_deb_install.py (test only)\n[Service]\nNetworkNamespacePath=/run/netns/{netns}\n{extra}"
    )
    sh("systemctl", "daemon-reload")


def wait(what: str, probe: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def as_nobody(*argv: str, groups: str = "") -> subprocess.CompletedProcess[str]:
    """argv as nobody, with `groups` (a group name) as its only supplementary group, or none."""
    who = ["--groups", str(grp.getgrnam(groups).gr_gid)] if groups else ["--clear-groups"]
    return sh("setpriv", "--reuid=65534", "--regid=65534", *who, "--", *argv, check=False, cwd="/")


def ensure_started() -> None:
    """Started by postinst where policy allows; else by hand, as the operator would (`systemctl start`)."""
    if not policy_allows("start"):
        assert show(UNIT, "ActiveState") != "active", "policy-rc.d said no, yet sparkd runs"
        sh("systemctl", "start", UNIT)
    wait("sparkd.service active", lambda: show(UNIT, "ActiveState") == "active")


@pytest.fixture(scope="module")
def package_lab(mgmt_capture: MgmtCapture) -> Iterator[tuple[Path, Path]]:
    """A two-node lab, and the packages of revisions 1 and 2 for this machine; purges sparkd at the end."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb (Debian or Ubuntu)")
    if installed():
        pytest.skip("a sparkd package is installed on this machine already: not replacing it")
    target = debs.host_target()
    if target is None:
        pytest.skip("no sparkd package is built for this system (packaging/targets.py)")
    packages = debs.build(target, 1), debs.build(target, 2)
    had_group = group_exists()
    with lab_up(mgmt_capture, __name__):
        sh("ip", "netns", "add", OWN_NETNS)
        try:
            yield packages
        finally:
            if installed() or sh("dpkg-query", "-W", "sparkd", check=False).returncode == 0:
                apt("purge", "sparkd")
            shutil.rmtree(DROPIN.parent, ignore_errors=True)
            sh("systemctl", "daemon-reload", check=False)
            sh("ip", "netns", "del", OWN_NETNS, check=False)
            if group_exists() and not had_group:  # purge keeps it, as Debian does: this machine had none
                sh("groupdel", "sparkd", check=False)
            if show(lab_mod.daemon_unit("spark1"), "ActiveState") != "active":
                lab_mod.start_daemon("spark1")


def test_the_package_installs_upgrades_with_a_deployment_serving_removes_and_purges(
    package_lab: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """One test, four phases in order: each starts where the one before left the machine."""
    old, new = package_lab
    install_enables_and_starts_a_daemon_that_answers_every_user(old, capsys)
    the_daemon_feeds_the_watchdog_and_a_wedged_one_is_restarted()
    ranks = an_upgrade_keeps_config_key_and_pairing_and_never_restarts_a_deployment(new)
    remove_leaves_the_deployments_running_and_purge_leaves_nothing(ranks)


def install_enables_and_starts_a_daemon_that_answers_every_user(old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dropin(OWN_NETNS)  # before the install: postinst may start the unit
    out = apt("install", str(old))
    assert "Setting up sparkd (0.1.0-1" in out.stdout, out.stdout
    assert sh("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
    ensure_started()
    verify = sh("systemd-analyze", "verify", "--man=no", f"/{debs_unit_dir()}/{UNIT}", check=False)
    score = sh("systemd-analyze", "security", "--no-pager", UNIT).stdout.splitlines()[-1]
    with capsys.disabled():
        print(f"\ninstalled unit: systemd-analyze verify rc={verify.returncode} {verify.stderr.strip()!r}; {score}")
    assert verify.returncode == 0 and UNIT not in verify.stderr, verify.stderr
    status = json.loads(sh(CLI, "-o", "json", "status").stdout)
    assert status["node"]["sparkd_version"] == "0.1.0"
    # Any user: the read-only socket, found by the CLI by itself; the admin socket is not theirs.
    anyone = as_nobody(CLI, "-o", "json", "status")
    assert anyone.returncode == 0 and json.loads(anyone.stdout)["node"]["id"] == status["node"]["id"], anyone.stderr
    refused = as_nobody(CLI, "deploy", "logs", "nosuch")
    assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr and "read-only socket" in refused.stderr
    # A member of the group sparkd reaches the admin socket: the call gets as far as the daemon's answer.
    member = as_nobody(CLI, "deploy", "logs", "nosuch", groups="sparkd")
    assert "NOT_FOUND" in member.stderr and "PERMISSION_DENIED" not in member.stderr, member.stderr


def group_exists() -> bool:
    try:
        grp.getgrnam("sparkd")
    except KeyError:
        return False
    return True


def debs_unit_dir() -> str:
    return str(debs.packaging_module("targets")["TARGETS"][debs.host_target()].unit_dir)


def the_daemon_feeds_the_watchdog_and_a_wedged_one_is_restarted() -> None:
    write_dropin(OWN_NETNS, "WatchdogSec=2s\nTimeoutAbortSec=2s\n")
    sh("systemctl", "restart", UNIT)
    first = show(UNIT, "MainPID")
    time.sleep(5)  # well past the 2 s watchdog: fed
    assert show(UNIT, "ActiveState") == "active" and show(UNIT, "MainPID") == first and show(UNIT, "NRestarts") == "0"
    (host_pid,) = [int(p) for p in host_pids(UNIT)]  # the daemon alone (its identity helper has exited)
    os.kill(host_pid, 19)  # SIGSTOP: alive, but its event loop no longer turns
    wait("a restart by the watchdog", lambda: show(UNIT, "NRestarts") == "1" and show(UNIT, "ActiveState") == "active")
    journal = sh("journalctl", "-u", UNIT, "--no-pager", "-o", "cat").stdout
    assert "Watchdog timeout" in journal, journal[-2000:]
    write_dropin(OWN_NETNS)
    sh("systemctl", "restart", UNIT)


def host_pids(unit: str) -> list[str]:
    """The unit's processes as this machine's PIDs (MainPID is the sandbox's PID namespace's)."""
    cgroup = show(unit, "ControlGroup").lstrip("/")
    for top in (sandbox.CGROUP, Path("/sys/fs/cgroup")):  # the lab's sandboxed systemd, or the machine's
        if (top / cgroup / "cgroup.procs").exists():
            return (top / cgroup / "cgroup.procs").read_text().split()
    return []


def an_upgrade_keeps_config_key_and_pairing_and_never_restarts_a_deployment(new: Path) -> dict[str, str]:
    """Returns the deployment's ranks' MainPIDs, unchanged by the upgrade."""
    # The installed daemon takes over lab node spark1 (the head): its config, its state, its namespace.
    lab_mod.stop_daemon("spark1")
    config = (lab_mod.node_dir("spark1") / "sparkd.toml").read_bytes()
    Path("/etc/sparkd/sparkd.toml").write_bytes(config)  # the operator's edit of the conffile
    write_dropin("spark1", f"ReadWritePaths={lab_mod.LAB_DIR}\n")  # the node's sysroot: its sockets and state
    sh("systemctl", "restart", UNIT)
    socket = str(lab_mod.admin_socket("spark1"))
    cli = [CLI, "--socket", socket]
    wait("spark2 connected to the installed daemon", lambda: peer_connected(cli))
    up = sh(*cli, "deploy", "up", "-f", str(ROOT / "examples/demo.yaml"), "--wait", timeout=240, check=False)
    journal = sh("journalctl", "--no-pager", "-o", "cat", "-u", "sparkd-demo-rank0", "-u", "sparkd-demo-rank1")
    assert up.returncode == 0, f"{up.stdout}{up.stderr}\nthe ranks' journal:\n{journal.stdout[-3000:]}"
    assert '"DEPLOYMENT_STATE_READY"' in sh(*cli, "-o", "json", "status").stdout
    ranks = deployment_pids()
    key = (lab_mod.sysroot("spark1") / "var/lib/sparkd/node.key").read_bytes()
    daemon = show(UNIT, "MainPID")

    out = apt("install", str(new))
    assert "Unpacking sparkd (0.1.0-2" in out.stdout, out.stdout
    if not policy_allows("restart"):
        sh("systemctl", "restart", UNIT)  # the operator's step where policy-rc.d keeps postinst from it
    wait("the upgraded daemon", lambda: show(UNIT, "MainPID") not in ("0", daemon) and peer_connected(cli))
    assert sh("dpkg-query", "-W", "-f=${Version}", "sparkd").stdout.startswith("0.1.0-2")
    assert Path("/etc/sparkd/sparkd.toml").read_bytes() == config, "the edited conffile is kept"
    assert (lab_mod.sysroot("spark1") / "var/lib/sparkd/node.key").read_bytes() == key
    wait("demo READY again", lambda: '"DEPLOYMENT_STATE_READY"' in sh(*cli, "-o", "json", "status").stdout)
    assert deployment_pids() == ranks, "a deployment's unit was restarted by the upgrade"
    return ranks


def peer_connected(cli: list[str]) -> bool:
    out = sh(*cli, "-o", "json", "peer", "status", check=False)
    return out.returncode == 0 and "PEER_STATE_CONNECTED" in out.stdout


def deployment_pids() -> dict[str, str]:
    """MainPID of every rank's unit of the demo deployment, on both nodes (one systemd runs them all)."""
    units = sh("systemctl", "list-units", "--plain", "--no-legend", "sparkd-demo-*").stdout.split("\n")
    names = sorted(line.split()[0] for line in units if line.strip())
    assert len(names) == 2, names
    return {name: show(name, "MainPID") for name in names}


def remove_leaves_the_deployments_running_and_purge_leaves_nothing(ranks: dict[str, str]) -> None:
    files = sh("dpkg-query", "-L", "sparkd").stdout.split()
    apt("remove", "sparkd")
    if not policy_allows("stop"):
        assert show(UNIT, "ActiveState") == "active", "policy-rc.d said no, yet sparkd was stopped"
        sh("systemctl", "stop", UNIT)  # the operator's step where policy-rc.d keeps prerm from it
    assert show(UNIT, "ActiveState") != "active"
    assert deployment_pids() == ranks, "removing sparkd stopped a deployment"
    assert Path("/etc/sparkd/sparkd.toml").exists(), "remove keeps the config"
    out = apt("purge", "sparkd")
    assert "/var/lib/sparkd/node.key" in out.stderr + out.stdout, "purge says where the node key was"
    ours = [f for f in files if "sparkd" in f]
    left = [f for f in ours if os.path.lexists(f)]
    left += [p for p in ("/etc/sparkd", "/var/lib/sparkd", "/run/sparkd", "/usr/lib/sparkd") if os.path.lexists(p)]
    left += [str(p) for p in Path("/etc/systemd/system").rglob("sparkd.service")]
    left += [str(p) for p in Path("/var/lib/systemd/deb-systemd-helper-enabled").rglob("*sparkd*")]
    assert left == [], left
    # The group stays, as Debian leaves every system group (files may carry its ID); purge says so.
    assert group_exists() and "the group sparkd stays" in out.stdout + out.stderr
    assert not installed() and sh("dpkg-query", "-W", "sparkd", check=False).returncode != 0
    # The lab's own daemon serves spark1 again and takes the deployment down.
    lab_mod.start_daemon("spark1")
    lab_cli = [sys.executable, "-m", "sparkctl_client", "--socket", str(lab_mod.admin_socket("spark1"))]
    wait("spark2 connected to the lab's daemon again", lambda: peer_connected(lab_cli))
    sh(*lab_cli, "deploy", "down", "demo", cwd=ROOT)
    assert sh("systemctl", "list-units", "--plain", "--no-legend", "sparkd-demo-*").stdout.strip() == ""
