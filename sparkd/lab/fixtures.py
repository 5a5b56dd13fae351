"""Recorded-layout fixture trees for a lab node's sysroot: what a VM cannot have.

Layouts and values follow shared/reference/recorded-outputs.md: RDMA sysfs formats
(1.1), per-twin rate/state of a Spark with one cable in cage p1 (1.2), PCIe link (1.5),
port/BDF mapping (1.6), GB10 MemTotal 127600748 kB and nvidia-smi answers (2.6). The
kernel release string follows DGX OS's `-nvidia` kernel flavour; it is illustrative.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from sparkd.lab.frameworks import LAB_FRAMEWORK_VERSIONS, write_lab_framework_versions

MEMINFO = """MemTotal:       127600748 kB
MemFree:        121034112 kB
MemAvailable:   122512384 kB
Buffers:           90112 kB
Cached:          2654208 kB
SwapTotal:        16777212 kB
SwapFree:         16777212 kB
"""
KERNEL = "6.11.0-1016-nvidia\n"
NVML_FIXTURE = "/lab/nvml.json"

# (RoCE device, netdev, BDF): both PCIe views (domains 0000 and 0002) of both cages (functions 0, 1).
PORTS = (
    ("rocep1s0f0", "enp1s0f0np0", "0000:01:00.0"),
    ("rocep1s0f1", "enp1s0f1np1", "0000:01:00.1"),
    ("roceP2p1s0f0", "enP2p1s0f0np0", "0002:01:00.0"),
    ("roceP2p1s0f1", "enP2p1s0f1np1", "0002:01:00.1"),
)
#: The twins the lab cables (cage p1), as veths.
TWIN_A, TWIN_B = "enp1s0f1np1", "enP2p1s0f1np1"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


#: A tiny Llama-shaped model (2 layers): what the memory planner and the manifests read in the lab. The
#: stand-in framework never opens it.
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 1024,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
LAB_MODELS = ("/models/demo", "/models/tiny")


def write_model(root: Path, model: str, weights: bytes = b"") -> None:
    """A tiny model directory at `model` under the sysroot `root`: config.json, a tokenizer and "weights"
    (the same bytes on every node unless `weights` is given, so that the manifests agree)."""
    directory = root / model.lstrip("/")
    _write(directory / "config.json", json.dumps(TINY_CONFIG, indent=2) + "\n")
    _write(directory / "tokenizer.json", '{"version": "1.0", "model": {"type": "BPE"}}\n')
    data = weights or b"".join(hashlib.sha256(b"sparkd lab weights %d" % i).digest() for i in range(2048))
    path = directory / "model.safetensors"
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def write_node_fixtures(root: Path, index: int, venv: str = "") -> None:
    """Writes the hardware fixtures of lab node `index` under the sysroot `root`, and the lab's tiny models."""
    for model in LAB_MODELS:
        write_model(root, model)
    _write(root / "proc/meminfo", MEMINFO)
    _write(root / "proc/sys/kernel/osrelease", KERNEL)
    # A boot ID of the node's own: `sparkd lab reboot`-style tests write a new one to simulate a reboot.
    _write(root / "proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")
    # The framework environment's packages and NCCL library, as the version handshake reads them.
    # `venv` is the node's frameworks.vllm_venv, a host path: the daemon reads it under its sysroot.
    if venv:
        write_lab_framework_versions(root / venv.lstrip("/"), LAB_FRAMEWORK_VERSIONS)
    for rdma, netdev, bdf in PORTS:
        domain = bdf.split(":", 1)[0]
        device = root / f"sys/devices/pci{domain}:00/{domain}:00:00.0/{bdf}"
        (device / "net" / netdev).mkdir(parents=True, exist_ok=True)
        _write(device / "current_link_speed", "32.0 GT/s PCIe\n")
        _write(device / "current_link_width", "4\n")
        ib = root / "sys/class/infiniband" / rdma
        ib.mkdir(parents=True, exist_ok=True)
        link = ib / "device"
        if not link.is_symlink():
            os.symlink(os.path.relpath(device, ib), link)
        cabled = bdf.endswith(".1")
        _write(ib / "ports/1/state", "4: ACTIVE\n" if cabled else "1: DOWN\n")
        _write(ib / "ports/1/phys_state", "5: LinkUp\n" if cabled else "3: Disabled\n")
        _write(ib / "ports/1/rate", "200 Gb/sec (4X HDR)\n" if cabled else "40 Gb/sec (4X QDR)\n")
        _write(ib / "ports/1/link_layer", "Ethernet\n")
    gpu = {
        "index": 0,
        "name": "NVIDIA GB10",
        "uuid": f"GPU-5a1e0000-0000-4000-8000-{index + 1:012x}",
        "driver_version": "580.95.05",
        "cuda_version": "13.0",
    }
    _write(root / NVML_FIXTURE.lstrip("/"), json.dumps({"gpus": [gpu]}, indent=2) + "\n")
