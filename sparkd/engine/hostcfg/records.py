"""What the host configuration keeps on disk, under `<state_dir>/host/` (0600, written atomically).

- `journal.json`: the intent journal of the apply in progress, written before the first change:
  its id, its phase ("applying", or "applied" while it waits for confirmation until `deadline`),
  the desired state and every component's prior items. A journal found at start means the apply
  did not finish: the host is brought back to the prior items, unless `committed.json` carries
  the journal's id (the commit was written, only the journal's removal was cut short).
- `committed.json`: the last committed desired state, and the id of the apply that committed it.
  sparkd re-applies it at every start (addresses, QoS, module: what a reboot forgets) and reports
  drift from it.
- `baseline.json`: each item as it was before sparkd first changed it: `host restore` brings the
  host back to it, byte for byte.

Every record is input: read bounded, parsed strictly; a record that does not parse is moved
aside (`.bad`) and reported, never acted on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from sparkd.host.protocols import Files

log = structlog.get_logger(__name__)

#: The largest record read back (a journal holds each managed file's prior bytes, base64).
MAX_RECORD = 16 << 20

#: component name -> key -> recorded item (the components' `dump`)
Items = dict[str, dict[str, Any]]


@dataclass
class Journal:
    """The intent journal of one apply."""

    id: str
    phase: str  # "applying" | "applied"
    desired: dict[str, Any]
    prior: Items
    deadline: float = 0.0  # when "applied": revert unless confirmed by then (wall clock)
    started: float = field(default_factory=time.time)
    what: str = "host apply"  # for the ABORTED message of a second apply, and for status


class HostRecords:
    """The three records (see the module's docstring)."""

    def __init__(self, files: Files, state_dir: str) -> None:
        self.files = files
        self.dir = f"{state_dir}/host"

    def _read(self, name: str) -> Any:
        path = f"{self.dir}/{name}"
        try:
            data = self.files.read_bounded(path, MAX_RECORD)
        except OSError as e:
            log.error("host.record_unreadable", path=path, error=str(e))
            return None
        if data is None:
            return None
        try:
            if len(data) > MAX_RECORD:
                raise ValueError(f"larger than {MAX_RECORD} bytes")
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            self._set_aside(path, str(e))
            return None

    def _set_aside(self, path: str, why: str) -> None:
        log.error("host.record_invalid", path=path, error=why, kept=f"{path}.bad")
        try:
            self.files.rename(path, f"{path}.bad")
        except OSError:
            pass

    def _write(self, name: str, record: Any) -> None:
        data = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
        self.files.write_atomic(f"{self.dir}/{name}", data, 0o600)

    # --- journal ----------------------------------------------------------------------------

    def journal(self) -> Journal | None:
        r = self._read("journal.json")
        if r is None:
            return None
        try:
            if not isinstance(r, dict) or r.get("phase") not in ("applying", "applied"):
                raise ValueError("not a journal")
            prior = r["prior"]
            if not isinstance(prior, dict) or not all(isinstance(v, dict) for v in prior.values()):
                raise ValueError("a journal's prior items are objects per component")
            return Journal(
                str(r["id"]),
                r["phase"],
                dict(r["desired"]),
                prior,
                float(r["deadline"]),
                float(r["started"]),
                str(r.get("what", "host apply"))[:80],
            )
        except (KeyError, TypeError, ValueError) as e:
            self._set_aside(f"{self.dir}/journal.json", str(e))
            return None

    def write_journal(self, j: Journal) -> None:
        self._write(
            "journal.json",
            {
                "id": j.id,
                "phase": j.phase,
                "desired": j.desired,
                "prior": j.prior,
                "deadline": j.deadline,
                "started": j.started,
                "what": j.what,
            },
        )

    def drop_journal(self) -> None:
        self.files.remove(f"{self.dir}/journal.json")

    # --- committed state --------------------------------------------------------------------

    def committed(self) -> tuple[str, dict[str, Any]] | None:
        """(the id of the apply that committed it, the desired state's record), or None."""
        r = self._read("committed.json")
        if r is None:
            return None
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("desired"), dict):
            self._set_aside(f"{self.dir}/committed.json", "not a committed state")
            return None
        return r["id"], r["desired"]

    def write_committed(self, apply_id: str, desired: dict[str, Any]) -> None:
        self._write("committed.json", {"id": apply_id, "desired": desired})

    def drop_committed(self) -> None:
        self.files.remove(f"{self.dir}/committed.json")

    # --- baseline ---------------------------------------------------------------------------

    def baseline(self) -> Items:
        r = self._read("baseline.json")
        if r is None:
            return {}
        if not isinstance(r, dict) or not all(isinstance(v, dict) for v in r.values()):
            self._set_aside(f"{self.dir}/baseline.json", "not a baseline")
            return {}
        return r

    def extend_baseline(self, prior: Items) -> None:
        """Adds the items sparkd had not changed before (the first prior of each key is the baseline)."""
        baseline = self.baseline()
        grown = False
        for component, items in prior.items():
            known = baseline.setdefault(component, {})
            for key, item in items.items():
                if key not in known:
                    known[key] = item
                    grown = True
        if grown:
            self._write("baseline.json", baseline)

    def drop_baseline(self) -> None:
        self.files.remove(f"{self.dir}/baseline.json")
