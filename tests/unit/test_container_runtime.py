"""The container runtime: the docker argv of a rank (golden), how it keeps values out of the argv, what it
refuses, and the local image digest the peers compare (through a fake Runner)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from sparkd.engine.runtimes import Runtime
from sparkd.engine.runtimes.container import (
    ContainerRuntime,
    container_name,
    env_problem,
    image_problem,
    mount_problem,
)
from sparkd.engine.versions import image_digest
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import CommandResult
from sparkd.model.unit import UnitSpec
from tests.fakes.host import FakeRunner

IMAGE = "nvcr.io/nvidia/vllm:26.05-py3"
ID = "sha256:" + "0123456789abcdef" * 4

# What a launcher plans for a node (sparkd.engine.launchers: interface variables + NCCL), natively.
ENV = {
    "VLLM_HOST_IP": "192.168.100.1",
    "SGLANG_HOST_IP": "192.168.100.1",
    "MASTER_ADDR": "192.168.100.1",
    "GLOO_SOCKET_IFNAME": "enp1s0f1np1",
    "TP_SOCKET_IFNAME": "enp1s0f1np1",
    "UCX_NET_DEVICES": "enp1s0f1np1",
    "OMPI_MCA_btl_tcp_if_include": "enp1s0f1np1",
    "OMPI_MCA_oob_tcp_if_include": "enp1s0f1np1",
    "NCCL_SOCKET_IFNAME": "=enp1s0f1np1",
    "NCCL_IB_HCA": "=rocep1s0f1,roceP2p1s0f1",
    "HF_TOKEN": "hf_secret_value",
}
COMMON = ["--nnodes", "2", "--master-addr", "192.168.100.1", "--master-port", "29501"]


def rank(n: int, runtime: Runtime, **changes: object) -> UnitSpec:
    argv = [runtime.executable("vllm"), "serve", "/models/demo", "--pipeline-parallel-size", "2", *COMMON]
    argv += ["--node-rank", str(n)] + (["--host", "0.0.0.0", "--port", "8000"] if n == 0 else ["--headless"])
    env = dict(ENV, VLLM_HOST_IP=f"192.168.100.{n + 1}")
    unit = UnitSpec(f"sparkd-demo-rank{n}.service", argv, f"sparkd deployment demo rank {n} of 2", env)
    return dataclasses.replace(unit, **{"timeout_stop_s": 30.0, **changes})  # type: ignore[arg-type]


# The options every rank gets, in order (docs/container-runtime.md explains each).
def options(name: str) -> list[str]:
    return [
        "/usr/bin/docker", "run", "--rm", "--name", name, "--pull", "never", "--init", "--stop-timeout", "30",
        "--log-driver", "none", "--network", "host", "--shm-size", "16g",
        "--ulimit", "memlock=-1:-1", "--ulimit", "stack=67108864",
        "--gpus", "all", "--device", "/dev/infiniband", "--cap-drop", "ALL", "--cap-add", "IPC_LOCK",
        "--security-opt", "no-new-privileges",
    ]  # fmt: skip


ENV_FLAGS = [
    "-e", "GLOO_SOCKET_IFNAME", "-e", "HF_TOKEN", "-e", "MASTER_ADDR", "-e", "NCCL_IB_HCA",
    "-e", "NCCL_SOCKET_IFNAME", "-e", "OMPI_MCA_btl_tcp_if_include", "-e", "OMPI_MCA_oob_tcp_if_include",
    "-e", "SGLANG_HOST_IP", "-e", "TP_SOCKET_IFNAME", "-e", "UCX_NET_DEVICES", "-e", "VLLM_HOST_IP",
]  # fmt: skip


def test_head_rank_golden_argv() -> None:
    rt = ContainerRuntime(IMAGE)
    unit = rt.wrap(rank(0, rt), ["/models/demo"])
    assert list(unit.argv) == [
        *options("sparkd-demo-rank0"),
        "--mount", "type=bind,source=/models/demo,target=/models/demo,readonly",
        *ENV_FLAGS,
        "nvcr.io/nvidia/vllm:26.05-py3",
        "vllm", "serve", "/models/demo", "--pipeline-parallel-size", "2",
        "--nnodes", "2", "--master-addr", "192.168.100.1", "--master-port", "29501",
        "--node-rank", "0", "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    remove = ("-/usr/bin/docker", "rm", "--force", "sparkd-demo-rank0")
    assert unit.exec_start_pre == (remove,)
    assert unit.exec_stop_post == (remove,)
    assert (unit.name, unit.timeout_stop_s, unit.service_type) == ("sparkd-demo-rank0.service", 30.0, "exec")
    assert unit.environment == dict(ENV)  # the CLI's environment: docker copies each -e NAME from it


def test_worker_rank_golden_argv_with_a_draft_model() -> None:
    rt = ContainerRuntime("lmsysorg/sglang:v0.5.23@sha256:" + "ab" * 32, shm_size="32g", cdi=True)
    unit = rt.wrap(rank(1, rt, timeout_stop_s=0), ["/models/demo", "/models/draft", "/models/demo"])
    assert unit.environment == dict(ENV, VLLM_HOST_IP="192.168.100.2")
    assert unit.exec_stop_post == (("-/usr/bin/docker", "rm", "--force", "sparkd-demo-rank1"),)
    assert list(unit.argv) == [
        "/usr/bin/docker", "run", "--rm", "--name", "sparkd-demo-rank1", "--pull", "never", "--init",
        "--stop-timeout", "90",  # systemd's default TimeoutStopSec when the unit sets none
        "--log-driver", "none", "--network", "host", "--shm-size", "32g",
        "--ulimit", "memlock=-1:-1", "--ulimit", "stack=67108864",
        "--device", "nvidia.com/gpu=all", "--device", "/dev/infiniband", "--cap-drop", "ALL", "--cap-add", "IPC_LOCK",
        "--security-opt", "no-new-privileges",
        "--mount", "type=bind,source=/models/demo,target=/models/demo,readonly",
        "--mount", "type=bind,source=/models/draft,target=/models/draft,readonly",
        *ENV_FLAGS,
        "lmsysorg/sglang:v0.5.23@sha256:" + "ab" * 32,
        "vllm", "serve", "/models/demo", "--pipeline-parallel-size", "2",
        "--nnodes", "2", "--master-addr", "192.168.100.1", "--master-port", "29501",
        "--node-rank", "1", "--headless",
    ]  # fmt: skip


def test_values_never_in_argv_and_path_not_forwarded() -> None:
    rt = ContainerRuntime(IMAGE)
    unit = rt.wrap(rank(0, rt, environment={**ENV, "PATH": "/opt/vllm/bin:/usr/bin"}), ["/models/demo"])
    docker_part = " ".join(unit.argv[: unit.argv.index(IMAGE)])  # the launcher's argv follows
    for name, value in ENV.items():
        assert value not in docker_part, name
        assert f"{name}=" not in " ".join(unit.argv)
    assert "hf_secret_value" not in " ".join(unit.argv)
    assert "PATH" not in unit.argv  # the image's PATH finds `vllm`; the unit's is the CLI's
    assert unit.environment["PATH"] == "/opt/vllm/bin:/usr/bin"
    assert "--privileged" not in unit.argv
    assert not any(a.startswith("--ipc") for a in unit.argv)


def test_working_directory_moves_into_the_container() -> None:
    rt = ContainerRuntime(IMAGE)
    unit = rt.wrap(rank(0, rt, working_directory="/srv/work"), [])
    assert unit.working_directory == ""
    i = unit.argv.index("--workdir")
    assert tuple(unit.argv[i : i + 3]) == ("--workdir", "/srv/work", IMAGE)


def test_executable_is_the_bare_name_and_kind() -> None:
    rt = ContainerRuntime(IMAGE)
    assert (rt.executable("vllm"), rt.executable("trtllm-llmapi-launch"), rt.kind) == (
        "vllm",
        "trtllm-llmapi-launch",
        "container",
    )


@pytest.mark.parametrize(
    ("unit", "name"),
    [
        ("sparkd-demo-rank0.service", "sparkd-demo-rank0"),
        ("sparkd-a-rank12.service", "sparkd-a-rank12"),
        # not a docker name as it is: sanitised, with a hash of the unit name
        ("sparkd-x@y.service", "sparkd-x_y-79010d5a1966"),
        ("-weird.service", "weird-0f6a217fb23f"),
        ("a.service", "a-e66bd8732e49"),  # docker names have 2 characters at least
        ("x" * 300 + ".service", "x" * 100 + "-6aed85c046f7"),
    ],
)
def test_container_name(unit: str, name: str) -> None:
    assert container_name(unit) == name


def test_container_names_are_unique_per_unit() -> None:
    names = {container_name(u) for u in ("sparkd-x@y.service", "sparkd-x:y.service", "sparkd-x_y.service")}
    assert len(names) == 3
    assert container_name("sparkd-demo-rank0.service") != container_name("sparkd-demo-rank1.service")


@pytest.mark.parametrize(
    "ref",
    [
        "nvcr.io/nvidia/vllm:26.05-py3",
        "lmsysorg/sglang:latest",
        "localhost:5000/team/vllm:dev",
        "registry.example.com:443/a/b/c:v1.2.3",
        "vllm/vllm-openai@sha256:" + "0" * 64,
        "nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc13@sha256:" + "f" * 64,
        ID,
    ],
)
def test_good_image_references(ref: str) -> None:
    assert image_problem(ref) is None


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("", "required"),
        ("-v/etc:/x", "must not start with '-'"),
        ("--privileged", "must not start with '-'"),
        ("nvcr.io/nvidia/vllm:$TAG", "may contain only"),
        ("nvcr.io/nvidia/vllm:26.05 --privileged", "may contain only"),
        ("nvcr.io/nvidia/vllm:26.05\n", "may contain only"),
        ("nvcr.io/nvidia/vllm", "needs a tag or a digest"),
        ("localhost:5000/vllm", "needs a tag or a digest"),
        ("nvcr.io/NVIDIA/vllm:1", "is not an image name"),
        ("nvcr.io//vllm:1", "is not an image name"),
        ("vllm:.hidden", "the tag must be"),
        ("vllm:" + "t" * 129, "the tag must be"),
        ("vllm@sha256:abc", "the digest after '@'"),
        ("vllm:1@md5:" + "0" * 32, "the digest after '@'"),
        ("sha256:" + "A" * 64, "an image ID"),
        ("a" * 300 + ":1", "the name before the tag"),
        ("a/" * 300 + "b:1", "at most 512"),
    ],
)
def test_bad_image_references(ref: str, reason: str) -> None:
    problem = image_problem(ref)
    assert problem is not None and reason in problem, problem
    with pytest.raises(ValueError, match="image: "):
        ContainerRuntime(ref)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("models", "absolute"),
        ("/models/../etc", "normalised"),
        ("/models/", "normalised"),
        ("//models", "normalised"),
        ("/models,readonly=false", "','"),
        ("/mod\nels", "control"),
        ("/", "cannot be mounted"),
        ("/proc/1", "cannot be mounted"),
        ("/dev", "cannot be mounted"),
    ],
)
def test_bad_mounts(path: str, reason: str) -> None:
    problem = mount_problem(path)
    assert problem is not None and reason in problem, problem
    rt = ContainerRuntime(IMAGE)
    with pytest.raises(ValueError, match="mount"):
        rt.wrap(rank(0, rt), [path])


def test_mount_with_spaces_and_colons_is_fine() -> None:
    assert mount_problem("/models/My Model:v2") is None  # --mount has no ':' syntax to trip on


@pytest.mark.parametrize(
    ("name", "reason"), [("DOCKER_HOST", "docker CLI"), ("A=B", "letters"), ("1X", "letters"), ("", "letters")]
)
def test_bad_environment_names(name: str, reason: str) -> None:
    problem = env_problem(name)
    assert problem is not None and reason in problem, problem
    rt = ContainerRuntime(IMAGE)
    with pytest.raises(ValueError, match="environment"):
        rt.wrap(rank(0, rt, environment={name: "x"}), [])


@pytest.mark.parametrize(("kwargs", "match"), [({"shm_size": "16G; rm"}, "shm_size"), ({"docker": "docker"}, "docker")])
def test_bad_runtime_settings(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ContainerRuntime(IMAGE, **kwargs)  # type: ignore[arg-type]


# --- the local image's digest (sparkd.engine.versions.image_digest) -----------------------------------------


def digest(runner: FakeRunner | RaisingRunner, image: str = IMAGE) -> tuple[str, str]:
    return asyncio.run(image_digest(runner, image, node="spark2"))


def answer(runner: FakeRunner, code: int, stdout: str, stderr: str = "") -> FakeRunner:
    runner.results["/usr/bin/docker"] = CommandResult(("/usr/bin/docker",), code, stdout, stderr)
    return runner


class RaisingRunner:
    def __init__(self, message: str) -> None:
        self.message = message

    def which(self, name: str) -> str | None:
        return None

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        raise HostOperationFailed(self.message, command=argv[0])


def test_digest_of_a_local_image() -> None:
    runner = answer(FakeRunner(), 0, ID + "\n")
    assert digest(runner) == (ID, "")
    assert runner.argvs == [("/usr/bin/docker", "image", "inspect", "--format", "{{.Id}}", "--", IMAGE)]


def test_digest_image_not_pulled() -> None:
    runner = answer(FakeRunner(), 1, "\n", f"Error response from daemon: No such image: {IMAGE}\n")
    assert digest(runner) == ("", f"image {IMAGE} is not on spark2: docker pull {IMAGE}")
    runner = answer(FakeRunner(), 1, "[]\n", f"Error: No such object: {IMAGE}\n")  # older CLIs
    assert digest(runner)[1] == f"image {IMAGE} is not on spark2: docker pull {IMAGE}"


def test_digest_docker_missing_or_stuck() -> None:
    _, problem = digest(RaisingRunner("cannot run /usr/bin/docker: No such file or directory"))
    assert problem.startswith("docker is not available on spark2 (cannot run /usr/bin/docker: No such file")
    assert "install Docker" in problem
    _, problem = digest(RaisingRunner("/usr/bin/docker did not finish within 10 s"))
    assert problem.startswith("docker did not answer on spark2")


def test_digest_daemon_down_and_other_failures() -> None:
    err = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    _, problem = digest(answer(FakeRunner(), 1, "", err))
    assert problem == f"the Docker daemon on spark2 does not answer: {err}"
    _, problem = digest(answer(FakeRunner(), 125, "", "unknown flag: --format\x1b[31m\nmore"))
    assert problem == f"docker image inspect {IMAGE} failed on spark2 (exit status 125): unknown flag: --format[31m"


@pytest.mark.parametrize(
    "stdout",
    ["", "sha256:xyz", ID + "\n" + ID, "sha256:" + "A" * 64, "<no value>", "x" * 100_000, ID[:-1]],
)
def test_digest_garbage_output(stdout: str) -> None:
    value, problem = digest(answer(FakeRunner(), 0, stdout))
    assert value == ""
    assert problem.startswith(f"docker image inspect {IMAGE} on spark2 answered no image ID")
    assert len(problem) < 400


def test_digest_refuses_a_bad_reference_without_running_docker() -> None:
    runner = FakeRunner()
    value, problem = digest(runner, "--help")
    assert value == "" and "must not start with '-'" in problem
    assert runner.argvs == []
