"""GPU inventory through NVML (the `pynvml` module of nvidia-ml-py).

Where NVML is absent (no driver, a CI machine) the adapter reports no GPU with the
reason instead of failing. On a GB10, memory queries return NOT_SUPPORTED (unified
memory); memory is read from /proc/meminfo instead (`sparkd.host.proc`), so nothing
here asks NVML for memory. The lab swaps in `sparkd.lab.nvml.FixtureGpu`.
"""

from __future__ import annotations

from typing import Protocol

from sparkd.model.inventory import GpuInfo


class Gpus(Protocol):
    """A source of GPU inventory."""

    def gpus(self) -> tuple[list[GpuInfo], str]:
        """The GPUs, and the reason when there are none."""
        ...


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlGpus:
    """Reads the GPUs from NVML; never raises."""

    def gpus(self) -> tuple[list[GpuInfo], str]:
        try:
            import pynvml
        except ImportError:
            return [], "nvidia-ml-py is not installed"
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            return [], f"NVML unavailable: {e}"
        try:
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
            result = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                result.append(
                    GpuInfo(
                        i, _text(pynvml.nvmlDeviceGetName(h)), _text(pynvml.nvmlDeviceGetUUID(h)), driver, cuda_text
                    )
                )
            return result, "" if result else "NVML reports no GPU"
        except pynvml.NVMLError as e:
            return [], f"NVML query failed: {e}"
        finally:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
