"""Deployment records on disk: `<state_dir>/deployments/<name>.json`, written atomically.

Deployments are desired state: they survive daemon restarts (and, in a later revision,
reboots). The record format carries a `format` number so it can be migrated.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from sparkd.host.sysroot import Sysroot
from sparkd.model.deployment import Assignment, DeploymentRecord, DeploymentSpec, Framework, NodePart

log = structlog.get_logger(__name__)

FORMAT = 1


def _to_json(record: DeploymentRecord) -> bytes:
    doc: dict[str, Any] = {"format": FORMAT, **asdict(record)}
    doc["spec"]["framework"] = record.spec.framework.value
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _from_json(data: str) -> DeploymentRecord:
    doc = json.loads(data)
    if doc.get("format") != FORMAT:
        raise ValueError(f"unknown deployment record format {doc.get('format')!r}")
    spec = dict(doc["spec"])
    spec["framework"] = Framework(spec["framework"])
    return DeploymentRecord(
        spec=DeploymentSpec(**spec),
        assignment=Assignment(**doc["assignment"]),
        unit=doc["unit"],
        parts=tuple(NodePart(**p) for p in doc["parts"]),
        create_time=float(doc["create_time"]),
    )


class DeploymentStore:
    """Reads and writes deployment records under the sysroot."""

    def __init__(self, sysroot: Sysroot, state_dir: str) -> None:
        self.sysroot = sysroot
        self.dir = f"{state_dir.rstrip('/')}/deployments"

    def _path(self, name: str) -> str:
        return f"{self.dir}/{name}.json"

    def save(self, record: DeploymentRecord) -> None:
        self.sysroot.write_atomic(self._path(record.spec.name), _to_json(record), mode=0o600)

    def load(self, name: str) -> DeploymentRecord | None:
        text = self.sysroot.read_text(self._path(name))
        return None if text is None else _from_json(text)

    def delete(self, name: str) -> None:
        self.sysroot.remove(self._path(name))

    def all(self) -> list[DeploymentRecord]:
        """Every readable record; an unreadable one is logged and skipped, never fatal."""
        directory = Path(self.sysroot.path(self.dir))
        if not directory.is_dir():
            return []
        records = []
        for path in sorted(directory.glob("*.json")):
            try:
                records.append(_from_json(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("deployment.record_unreadable", path=str(path), error=str(e))
        return records
