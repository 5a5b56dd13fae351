"""A real systemd for machines whose PID 1 is not systemd (CI VMs, containers).

systemd runs as PID 1 of new pid+mount+cgroup namespaces, sharing the machine's /run,
network and filesystem, so the machine's D-Bus clients (and sparkd's) reach it on the
system bus. Units that would touch the shared machine are masked first: without the
mask list systemd-tmpfiles wipes /tmp and systemd-sysctl rewrites kernel settings
(shared/reference/testing-on-this-machine.md). Only one sandbox per machine: it owns
/run/systemd. `down()` powers it off and removes what it left in /run and cgroupfs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CGROUP = Path("/sys/fs/cgroup/unified/sparkd-lab")
PRIVATE = Path("/run/systemd/private")
MASKED = [
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-tmpfiles-clean.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-remount-fs.service",
    "systemd-sysusers.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-random-seed.service",
    "systemd-machine-id-commit.service",
    "systemd-firstboot.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-journal-flush.service",
    "systemd-journald-audit.socket",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "systemd-pstore.service",
    "systemd-timesyncd.service",
    "systemd-ask-password-console.path",
    "ldconfig.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "systemd-journald-dev-log.socket",
]
TARGET = """[Unit]
Description=sparkd lab systemd sandbox
Wants=dbus.socket dbus.service systemd-journald.socket systemd-journald.service
After=dbus.socket dbus.service systemd-journald.service
AllowIsolate=yes
"""
# What the sandboxed systemd and dbus create in the shared /run.
LEFTOVERS = [
    "/run/systemd/system",
    "/run/systemd/notify",
    "/run/systemd/transient",
    "/run/systemd/units",
    "/run/systemd/journal",
    "/run/systemd/generator",
    "/run/systemd/generator.early",
    "/run/systemd/generator.late",
    "/run/systemd/inaccessible",
    "/run/systemd/container",
    "/run/systemd/io.system.ManagedOOM",
    "/run/systemd/systemd-units-load",
    "/run/systemd/userdb",
    "/run/systemd/incoming",
    "/run/systemd/inhibit",
    "/run/systemd/propagate",
    "/run/systemd/unit-root",
    "/run/dbus/system_bus_socket",
    "/run/log/journal",
]


def needed() -> bool:
    """True when PID 1 is not systemd, so the lab must bring its own."""
    return not Path("/run/systemd/system").is_dir() or _comm(1) != "systemd"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state() -> str:
    r = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True, timeout=5)
    return r.stdout.strip()


def up(unit_dir: Path) -> int:
    """Boots the sandbox; returns the PID (host namespace) of its `unshare` parent."""
    if PRIVATE.exists():
        raise RuntimeError("a systemd sandbox already runs on this machine (/run/systemd/private exists)")
    unit_dir.mkdir(parents=True, exist_ok=True)
    for unit in MASKED:
        link = unit_dir / unit
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    (unit_dir / "sparkd-lab.target").write_text(TARGET)
    CGROUP.mkdir(parents=True, exist_ok=True)
    inner = (
        "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && mount --rbind /run /run && "
        f"exec env -i container=sparkd-lab SYSTEMD_UNIT_PATH={unit_dir}: PATH=/usr/sbin:/usr/bin:/sbin:/bin "
        "/lib/systemd/systemd --system --unit=sparkd-lab.target --log-target=journal --show-status=no"
    )

    def enter_cgroup() -> None:  # runs in the child before exec: own cgroup subtree = the cgroup-ns root
        (CGROUP / "cgroup.procs").write_text(str(os.getpid()))

    proc = subprocess.Popen(
        [
            "unshare",
            "--cgroup",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--propagation",
            "slave",
            "--",
            "/bin/sh",
            "-c",
            inner,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=enter_cgroup,  # noqa: PLW1509 (single-threaded here)
    )
    deadline = time.monotonic() + 20
    state = ""
    while time.monotonic() < deadline:
        if PRIVATE.is_socket() and not os.path.ismount(PRIVATE):
            # Clients outside the pid namespace cannot authenticate on the private socket (SO_PEERCRED
            # pid 0); hiding it makes systemctl and D-Bus clients use the system bus, which works.
            subprocess.run(["mount", "--bind", "/dev/null", str(PRIVATE)], check=True)
        if os.path.ismount(PRIVATE):
            state = _state()
            if state in ("running", "degraded"):
                log.info("lab.sandbox_up", pid=proc.pid, state=state)
                return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    down(proc.pid)
    raise RuntimeError(f"the systemd sandbox did not come up (state {state or 'none'})")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def down(pid: int | None) -> None:
    """Powers the sandbox off (SIGKILL of its PID 1 if it lingers) and cleans the shared /run."""
    if pid and _comm(pid) == "unshare":
        subprocess.run(["systemctl", "poweroff", "--no-block"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _comm(pid) == "unshare":
            time.sleep(0.1)
        if _comm(pid) == "unshare":
            for child in _children(pid):  # the sandbox's PID 1: killing it ends the whole pid namespace
                os.kill(child, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _comm(pid) == "unshare":
                    time.sleep(0.1)
    if os.path.ismount(PRIVATE):
        subprocess.run(["umount", str(PRIVATE)], check=False)
    for path in [str(PRIVATE), *LEFTOVERS]:
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if CGROUP.is_dir():
        for d in sorted(CGROUP.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if d.is_dir():
                try:
                    d.rmdir()
                except OSError:
                    pass
        try:
            CGROUP.rmdir()
        except OSError:
            pass
    log.info("lab.sandbox_down")
