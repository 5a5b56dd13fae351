"""Failpoints: the test suite's way to kill sparkd at one exact step of a host apply.

`SPARKD_HOST_FAILPOINT=<name>` in the daemon's environment makes `failpoint(name)` end the
process with SIGKILL, as `kill -9` would, at that step: "journaled" (the intent journal is
written, nothing changed yet), "change-N" (after the N-th change), "verified", "committed"
(the committed state is written, the journal not yet removed). Unset in production: then
every call is a comparison and nothing else. It can only ever end sparkd itself.
"""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("SPARKD_HOST_FAILPOINT", "")


def failpoint(name: str) -> None:
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
