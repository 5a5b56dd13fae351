"""Versions: both programs answer --version; the consistency report between two nodes; the collector.

The collector tests run on FakeHost's temporary sysroot, with a framework environment written by the
lab's `write_lab_framework_versions` (the same dist-info layout pip leaves).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkd import __version__
from sparkd.config import FrameworksConfig
from sparkd.engine import versions as collector
from sparkd.lab.frameworks import NCCL_STAND_IN, write_lab_framework_versions
from sparkd.model.inventory import GpuInfo
from sparkd.model.observed import Snapshot
from sparkd.model.versions import Difference, Versions, blocking, compare
from tests.fakes.host import FakeHost

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["sparkd", "sparkctl-client"])
def test_version(program: str) -> None:
    r = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"{program} {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "/x.toml", "--sysroot", "/r", "run"],
        ["run", "--config", "/x.toml", "--sysroot", "/r"],
        ["--config", "/x.toml", "--sysroot", "/r"],
    ],
)
def test_daemon_options_before_or_after_run(argv: list[str]) -> None:
    from sparkd.__main__ import parser

    args = parser().parse_args(argv)
    assert (args.config, args.sysroot, args.log_format) == ("/x.toml", "/r", "")


# --- The consistency report between two nodes (sparkd.model.versions) -------------------------------------

SHA_A, SHA_B = "a" * 64, "b" * 64


def node(**changes: object) -> Versions:
    """A Spark as recorded (driver 580.95.05, CUDA 13.0), with `changes` applied."""
    base = Versions(
        sparkd="0.1.0",
        frameworks=(("vllm", "0.11.0"), ("torch", "2.9.0+cu130"), ("nvidia-nccl-cu13", "2.28.9"), ("ray", "2.60.0")),
        nccl_sha256=SHA_A,
        driver="580.95.05",
        cuda="13.0",
        kernel="6.11.0-1016-nvidia",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def only(differences: list[Difference]) -> Difference:
    assert len(differences) == 1, differences
    return differences[0]


def test_identical_nodes_have_no_differences() -> None:
    assert compare(node(), node(), "spark1", "spark2") == []


def test_frameworks_are_sorted_so_order_does_not_matter() -> None:
    shuffled = node(frameworks=tuple(reversed(node().frameworks)))
    assert shuffled.frameworks == node().frameworks
    assert compare(node(), shuffled, "spark1", "spark2") == []


def test_framework_version_differs_blocks_and_names_each_side() -> None:
    theirs = node(
        frameworks=(("vllm", "0.10.2"), ("torch", "2.9.0+cu130"), ("nvidia-nccl-cu13", "2.28.9"), ("ray", "2.60.0"))
    )
    d = only(compare(node(), theirs, "spark1", "spark2"))
    assert (d.field, d.local, d.remote, d.blocking) == ("frameworks.vllm", "0.11.0", "0.10.2", True)
    assert d.message == "vllm is 0.11.0 on spark1 but 0.10.2 on spark2"
    assert "vllm==0.11.0 on spark2" in d.advice and "vllm==0.10.2 on spark1" in d.advice
    # Seen from the other node, the sides swap.
    d = only(compare(theirs, node(), "spark2", "spark1"))
    assert d.message == "vllm is 0.10.2 on spark2 but 0.11.0 on spark1"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"nccl_sha256": SHA_B},
            "nccl_sha256",
            "the NCCL library differs: sha256 aaaaaaaaaaaa on spark1 but bbbbbbbbbbbb on spark2",
        ),
        ({"cuda": "12.9"}, "cuda", "the CUDA driver version is 13.0 on spark1 but 12.9 on spark2"),
        ({"driver": "575.57.08"}, "driver", "the NVIDIA driver is 580.95.05 on spark1 but 575.57.08 on spark2"),
        ({"sparkd": "0.2.0"}, "sparkd", "sparkd is 0.1.0 on spark1 but 0.2.0 on spark2"),
        ({"sparkd": "1.1.0"}, "sparkd", "sparkd is 0.1.0 on spark1 but 1.1.0 on spark2"),
        (
            {"frameworks": (("vllm", "0.11.0"), ("torch", "2.9.0"), ("nvidia-nccl-cu13", "2.28.9"), ("ray", "2.60.0"))},
            "frameworks.torch",
            "torch is 2.9.0+cu130 on spark1 but 2.9.0 on spark2",
        ),
    ],
)
def test_each_blocking_difference(changes: dict[str, object], field: str, message: str) -> None:
    d = only(compare(node(), node(**changes), "spark1", "spark2"))
    assert (d.field, d.blocking, d.message) == (field, True, message)
    assert d.advice.endswith(".") and blocking([d]) == [d]


@pytest.mark.parametrize(
    ("local", "remote", "blocks"),
    [
        ("0.1.0", "0.1.3", False),  # a patch release of the same 0.1 series
        ("0.1.0", "0.2.0", True),  # below 1.0 every minor is its own series
        ("0.0.1", "0.0.2", True),  # and below 0.1 every patch
        ("1.2.0", "1.2.7", False),
        ("1.2.0", "1.3.0", True),
        ("1.2.0", "2.2.0", True),
        ("0.1.0", "0.1.0.dev3+g1234", False),  # same release, a development build
        ("0.1.0", "unreleased", True),  # cannot tell: refuse
    ],
)
def test_sparkd_release_series(local: str, remote: str, blocks: bool) -> None:
    d = only(compare(node(sparkd=local), node(sparkd=remote), "spark1", "spark2"))
    assert (d.field, d.blocking) == ("sparkd", blocks)


def test_sparkd_advice_names_the_older_node() -> None:
    d = only(compare(node(sparkd="0.2.0"), node(sparkd="0.1.0"), "spark1", "spark2"))
    assert d.advice == "Upgrade sparkd on spark2 to 0.2.0 (one release series on every node), then retry."


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kernel": "6.14.0-1007-nvidia"}, "kernel"),
        ({"driver": "580.82.07"}, "driver"),  # same branch, another minor/patch level
        ({"driver": "580.95.06"}, "driver"),
        ({"cuda": "13.0.1"}, "cuda"),  # beyond major.minor
    ],
)
def test_warnings_only(changes: dict[str, object], field: str) -> None:
    d = only(compare(node(), node(**changes), "spark1", "spark2"))
    assert (d.field, d.blocking) == (field, False)
    assert blocking([d]) == []


def test_driver_patch_advice_names_the_older_node() -> None:
    d = only(compare(node(driver="580.82.07"), node(), "spark1", "spark2"))
    assert d.message == "the NVIDIA driver is 580.82.07 on spark1 but 580.95.05 on spark2"
    assert d.advice == "Update the NVIDIA driver on spark1 to 580.95.05 when convenient; patch levels interoperate."


@pytest.mark.parametrize("field", ["nccl_sha256", "driver", "cuda", "kernel", "sparkd"])
def test_unknown_is_reported_but_never_blocks(field: str) -> None:
    d = only(compare(node(), node(**{field: ""}), "spark1", "spark2"))
    assert (d.field, d.remote, d.blocking) == (field, "", False)
    assert "unknown on spark2" in d.message and "on spark1)" in d.message
    assert "spark2" in d.advice
    d = only(compare(node(**{field: ""}), node(), "spark1", "spark2"))
    assert "unknown on spark1" in d.message


def test_unknown_on_both_sides_is_reported_once() -> None:
    nvml_down = node(driver="", cuda="")
    differences = compare(nvml_down, nvml_down, "spark1", "spark2")
    assert [(d.field, d.blocking) for d in differences] == [("cuda", False), ("driver", False)]
    assert differences[1].message == "the NVIDIA driver is unknown on both spark1 and spark2"


def test_engine_on_one_side_only_blocks() -> None:
    frameworks = tuple(p for p in node().frameworks if p[0] != "vllm")
    d = only(compare(node(), node(frameworks=frameworks), "spark1", "spark2"))
    assert (d.field, d.local, d.remote, d.blocking) == ("frameworks.vllm", "0.11.0", "", True)
    assert d.message == "vllm 0.11.0 is installed on spark1 but not on spark2"
    assert d.advice.startswith("Install vllm 0.11.0 in spark2's framework environment")
    d = only(compare(node(frameworks=frameworks), node(), "spark1", "spark2"))
    assert d.message == "vllm 0.11.0 is installed on spark2 but not on spark1"


def test_other_package_on_one_side_only_warns() -> None:
    frameworks = tuple(p for p in node().frameworks if p[0] != "ray")  # vLLM without Ray is normal
    d = only(compare(node(), node(frameworks=frameworks), "spark1", "spark2"))
    assert (d.field, d.blocking) == ("frameworks.ray", False)
    assert d.message == "ray 2.60.0 is installed on spark1 but not on spark2"


def test_package_names_compare_normalised() -> None:
    ours = node(frameworks=(("tensorrt-llm", "1.2.0"),))
    theirs = node(frameworks=(("TensorRT_LLM", "1.2.0"),))
    assert compare(ours, theirs, "spark1", "spark2") == []


def test_duplicate_package_never_equals_a_clean_install() -> None:
    stale = node(frameworks=(("vllm", "0.11.0"), ("vllm", "0.10.2")))
    assert stale.packages() == {"vllm": "0.10.2,0.11.0"}
    d = only(compare(node(frameworks=(("vllm", "0.11.0"),)), stale, "spark1", "spark2"))
    assert d.blocking and "stale" in d.advice


def test_many_differences_come_in_a_fixed_order() -> None:
    theirs = Versions(
        sparkd="0.2.0",
        frameworks=(("vllm", "0.10.2"),),
        nccl_sha256=SHA_B,
        driver="575.57.08",
        cuda="12.9",
        kernel="6.14.0-1007-nvidia",
    )
    fields = [d.field for d in compare(node(), theirs, "spark1", "spark2")]
    assert fields == [
        "sparkd",
        "frameworks.nvidia-nccl-cu13",
        "frameworks.ray",
        "frameworks.torch",
        "frameworks.vllm",
        "nccl_sha256",
        "cuda",
        "driver",
        "kernel",
    ]
    assert [d.field for d in blocking(compare(node(), theirs, "spark1", "spark2"))] == [
        "sparkd",
        "frameworks.vllm",
        "nccl_sha256",
        "cuda",
        "driver",
    ]


def test_remote_values_are_shown_bounded_and_printable() -> None:
    d = only(compare(node(), node(kernel="6.11\n\x1b[31m" + "x" * 500), "spark1", "spark\x002"))
    assert "\n" not in d.message and "\x1b" not in d.message and "\x00" not in d.message
    assert len(d.message) < 200 and d.message.endswith("on spark?2")


# --- Collecting a node's versions (sparkd.engine.versions) on FakeHost's sysroot ---------------------------

VENV = "/opt/vllm"
SPARK = {"vllm": "0.11.0", "torch": "2.9.0+cu130", "nvidia-nccl-cu13": "2.28.9", "requests": "2.32.5"}


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    root = tmp_path / "root"
    root.mkdir()
    return FakeHost(root)


def site(fake: FakeHost) -> Path:
    return fake.root / VENV.lstrip("/") / "lib/python3.12/site-packages"


def library(fake: FakeHost) -> Path:
    return site(fake) / "nvidia/nccl/lib/libnccl.so.2"


def collect(fake: FakeHost, **kwargs: int) -> Versions:
    host = fake.host
    return collector.collect_sync(
        FrameworksConfig(vllm_venv=VENV), host.files, "580.95.05", "13.0", "6.11.0-1016-nvidia", **kwargs
    )


def test_collect_reads_dist_info_names_nccl_and_the_snapshot(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), SPARK)
    snapshot = Snapshot(kernel="6.11.0-1016-nvidia", gpus=(GpuInfo(0, "NVIDIA GB10", "GPU-1", "580.95.05", "13.0"),))
    got = asyncio.run(collector.collect(FrameworksConfig(vllm_venv=VENV), fake.host.files, snapshot))
    assert got == Versions(
        sparkd=__version__,
        frameworks=(("nvidia-nccl-cu13", "2.28.9"), ("torch", "2.9.0+cu130"), ("vllm", "0.11.0")),  # not requests
        nccl_sha256=hashlib.sha256(NCCL_STAND_IN).hexdigest(),
        driver="580.95.05",
        cuda="13.0",
        kernel="6.11.0-1016-nvidia",
    )
    assert {p.name for p in site(fake).iterdir()} >= {"vllm-0.11.0.dist-info", "nvidia_nccl_cu13-2.28.9.dist-info"}


def test_two_lab_nodes_agree_and_a_changed_one_is_caught(tmp_path: Path) -> None:
    spark1, spark2 = FakeHost(tmp_path / "a", 0), FakeHost(tmp_path / "b", 1)
    for f in (spark1, spark2):
        write_lab_framework_versions(f.root / VENV.lstrip("/"), SPARK)
    assert compare(collect(spark1), collect(spark2), "spark1", "spark2") == []
    write_lab_framework_versions(spark2.root / VENV.lstrip("/"), SPARK | {"vllm": "0.10.2"}, nccl=b"another build\n")
    assert not (site(spark2) / "vllm-0.11.0.dist-info").exists()  # the old version's dist-info went
    report = compare(collect(spark1), collect(spark2), "spark1", "spark2")
    assert [(d.field, d.blocking) for d in report] == [("frameworks.vllm", True), ("nccl_sha256", True)]
    assert report[0].message == "vllm is 0.11.0 on spark1 but 0.10.2 on spark2"


def test_collect_without_an_environment(fake: FakeHost) -> None:
    got = collect(fake)
    assert (got.frameworks, got.nccl_sha256, got.driver) == ((), "", "580.95.05")
    assert collector.gpu_versions(()) == ("", "")


def test_nccl_hash_is_cached_until_the_file_changes(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), SPARK, nccl=b"A" * 4096)
    lib = library(fake)
    first = collect(fake).nccl_sha256
    assert first == hashlib.sha256(b"A" * 4096).hexdigest()
    # Rewrite the bytes in place but keep size and mtime: a second collection must not read the file again,
    # so it still answers the first digest.
    st = lib.stat()
    with lib.open("r+b") as f:
        f.write(b"B" * 4096)
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert collect(fake).nccl_sha256 == first
    # Once the mtime moves (what any reinstall does), it is hashed again.
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert collect(fake).nccl_sha256 == hashlib.sha256(b"B" * 4096).hexdigest()


def test_nccl_symlink_inside_the_sysroot_is_followed(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), SPARK)
    lib = library(fake)
    real = lib.with_name("libnccl.so.2.28.9")  # the system layout: libnccl.so.2 -> libnccl.so.2.28.9
    real.write_bytes(b"nccl 2.28.9\n")
    lib.unlink()
    lib.symlink_to(real.name)
    assert collect(fake).nccl_sha256 == hashlib.sha256(b"nccl 2.28.9\n").hexdigest()


def test_nccl_symlink_escaping_the_sysroot_is_refused(fake: FakeHost, tmp_path: Path) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), SPARK)
    outside = tmp_path / "machine-nccl.so"
    outside.write_bytes(b"the machine's own library\n")
    lib = library(fake)
    lib.unlink()
    lib.symlink_to(outside)  # absolute: resolves on the machine, not in the sysroot
    assert collect(fake).nccl_sha256 == ""
    with pytest.raises(OSError, match="outside the sysroot"):
        fake.host.files.sha256(f"{VENV}/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2", 1 << 20)


def test_nccl_not_regular_or_too_large(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), SPARK)
    path = f"{VENV}/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2"
    files = fake.host.files
    with pytest.raises(OSError, match="larger than 8 bytes"):
        files.sha256(path, 8)
    assert files.sha256(path + ".absent", 8) is None
    lib = library(fake)
    lib.unlink()
    os.mkfifo(lib)  # would block a plain open
    with pytest.raises(OSError, match="not a regular file"):
        files.sha256(path, 1 << 20)
    assert collect(fake).nccl_sha256 == ""


def test_symlinked_directories_are_not_entered(fake: FakeHost, tmp_path: Path) -> None:
    venv = fake.root / VENV.lstrip("/")
    write_lab_framework_versions(venv, SPARK)
    (venv / "lib64").symlink_to("lib")  # what `python -m venv` creates: must not count twice
    elsewhere = tmp_path / "machine-venv"
    write_lab_framework_versions(elsewhere, {"sglang": "0.5.23"})
    (venv / "lib/python3.13").symlink_to(elsewhere / "lib/python3.12")  # escapes the sysroot
    got = collect(fake)
    assert dict(got.frameworks) == {"nvidia-nccl-cu13": "2.28.9", "torch": "2.9.0+cu130", "vllm": "0.11.0"}


def test_a_real_lib64_directory_is_scanned_too(fake: FakeHost) -> None:
    venv = fake.root / VENV.lstrip("/")
    write_lab_framework_versions(venv, {"vllm": "0.11.0"})
    (venv / "lib64/python3.12/site-packages/ray-2.60.0.dist-info").mkdir(parents=True)
    assert dict(collect(fake).frameworks) == {"ray": "2.60.0", "vllm": "0.11.0"}


def test_odd_names_and_versions(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), {"vllm": "0.11.0"})
    sp = site(fake)
    (sp / ("transformers-" + "4" * 230 + ".dist-info")).mkdir()  # name over MAX_NAME: ignored
    (sp / ("torch-2.9.0." + "1" * 100 + ".dist-info")).mkdir()  # version over 64: cut
    (sp / "ray-$(reboot).dist-info").mkdir()  # not a version: ignored
    (sp / "Flashinfer_Python-0.4.1.dist-info").mkdir()  # normalised
    (sp / "ray-2.60.0.dist-info.tmp").mkdir()  # not a dist-info
    got = dict(collect(fake).frameworks)
    assert got == {"flashinfer-python": "0.4.1", "torch": ("2.9.0." + "1" * 100)[:64], "vllm": "0.11.0"}


def test_ambiguous_name_is_read_from_metadata(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), {"vllm": "0.11.0"})
    sp = site(fake)
    legacy = sp / "tensorrt-llm-1.3.0rc13.dist-info"
    legacy.mkdir()
    (legacy / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorrt-llm\nVersion: 1.3.0rc13\n\nVersion: 9\n")
    (sp / "sglang-router-extra-1.0.dist-info").mkdir()  # could be sglang, but has no METADATA: ignored
    (sp / "some-other-package-1.0.dist-info").mkdir()  # cannot be one we keep: not even read
    assert dict(collect(fake).frameworks) == {"tensorrt-llm": "1.3.0rc13", "vllm": "0.11.0"}


def test_stale_second_install_is_reported(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), {"vllm": "0.11.0"})
    (site(fake) / "vllm-0.10.2.dist-info").mkdir()
    assert collect(fake).frameworks == (("vllm", "0.10.2,0.11.0"),)


def test_scan_is_bounded(fake: FakeHost) -> None:
    write_lab_framework_versions(fake.root / VENV.lstrip("/"), {"vllm": "0.11.0"})
    for i in range(10):
        (site(fake) / f"aaa{i}-1.0.dist-info").mkdir()  # sorted before vllm
    (site(fake) / "zzz-not-counted").mkdir()
    assert collect(fake, max_entries=10).frameworks == ()
    assert collect(fake, max_entries=11).frameworks == (("vllm", "0.11.0"),)


def test_lab_writer_refuses_names_a_wheel_cannot_have(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_lab_framework_versions(tmp_path, {"../../etc": "1.0"})
    with pytest.raises(ValueError):
        write_lab_framework_versions(tmp_path, {"vllm": "1.0/../../x"})
