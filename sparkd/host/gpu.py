"""GPU inventory through NVML (the `pynvml` module of nvidia-ml-py).

Where NVML is absent (no driver, a CI machine) the adapter reports no GPU with the
reason instead of failing. On a GB10, memory queries return NOT_SUPPORTED (unified
memory); memory is read from /proc/meminfo instead (`sparkd.host.proc`), so nothing
here asks NVML for memory. NVML is initialised once, on the first query, and shut down
by `close()`; the state loop calls `gpus()` in a worker thread every few seconds, never a
request path (one init + query + shutdown took ~10 ms on an H200). The lab swaps in
`sparkd.lab.nvml.FixtureGpus`.
"""

from __future__ import annotations

import threading
from typing import Any

from sparkd.model.inventory import GpuInfo


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlGpus:
    """Reads the GPUs from NVML; never raises. Implements `protocols.Gpus`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None  # the pynvml module once nvmlInit succeeded

    def _init(self) -> tuple[Any, str]:
        if self._nvml is not None:
            return self._nvml, ""
        try:
            import pynvml  # heavy-ish and absent on CI: imported where it is used
        except ImportError:
            return None, "nvidia-ml-py is not installed"
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            return None, f"NVML unavailable: {e}"
        self._nvml = pynvml
        return pynvml, ""

    def gpus(self) -> tuple[list[GpuInfo], str]:
        with self._lock:
            nvml, reason = self._init()
            if nvml is None:
                return [], reason
            try:
                driver = _text(nvml.nvmlSystemGetDriverVersion())
                cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
                cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
                result = []
                for i in range(nvml.nvmlDeviceGetCount()):
                    h = nvml.nvmlDeviceGetHandleByIndex(i)
                    result.append(
                        GpuInfo(
                            i, _text(nvml.nvmlDeviceGetName(h)), _text(nvml.nvmlDeviceGetUUID(h)), driver, cuda_text
                        )
                    )
                return result, "" if result else "NVML reports no GPU"
            except nvml.NVMLError as e:
                self._shutdown()  # a driver reload or a lost GPU: start afresh next time
                return [], f"NVML query failed: {e}"

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None

    def close(self) -> None:
        with self._lock:
            self._shutdown()
