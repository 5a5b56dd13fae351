"""The lab's fault switches: one small file per deployment rank, written by `sparkd lab fault`, polled by the
framework stand-in (`standins/vllm.py`), so supervision can be tested against a framework that really crashes,
wedges or starts slowly.

The path rule, shared by both sides: `<faults dir>/<served name>/rank<N>`, where the faults dir is
`<LAB_DIR>/faults` (`/var/lib/sparkd-lab/faults`) and the served name is the stand-in's `--served-model-name`
(unique per deployment in practice), escaped into one path component (see `served_component`). The faults dir
is shared by every lab node (they share this machine's filesystem): the rank says which node's process acts.

The stand-in learns the faults dir from `SPARKD_LAB_FAULTS_DIR`, which the lab's generated wrapper
(`<LAB_DIR>/frameworks/vllm/bin/vllm`) exports and tests set; it is read by the stand-in only, never by
sparkd, so sparkd's launch plan is the same in the lab as in production.

A fault file is one JSON object of at most MAX_FAULT_BYTES:

    {"mode": "crash"}                    exit CRASH_EXIT_STATUS at once, after an ERROR line (a rank started after
                                         the file was written ignores it: one crash; removed where writable)
    {"mode": "wedge"}                    /health stays 200, completions hang, token counters stop (until cleared)
    {"mode": "slow_start", "seconds": 20} sleep that long before the rendezvous, at every start
    {"mode": "crash_on_start"}           exit CRASH_ON_START_EXIT_STATUS at every start, until cleared
    {"mode": "none"}                     no fault (as no file)

This module is imported by the stand-in, which runs as a script in a deployment's unit: standard library only,
nothing of the daemon.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The lab's state directory when SPARKD_LAB_DIR does not say otherwise (lab.LAB_DIR).
DEFAULT_LAB_DIR = Path("/var/lib/sparkd-lab")
#: Where the stand-in looks for its fault files (lab-only: read by the stand-in, set by the lab's wrapper or tests).
FAULTS_DIR_ENV = "SPARKD_LAB_FAULTS_DIR"
MODES = ("none", "crash", "wedge", "slow_start", "crash_on_start")
MAX_FAULT_BYTES = 4096
MAX_SLOW_START_SECONDS = 3600.0
MAX_RANK = 63
#: The stand-in's exit status for `crash` (vLLM's engine dying is a plain non-zero exit too, not a signal;
#: 3 is distinctive: the stand-in's other failures exit 1, argparse 2).
CRASH_EXIT_STATUS = 3
#: The stand-in's exit status for `crash_on_start`, as for any start-up failure.
CRASH_ON_START_EXIT_STATUS = 1
#: How often the stand-in reads its fault file, in seconds.
POLL_SECONDS = 0.2
_MAX_COMPONENT = 200  # below NAME_MAX (255), with room for the writer's temporary name


class FaultError(ValueError):
    """A fault file or fault that is not valid; the message says why."""


@dataclass(frozen=True)
class Fault:
    """One rank's fault switch. `seconds` is for slow_start only."""

    mode: str = "none"
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FaultError(f"unknown mode {self.mode[:40]!r}; use one of {', '.join(MODES)}")
        if self.mode == "slow_start":
            if not 0 < self.seconds <= MAX_SLOW_START_SECONDS or not math.isfinite(self.seconds):
                raise FaultError(
                    f"slow_start needs seconds, above 0 and at most {MAX_SLOW_START_SECONDS:.0f}; got {self.seconds:g}"
                )
        elif self.seconds:
            raise FaultError(f"seconds is for slow_start only, not {self.mode}")


def parse_fault(data: bytes) -> Fault:
    """Parses a fault file's bytes; FaultError says what is wrong (too large, not JSON, unknown mode...)."""
    if len(data) > MAX_FAULT_BYTES:
        raise FaultError(f"larger than {MAX_FAULT_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FaultError(f"not JSON: {e}") from None
    if not isinstance(doc, Mapping):
        raise FaultError("not a JSON object")
    unknown = sorted(str(k)[:40] for k in doc if k not in ("mode", "seconds"))
    if unknown:
        raise FaultError(f"unknown keys {', '.join(unknown)}; a fault has mode and, for slow_start, seconds")
    mode, seconds = doc.get("mode"), doc.get("seconds", 0)
    if not isinstance(mode, str):
        raise FaultError(f"mode must be one of {', '.join(MODES)}")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise FaultError("seconds must be a number")
    return Fault(mode, float(seconds))


def encode_fault(fault: Fault) -> bytes:
    doc: dict[str, object] = {"mode": fault.mode}
    if fault.mode == "slow_start":
        doc["seconds"] = fault.seconds
    return (json.dumps(doc) + "\n").encode()


def served_component(served_name: str) -> str:
    """The served model name as one path component: percent-encoded (UTF-8) but for letters, digits and
    `_.-~`, so `meta-llama/Llama-3.1-8B` is `meta-llama%2FLlama-3.1-8B`; a leading `.` is encoded too (no `.`,
    `..` or hidden names), and a name whose encoding is longer than 200 characters is cut to 160, followed by
    `%~` and 32 hex digits of its SHA-256 (no encoding produces `%~`, so distinct names stay distinct)."""
    if not served_name:
        raise FaultError("the served model name is empty")
    raw = served_name.encode("utf-8", "surrogateescape")
    text = urllib.parse.quote(raw, safe="")
    if text.startswith("."):
        text = "%2E" + text[1:]
    if len(text) > _MAX_COMPONENT:
        text = text[:160] + "%~" + hashlib.sha256(raw).hexdigest()[:32]
    return text


def faults_dir(lab_dir: Path) -> Path:
    return lab_dir / "faults"


def fault_path(directory: Path, served_name: str, rank: int) -> Path:
    """The fault file of `rank` of the deployment serving `served_name`, under the faults dir `directory`."""
    if isinstance(rank, bool) or not 0 <= rank <= MAX_RANK:
        raise FaultError(f"rank must be from 0 to {MAX_RANK}, got {rank}")
    return directory / served_component(served_name) / f"rank{rank}"


def standin_faults_dir(environ: Mapping[str, str]) -> Path:
    """Where the stand-in reads its fault files: SPARKD_LAB_FAULTS_DIR, else the default lab's."""
    return Path(environ.get(FAULTS_DIR_ENV) or faults_dir(DEFAULT_LAB_DIR))


def read_fault(path: Path) -> Fault | None:
    """The fault in `path`; None when there is no file. FaultError for a bad file (also one that is not a
    regular file, or larger than MAX_FAULT_BYTES: it is never read further than that)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FaultError(f"cannot open: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FaultError("not a regular file")
        data = os.read(fd, MAX_FAULT_BYTES + 1)
    except OSError as e:
        raise FaultError(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    return parse_fault(data)


def write_fault(path: Path, fault: Fault) -> None:
    """Sets the switch atomically (a temporary file renamed over it, so the stand-in never reads half a file);
    mode none removes the file."""
    if fault.mode == "none":
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(encode_fault(fault))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
