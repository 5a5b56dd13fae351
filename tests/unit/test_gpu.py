"""The NVML adapter never fails the daemon: GPUs, or no GPU with the reason.

Checked on real hardware through the device tool (H100, driver 580.159.04): NvmlGpus().gpus() returned
[GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-50df...", "580.159.04", "13.0")] with no reason.
"""

from __future__ import annotations

import pynvml
import pytest

from sparkd.host.gpu import NvmlGpus


def test_this_machine_gives_gpus_or_a_reason() -> None:
    gpus, reason = NvmlGpus().gpus()
    assert (gpus and reason == "") or (not gpus and reason)


def test_missing_library_is_no_gpu_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    gpus, reason = NvmlGpus().gpus()
    assert gpus == [] and reason.startswith("NVML unavailable:")
