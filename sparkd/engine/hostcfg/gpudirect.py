"""The nvidia-peermem kernel module, loaded only where the config asks for it.

On GB10 the GPU shares the CPU's memory: NVIDIA states that GPUDirect RDMA and dma-buf are not
supported on the Spark SoC, and NCCL reaches full bandwidth through host memory (`GDR 0`,
recorded-outputs.md §4). So with `host.peermem` off (the default) this component
manages nothing and never unloads a module; with it on, it loads nvidia-peermem (`modprobe`) and
says, when that fails, that this is expected on a Spark. Loading at boot is the files component's
modules-load.d file, not this one's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sparkd.engine.hostcfg.component import Change, Record
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import Files, Runner
from sparkd.model.host import ActionKind, DesiredHost, HostAction

MODULE = "nvidia_peermem"  # the name /proc/modules shows
MODPROBE_NAME = "nvidia-peermem"  # the name NVIDIA's docs give modprobe (modprobe treats '-' and '_' alike)
PROC_MODULES = "/proc/modules"
#: /proc/modules is one short line per module (a few hundred modules): a few tens of KB.
MAX_PROC_MODULES = 1 << 20
TIMEOUT = 30.0  # seconds for one modprobe
TURN_OFF = "set `peermem = false` in the config's [host] table (host.peermem), or remove it: off is the default"


@dataclass(frozen=True)
class ModuleState:
    """Whether the module is loaded."""

    loaded: bool


@dataclass(frozen=True)
class LoadModule:
    module: str = MODULE

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.LOAD_MODULE,
            self.module,
            "not loaded",
            "loaded",
            f"modprobe {MODPROBE_NAME}",
            "gpudirect",
        )


@dataclass(frozen=True)
class UnloadModule:
    """The rollback of a load."""

    module: str = MODULE

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.LOAD_MODULE,
            self.module,
            "loaded",
            "not loaded",
            f"modprobe -r {MODPROBE_NAME}",
            "gpudirect",
        )


def module_loaded(proc_modules_text: str | None, module: str = MODULE) -> bool:
    """Whether /proc/modules (its text; None: absent) lists `module`."""
    prefix = module + " "
    return proc_modules_text is not None and any(line.startswith(prefix) for line in proc_modules_text.splitlines())


def gpudirect_report(proc_modules_text: str | None) -> str:
    """One line for status: whether nvidia_peermem is loaded, and that a Spark does not need it."""
    if module_loaded(proc_modules_text):
        return f"{MODULE} loaded"
    return f"{MODULE} not loaded: not needed on GB10, NCCL uses host memory (GDR 0)"


class GpuDirectComponent:
    """nvidia-peermem (implements `component.Component`)."""

    name = "gpudirect"

    def __init__(self, files: Files, runner: Runner) -> None:
        self.files = files
        self.runner = runner

    def accepts(self, key: str) -> bool:
        return key == MODULE

    def keys(self, desired: DesiredHost) -> list[str]:
        return [MODULE] if desired.peermem else []

    async def observe(self, keys: list[str]) -> Mapping[str, ModuleState]:
        if not keys:
            return {}
        text = self._proc_modules()
        return {key: ModuleState(module_loaded(text, key)) for key in keys}

    def target(self, desired: DesiredHost, key: str, have: ModuleState | None) -> ModuleState:
        return ModuleState(desired.peermem)

    def diff(self, key: str, want: ModuleState | None, have: ModuleState | None) -> list[Change]:
        wanted = want is not None and want.loaded
        there = have is not None and have.loaded
        if wanted == there:
            return []
        return [LoadModule(key)] if wanted else [UnloadModule(key)]

    async def apply(self, change: Change) -> None:
        match change:
            case LoadModule():
                await self._modprobe([MODPROBE_NAME], "load")
            case UnloadModule():
                await self._modprobe(["-r", MODPROBE_NAME], "unload")
            case _:
                raise HostOperationFailed(f"not a gpudirect change: {change!r}")

    def dump(self, item: ModuleState | None) -> Record:
        return None if item is None else {"loaded": item.loaded}

    def load(self, record: Record) -> ModuleState | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"loaded"} or not isinstance(record["loaded"], bool):
            raise ValueError("a gpudirect record is exactly {'loaded': true|false}")
        return ModuleState(record["loaded"])

    def _proc_modules(self) -> str | None:
        try:
            data = self.files.read_bounded(PROC_MODULES, MAX_PROC_MODULES)
        except OSError as e:
            raise HostOperationFailed(f"cannot read {PROC_MODULES}: {e.strerror or e}", path=PROC_MODULES) from e
        if data is None:
            return None
        if len(data) > MAX_PROC_MODULES:
            raise HostOperationFailed(f"{PROC_MODULES} is larger than {MAX_PROC_MODULES} bytes", path=PROC_MODULES)
        return data.decode(errors="replace")

    async def _modprobe(self, args: list[str], verb: str) -> None:
        modprobe = self.runner.which("modprobe")
        if modprobe is None:
            raise HostOperationFailed(
                f"cannot {verb} {MODULE}: modprobe is not installed (install the kmod package), or {TURN_OFF}",
                command="modprobe",
            )
        result = await self.runner.run([modprobe, *args], TIMEOUT)
        if result.returncode == 0:
            return
        said = " ".join((result.stderr.strip() or result.stdout.strip()).split())[:300] or "no output"
        if verb == "load":
            raise HostOperationFailed(
                f"cannot load {MODULE} (modprobe exit {result.returncode}: {said}). On a DGX Spark this is "
                "expected: GPUDirect RDMA is not supported on GB10, and NCCL reaches full bandwidth through host "
                f"memory without it. To stop loading it, {TURN_OFF}",
                command="modprobe",
                module=MODULE,
            )
        raise HostOperationFailed(
            f"cannot unload {MODULE} (modprobe -r exit {result.returncode}: {said}); stop what uses it "
            "(`lsmod | grep nvidia_peermem` shows the users), then apply again",
            command="modprobe",
            module=MODULE,
        )
