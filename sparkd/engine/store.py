"""Deployment records on disk: `<state_dir>/deployments/<name>.json`, written atomically (0600).

Deployments are desired state: they survive daemon restarts (and, in a later revision,
reboots). A record is never trusted: its file name must be a valid deployment name, it
must parse, its spec must pass the same validation as an operator's spec and name the
same deployment, and its assignment and parts must be in range. A record that fails is
moved aside to `<name>.json.corrupt` and reported as broken (the daemon reports it as a
FAILED deployment that can be deleted); it never stops the daemon. Unit names are not
stored: they are derived from the deployment name and rank (`model.deployment.unit_name`).
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from sparkd.engine.spec import spec_document, validate, validate_name
from sparkd.errors import InvalidSpec
from sparkd.host.protocols import Files
from sparkd.model.deployment import Assignment, DeploymentRecord, DeploymentSpec, Failure, NodePart, Supervision

log = structlog.get_logger(__name__)

# 1: the walking skeleton's, with unit names stored (ignored when read); 2: no engine, no supervision;
# 3: the spec as its dataclass fields; 4: the spec as its YAML mapping (`spec_document`).
FORMAT = 4
MAX_TAIL_LINES, MAX_TEXT = 10, 512
MAX_RECORD_BYTES = 256 * 1024
MAX_NODES = 64
SUFFIX, CORRUPT = ".json", ".json.corrupt"


@dataclass(frozen=True)
class BrokenRecord:
    """A record that could not be read, moved aside to `path`."""

    name: str
    path: str
    error: str


def _to_json(record: DeploymentRecord) -> bytes:
    doc: dict[str, Any] = {"format": FORMAT, **asdict(record)}
    doc["spec"] = spec_document(record.spec)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _int(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}")
    return value


def _assignment(doc: Any) -> Assignment:
    if not isinstance(doc, dict):
        raise ValueError("assignment must be an object")
    nnodes = _int(doc, "nnodes", 1, MAX_NODES)
    master = doc["master_addr"]
    ipaddress.IPv4Address(master)  # raises ValueError
    return Assignment(_int(doc, "rank", 0, nnodes - 1), nnodes, str(master), _int(doc, "master_port", 1, 65535))


def _part(doc: Any) -> NodePart:
    if not isinstance(doc, dict):
        raise ValueError("a part must be an object")
    strings = {k: doc[k] for k in ("node_name", "node_id", "address")}
    if not all(isinstance(v, str) and len(v) <= 128 and v.isprintable() for v in strings.values()):
        raise ValueError("a part's node_name, node_id and address must be short printable strings")
    ipaddress.IPv4Address(strings["address"])
    return NodePart(strings["node_name"], strings["node_id"], _int(doc, "rank", 0, MAX_NODES - 1), strings["address"])


def parse_record(name: str, data: str) -> DeploymentRecord:
    """Parses and checks a record; raises ValueError (or InvalidSpec) saying what is wrong."""
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") not in (1, 2, 3, FORMAT):
        raise ValueError(f"unknown record format {str(doc.get('format'))[:20]!r}")
    spec_doc = doc.get("spec")
    if not isinstance(spec_doc, dict):
        raise ValueError("spec must be an object")
    spec = validate(spec_doc) if doc["format"] == FORMAT else _old_spec(spec_doc)
    if spec.name != name:
        raise ValueError(f"the record of {name} holds deployment {spec.name}")
    assignment = _assignment(doc.get("assignment"))
    parts_doc = doc.get("parts")
    if not isinstance(parts_doc, list) or len(parts_doc) > MAX_NODES:
        raise ValueError("parts must be a list of at most 64 parts")
    parts = tuple(_part(p) for p in parts_doc)
    if parts and [p.rank for p in parts] != list(range(len(parts))):
        raise ValueError("parts must be ranks 0, 1, ... in order")
    if assignment.rank == 0 and len(parts) != assignment.nnodes:
        raise ValueError(f"the head's record lists {len(parts)} parts for {assignment.nnodes} nodes")
    if assignment.rank > 0 and parts:
        raise ValueError("a worker's record lists no parts")
    create_time = doc.get("create_time")
    if not isinstance(create_time, int | float) or isinstance(create_time, bool) or not 0 <= create_time < 1e11:
        raise ValueError("create_time must be a time in seconds")
    supervision = _supervision(doc.get("supervision"), len(parts) or MAX_NODES)
    return DeploymentRecord(spec, assignment, parts, float(create_time), supervision)


def _old_spec(spec_doc: dict[str, Any]) -> DeploymentSpec:
    """A format 1-3 record's spec (its dataclass fields of then), through today's validation."""
    return validate(
        {
            "name": spec_doc.get("name"),
            "framework": spec_doc.get("framework"),
            "model": spec_doc.get("model"),
            "served_model_name": spec_doc.get("served_model_name"),
            "parallelism": {"pipeline": spec_doc.get("pipeline"), "tensor": spec_doc.get("tensor")},
            "port": spec_doc.get("port"),
            **({"engine": _engine_doc(spec_doc["engine"])} if spec_doc.get("engine") is not None else {}),
        }
    )


def _engine_doc(doc: Any) -> Any:
    """The stored engine options, as the spec's YAML keys (None for a default the spec leaves out)."""
    if not isinstance(doc, dict):
        return doc  # validation names it
    return {k: v for k, v in doc.items() if v is not None}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{what} must be a string of at most {MAX_TEXT} characters")
    return value


def _supervision(doc: Any, nodes: int) -> Supervision:
    if doc is None:
        return Supervision()
    if not isinstance(doc, dict):
        raise ValueError("supervision must be an object")
    breaker, deleting = doc.get("breaker_open", False), doc.get("deleting", False)
    if not isinstance(breaker, bool) or not isinstance(deleting, bool):
        raise ValueError("supervision.breaker_open and deleting must be true or false")
    failure = None
    if (f := doc.get("last_failure")) is not None:
        if not isinstance(f, dict):
            raise ValueError("supervision.last_failure must be an object")
        tail = f.get("journal_tail", [])
        if not isinstance(tail, list) or len(tail) > MAX_TAIL_LINES:
            raise ValueError(f"supervision.last_failure.journal_tail must be a list of at most {MAX_TAIL_LINES}")
        when = f.get("time", 0.0)
        if not isinstance(when, int | float) or isinstance(when, bool) or not 0 <= when < 1e11:
            raise ValueError("supervision.last_failure.time must be a time in seconds")
        failure = Failure(
            rank=_int(f, "rank", 0, nodes - 1),
            node_name=_text(f.get("node_name"), "last_failure.node_name"),
            unit=_text(f.get("unit"), "last_failure.unit"),
            cause=_text(f.get("cause"), "last_failure.cause"),
            journal_tail=tuple(_text(line, "a journal line") for line in tail),
            time=float(when),
        )
    counts = {"restarts": 0, "failures_in_row": 0, **doc}  # a counter left out is 0, not a broken record
    return Supervision(
        restarts=_int(counts, "restarts", 0, 10**9),
        failures_in_row=_int(counts, "failures_in_row", 0, 10**9),
        breaker_open=breaker,
        last_failure=failure,
        deleting=deleting,
    )


class DeploymentStore:
    """Reads and writes deployment records through the Files adapter."""

    def __init__(self, files: Files, state_dir: str) -> None:
        self.files = files
        self.dir = f"{state_dir.rstrip('/')}/deployments"

    def _path(self, name: str, suffix: str = SUFFIX) -> str:
        return f"{self.dir}/{validate_name(name)}{suffix}"  # a path from a name never leaves the directory

    def save(self, record: DeploymentRecord) -> None:
        self.files.write_atomic(self._path(record.spec.name), _to_json(record), mode=0o600)

    def _corrupt_copies(self, name: str) -> list[str]:
        prefix = f"{validate_name(name)}{CORRUPT}"
        return [e for e in self.files.list_dir(self.dir) if e == prefix or e.startswith(f"{prefix}-")]

    def delete(self, name: str) -> None:
        """Removes the record and every broken copy of it (files only: anything else is left alone)."""
        for entry in [f"{name}{SUFFIX}", *self._corrupt_copies(name)]:
            try:
                self.files.remove(self._path(name, entry.removeprefix(name)))
            except OSError as e:  # a directory or something else planted under that name
                log.error("deployment.record_not_removed", deployment=name, file=entry, error=e.strerror or str(e))

    def _regular(self, path: str) -> bool:
        try:
            return self.files.read_bounded(path, 0) is not None
        except OSError:
            return False

    def _move_aside(self, name: str, path: str) -> str:
        """Renames a broken record to `<name>.json.corrupt` (or `-<time>` if that is taken); the path it has now."""
        aside = self._path(name, CORRUPT)
        if self._corrupt_copies(name):
            aside = self._path(name, f"{CORRUPT}-{time.time_ns()}")
        try:
            self.files.rename(path, aside)
        except OSError as e:
            log.error("deployment.record_not_moved", deployment=name, error=e.strerror or str(e))
            return path
        return aside

    def load_all(self) -> tuple[list[DeploymentRecord], list[BrokenRecord]]:
        """Every record, and every broken one (moved aside now or at an earlier start).

        Only regular files count: a directory, symlink, FIFO or device under a record's name is logged and
        left alone (never followed, never read, never moved).
        """
        records: list[DeploymentRecord] = []
        broken: dict[str, BrokenRecord] = {}
        for entry in self.files.list_dir(self.dir):
            stem, dot, rest = entry.partition(SUFFIX)
            corrupt = rest == ".corrupt" or rest.startswith(".corrupt-")
            if not dot or (rest and not corrupt):
                continue  # temporary files of an interrupted write, and anything else, are not records
            try:
                name = validate_name(stem)
            except InvalidSpec:
                log.error("deployment.record_ignored", file=entry[:100], reason="not a valid deployment name")
                continue
            path = f"{self.dir}/{entry}"
            if not self._regular(path):
                log.error("deployment.record_ignored", file=entry[:100], reason="not a regular file")
                continue
            if corrupt:
                broken.setdefault(name, BrokenRecord(name, path, "moved aside at an earlier start"))
                continue
            try:
                data = self.files.read_bounded(path, MAX_RECORD_BYTES) or b""
                records.append(parse_record(name, data.decode()))
            except Exception as e:  # whatever is wrong with it (RecursionError included), it is broken, never fatal
                error = f"{type(e).__name__}: {e}"[:300]
                aside = self._move_aside(name, path)
                log.error("deployment.record_unreadable", deployment=name, moved_to=aside, error=error)
                broken[name] = BrokenRecord(name, aside, error)
        return records, list(broken.values())
