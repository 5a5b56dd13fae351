"""A stand-in rank's fault switch (`sparkd.lab.faults`, set with `sparkd lab fault`): read at start, then
polled every 0.2 s. It can make the rank crash (exit 3), wedge (alive, `/health` 200, no tokens: the
rank's serving threads wait on `running`), start slowly, or fail every start."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sparkd.lab import faults
from sparkd.lab.standins.console import error, exit_now, log


class Switch:
    """This rank's fault switch (`sparkd.lab.faults`): read at start, then polled every POLL_SECONDS."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.running = threading.Event()  # set while not wedged
        self.running.set()
        self._last = ""  # what the last read found, so each change is logged once
        self.started = time.time()  # a crash switch set before this start was meant for an earlier run

    def read(self) -> faults.Fault:
        """The current fault; no file, or a bad one (logged once per change), is no fault."""
        if self.path is None:
            return faults.Fault()
        try:
            fault = faults.read_fault(self.path)
        except faults.FaultError as e:
            self._note(f"fault file {self.path} ignored: {e}")
            return faults.Fault()
        if fault is None:
            self._note("")
            return faults.Fault()
        self._note(f"fault file {self.path}: {faults.encode_fault(fault).decode().strip()}")
        return fault

    def _note(self, line: str) -> None:
        if line != self._last:
            self._last = line
            if line:
                log(line)

    def at_start(self) -> None:
        """crash_on_start exits; slow_start sleeps (a model that takes long to load); the rest is for `poll`."""
        fault = self.read()
        if fault.mode == "crash_on_start":
            error("EngineCore failed to start (lab fault switch crash_on_start)")
            exit_now(faults.CRASH_ON_START_EXIT_STATUS)
        if fault.mode == "slow_start":
            log(f"Loading model weights (lab fault switch slow_start: {fault.seconds:g} s)")
            time.sleep(fault.seconds)

    def poll(self) -> None:
        while True:
            fault = self.read()
            if fault.mode == "crash" and self._set_since_start():
                error("EngineCore died unexpectedly (lab fault switch crash)")
                try:
                    assert self.path is not None
                    self.path.unlink()  # consumed: the next start runs normally
                except OSError:
                    pass  # a sandboxed rank cannot remove it: the restarted one ignores it (`_set_since_start`)
                exit_now(faults.CRASH_EXIT_STATUS)
            if fault.mode == "wedge" and self.running.is_set():
                self.running.clear()
                log("wedged (lab fault switch): no more tokens until the switch is cleared")
            elif fault.mode != "wedge" and not self.running.is_set():
                self.running.set()
                log("wedge cleared (lab fault switch)")
            time.sleep(faults.POLL_SECONDS)

    def _set_since_start(self) -> bool:
        """Whether the switch was written after this process started: a crash is one-shot, and a rank
        started after it (its restart) runs normally, whether or not the file could be removed."""
        try:
            return self.path is not None and self.path.stat().st_mtime >= self.started - 0.05
        except OSError:
            return False

    def start(self) -> None:
        if self.path is None:
            return
        threading.Thread(target=self.poll, name="fault-switch", daemon=True).start()


def open_switch(served: str, rank: int) -> Switch:
    """Starts the fault switch of `rank` of the deployment serving `served` (before anything slow, so that a
    crash switch also ends a slow start) and applies the start-time faults."""
    try:
        path: Path | None = faults.fault_path(faults.standin_faults_dir(os.environ), served, rank)
    except faults.FaultError as e:
        log(f"no fault switch: {e}")
        path = None
    switch = Switch(path)
    switch.start()
    switch.at_start()
    return switch
