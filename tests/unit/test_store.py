"""Deployment records: atomic JSON under the sysroot, round trip, and records that are never trusted."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sparkd.engine.store import CORRUPT, DeploymentStore
from sparkd.errors import InvalidSpec
from sparkd.host.sysroot import Sysroot
from sparkd.model.deployment import Assignment, DeploymentRecord, DeploymentSpec, Framework, NodePart

RECORD = DeploymentRecord(
    spec=DeploymentSpec("demo", Framework.VLLM, "/models/demo", "demo", 2, 1, 8000),
    assignment=Assignment(0, 2, "192.168.100.1", 29501),
    parts=(
        NodePart("spark1", "", 0, "192.168.100.1"),
        NodePart("spark2", "abcdefghijklmnop", 1, "192.168.100.2"),
    ),
    create_time=1.5,
)
DIR = "var/lib/sparkd/deployments"


def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(Sysroot(tmp_path), "/var/lib/sparkd")


def test_round_trip_under_the_sysroot(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    path = tmp_path / DIR / "demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "unit" not in json.loads(path.read_text())  # unit names are derived, never stored
    assert s.load_all() == ([RECORD], [])
    s.delete("demo")
    assert s.load_all() == ([], [])


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\0" * 4096, b"null", b"[]", b'{"format": 2}', b'{"format": 99}', b"\xff\xfe"],
    ids=["garbage", "empty", "zeros", "null", "list", "no-spec", "format", "not-utf8"],
)
def test_an_unreadable_record_is_moved_aside_and_reported(tmp_path: Path, content: bytes) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    (tmp_path / DIR / "broken.json").write_bytes(content)
    records, broken = s.load_all()
    assert records == [RECORD]
    assert [b.name for b in broken] == ["broken"] and broken[0].path.endswith("broken.json.corrupt")
    assert not (tmp_path / DIR / "broken.json").exists() and (tmp_path / DIR / f"broken{CORRUPT}").exists()
    # Reported again at the next start, and deleted with the deployment.
    assert [b.name for b in s.load_all()[1]] == ["broken"]
    s.delete("broken")
    assert s.load_all() == ([RECORD], [])


def _format_3_spec(spec: DeploymentSpec) -> dict[str, object]:
    """The spec as format 3 stored it: its dataclass fields of then."""
    e = spec.engine
    engine: dict[str, object] = {"context_length": e.context_length, "concurrency": e.concurrency}
    engine |= {"memory_fraction": e.memory_fraction, "kv_cache_dtype": e.kv_cache_dtype}
    return {
        "name": spec.name,
        "framework": spec.framework.value,
        "model": spec.model,
        "served_model_name": spec.served_model_name,
        "pipeline": spec.pipeline,
        "tensor": spec.tensor,
        "port": spec.port,
        "engine": engine,
    }


def _planted(tmp_path: Path, name: str, **changes: object) -> None:
    doc = json.loads((tmp_path / DIR / "demo.json").read_text())
    if changes.get("format") in (1, 2, 3):
        doc["spec"] = _format_3_spec(RECORD.spec)
    for dotted, value in changes.items():
        target = doc
        keys = dotted.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    (tmp_path / DIR / f"{name}.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "changes",
    [
        {"spec__name": "other"},  # the record of one deployment naming another
        {"spec__model": "/models/x\0y"},
        {"spec__name": "demo\n"},
        {"spec__framework": "rm -rf"},
        {"spec__pipeline": 10**30},
        {"assignment__rank": 5},
        {"assignment__master_addr": "evil.example"},
        {"parts": [{"node_name": "a", "node_id": "", "rank": 3, "address": "192.168.100.1"}]},
        {"create_time": "yesterday"},
    ],
)
def test_a_record_that_does_not_validate_is_broken(tmp_path: Path, changes: dict[str, object]) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    _planted(tmp_path, "demo", **changes)
    records, broken = s.load_all()
    assert records == [] and [b.name for b in broken] == ["demo"], broken


def test_a_walking_skeleton_record_with_a_planted_unit_name_is_read_without_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    _planted(tmp_path, "demo", format=1, unit="ssh.service")
    (record,), _ = s.load_all()
    assert record.unit == "sparkd-demo-rank0.service"


@pytest.mark.parametrize("name", ["../etc/passwd", "demo\n", "", "Demo", "a/b"])
def test_a_path_from_a_bad_name_never_leaves_the_directory(tmp_path: Path, name: str) -> None:
    s = store(tmp_path)
    with pytest.raises(InvalidSpec):
        s.delete(name)


def test_files_with_invalid_names_are_ignored(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    (tmp_path / DIR / "Bad Name.json").write_text("{}")
    (tmp_path / DIR / ".demo.json.tmp123").write_text("{}")
    assert s.load_all() == ([RECORD], [])


def test_hostile_entries_never_break_loading_and_are_never_followed(tmp_path: Path) -> None:
    import os

    s = store(tmp_path)
    s.save(RECORD)
    d = tmp_path / DIR
    (d / "deep.json").write_text("[" * 100_000)  # json.loads: RecursionError
    (d / "adir.json").mkdir()  # a directory where a record should be
    (d / "adir.json.corrupt").mkdir()
    os.mkfifo(d / "fifo.json")  # would block a plain open
    (d / "link.json").symlink_to(d / "demo.json")  # a valid record, but through a symlink
    (d / "zero.json").symlink_to("/dev/zero")
    with open(d / "huge.json", "wb") as f:  # sparse: 400 MiB that must not be read
        f.truncate(400 * 1024 * 1024)
    records, broken = s.load_all()
    assert records == [RECORD]
    assert sorted(b.name for b in broken) == ["deep", "huge"]
    assert (d / "adir.json").is_dir() and (d / "fifo.json").exists() and (d / "link.json").is_symlink()
    s.delete("adir")  # logged, not raised: the directories are left alone
    assert (d / "adir.json.corrupt").is_dir()


def test_a_second_corruption_keeps_the_first_copy(tmp_path: Path) -> None:
    s = store(tmp_path)
    d = tmp_path / DIR
    d.mkdir(parents=True)
    (d / "demo.json").write_text("first")
    s.load_all()
    (d / "demo.json").write_text("second")
    (_, (b,)) = s.load_all()
    copies = sorted(p.read_text() for p in d.glob("demo.json.corrupt*"))
    assert copies == ["first", "second"] and b.name == "demo"
    s.delete("demo")
    assert list(d.iterdir()) == []


def test_a_head_record_must_list_a_part_per_node(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    _planted(tmp_path, "demo", assignment__rank=0, assignment__nnodes=4)
    assert s.load_all()[0] == []


def test_engine_options_and_supervision_round_trip_and_are_checked(tmp_path: Path) -> None:
    import dataclasses

    from sparkd.model.deployment import EngineOptions, Failure, Supervision

    failure = Failure(1, "spark2", "sparkd-demo-rank1.service", "exited with status 3", ("boom",), 12.5)
    record = dataclasses.replace(
        RECORD,
        spec=dataclasses.replace(RECORD.spec, engine=EngineOptions(8192, 4, 0.9, "fp8")),
        supervision=Supervision(restarts=3, failures_in_row=2, breaker_open=True, last_failure=failure),
    )
    s = store(tmp_path)
    s.save(record)
    assert s.load_all() == ([record], [])
    path = tmp_path / DIR / "demo.json"
    doc = json.loads(path.read_text())
    doc["supervision"]["last_failure"]["journal_tail"] = ["x"] * 11  # more lines than a failure keeps
    path.write_text(json.dumps(doc))
    records, broken = s.load_all()
    assert records == [] and "journal_tail" in broken[0].error


def test_a_format_2_record_reads_with_defaults(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(RECORD)
    path = tmp_path / DIR / "demo.json"
    doc = json.loads(path.read_text())
    doc["format"] = 2
    doc["spec"] = _format_3_spec(RECORD.spec)
    del doc["supervision"], doc["spec"]["engine"]
    path.write_text(json.dumps(doc))
    assert s.load_all() == ([RECORD], [])
