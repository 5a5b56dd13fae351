"""sd_notify(3): what the daemon tells systemd, and the watchdog it feeds.

`notify()` sends one notification (READY=1, STOPPING=1, STATUS=...) through systemd-python; it is a
no-op outside systemd. `Watchdog` feeds systemd's watchdog (`WatchdogSec=` in sparkd.service) the way
sd_watchdog_enabled(3) says: only when `WATCHDOG_USEC` is set, and `WATCHDOG_PID`, when set, is this
process. It sends `WATCHDOG=1` every half interval from a task on the daemon's event loop, so a
blocked or wedged loop stops feeding and systemd restarts the daemon; and only while `check` (the
state loop's own liveness, `StateLoop.stalled`) finds nothing stuck. A leaf module: the standard
library, structlog and systemd-python only.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

#: The WATCHDOG_USEC values fed (microseconds): from 20 ms (feeding every 10 ms) to a day. Anything else
#: is a misconfiguration, said once and not fed (systemd then restarts the daemon, which says it again).
MIN_USEC = 20_000
MAX_USEC = 86_400_000_000
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII digits only: str.isdigit() takes other scripts' digits too


def notify(state: str) -> bool:
    """sd_notify(3): whether it was sent (False outside systemd, where NOTIFY_SOCKET is unset)."""
    try:
        from systemd import daemon
    except ImportError:
        return False
    return bool(daemon.notify(state))


def watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """sd_watchdog_enabled(3): the watchdog timeout systemd asks this process to feed (microseconds), or
    None: no watchdog, one for another process, or a value that is not a bounded positive integer
    (logged; never raised)."""
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if usec is None:
        return None
    if pid is not None:
        if not _DIGITS.fullmatch(pid) or int(pid) <= 0:
            log.warning("watchdog.invalid", variable="WATCHDOG_PID", value=pid[:40])
            return None
        if int(pid) != os.getpid():
            log.info("watchdog.not_ours", watchdog_pid=int(pid), pid=os.getpid())
            return None
    if not _DIGITS.fullmatch(usec) or not MIN_USEC <= int(usec) <= MAX_USEC:
        log.warning("watchdog.invalid", variable="WATCHDOG_USEC", value=usec[:40], min=MIN_USEC, max=MAX_USEC)
        return None
    return int(usec)


class Watchdog:
    """Feeds systemd's watchdog from the event loop while `check()` returns None (see the module docstring).

    `check` returns why the daemon is not alive (a stuck state loop, say) or None; while it has a reason,
    the watchdog is not fed, and the reason is logged once, so the journal says why systemd restarts the
    daemon. The environment is read once, at construction.
    """

    def __init__(
        self,
        check: Callable[[], str | None] = lambda: None,
        environ: Mapping[str, str] = os.environ,
        send: Callable[[str], bool] = notify,
    ) -> None:
        self.check, self.send = check, send
        usec = watchdog_usec(environ)
        self.timeout = None if usec is None else usec / 1e6  # seconds; None: nothing to feed
        self._task: asyncio.Task[None] | None = None

    @property
    def period(self) -> float | None:
        """Seconds between two feeds: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.timeout is None else self.timeout / 2

    def start(self) -> None:
        """Starts feeding on the running loop (after READY=1); a no-op without a watchdog."""
        if self.period is None or self._task is not None:
            return
        log.info("watchdog.feeding", every_s=self.period, timeout_s=self.timeout)
        self._task = asyncio.create_task(self._feed(self.period), name="watchdog")

    async def stop(self) -> None:
        """Stops feeding (before STOPPING=1: systemd stops watching a stopping service)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _reason(self) -> str | None:
        try:
            return self.check()
        except Exception as e:  # a broken check is no evidence of life either
            return f"the liveness check failed: {type(e).__name__}: {e}"[:300]

    async def _feed(self, period: float) -> None:
        withheld: str | None = None  # the reason the last round did not feed
        failed: str | None = None  # the last send error, said once
        while True:
            reason = self._reason()
            if reason is None:
                if withheld is not None:
                    log.info("watchdog.resumed")
                try:
                    self.send("WATCHDOG=1")
                    failed = None
                except OSError as e:
                    if failed != str(e):
                        failed = str(e)
                        log.warning("watchdog.send_failed", error=failed[:300])
            elif reason != withheld:
                log.error("watchdog.withheld", reason=reason, timeout_s=self.timeout)
            withheld = reason
            await asyncio.sleep(period)
