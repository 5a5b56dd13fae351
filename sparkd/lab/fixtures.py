"""Recorded-layout fixture trees for a lab node's sysroot: what a VM cannot have.

Layouts and values follow shared/reference/recorded-outputs.md: RDMA sysfs formats
(1.1), per-twin rate/state of a Spark with one cable in cage p1 (1.2), PCIe link (1.5),
port/BDF mapping (1.6), GB10 MemTotal 127600748 kB and nvidia-smi answers (2.6). The
kernel release string follows DGX OS's `-nvidia` kernel flavour; it is illustrative, and so
are the lab's MACs (the link-local GIDs are built from them, not from the veths' own).
"""

from __future__ import annotations

import hashlib
import ipaddress
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
#: The interconnect subnets of twins A and B (the config's defaults): node `index` is .(index + 1).
LAB_SUBNETS = {TWIN_A: ipaddress.IPv4Network("192.168.100.0/24"), TWIN_B: ipaddress.IPv4Network("192.168.101.0/24")}
#: GID slots the fixtures write per port (mlx5 has 255; the slots past the used ones are all-zero).
GID_SLOTS = 16
ROCE_V1, ROCE_V2 = "IB/RoCE v1", "RoCE v2"


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


def ipv4_gid(address: str) -> str:
    """The IPv4-mapped GID of `address` as sysfs prints it: "192.168.100.15" ->
    "0000:0000:0000:0000:0000:ffff:c0a8:640f"."""
    return ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(address)}").exploded


def link_local_gid(mac: str) -> str:
    """The link-local (EUI-64) GID of a MAC: "4c:bb:47:2f:fb:98" -> "fe80:0000:0000:0000:4ebb:47ff:fe2f:fb98"."""
    b = bytes.fromhex(mac.replace(":", ""))
    if len(b) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui).exploded


def write_gids(
    root: Path, rdma_device: str, netdev: str, entries: list[tuple[int, str, str]], slots: int = GID_SLOTS
) -> None:
    """Writes port 1's GID table of `rdma_device` under the sysroot `root` as the kernel shows it: for each
    (index, GID, type) of `entries`, gids/<index> (8 zero-padded groups), gid_attrs/types/<index> and
    gid_attrs/ndevs/<index> (`netdev`); every other slot below `slots` (or the highest index) is an empty
    slot, the all-zero GID without gid_attrs files. Slots of an earlier table past the new one are removed."""
    port = root / "sys/class/infiniband" / rdma_device / "ports/1"
    used = {index: (ipaddress.IPv6Address(gid).exploded, kind) for index, gid, kind in entries}
    count = max(slots, max(used, default=-1) + 1)
    for n in range(count):
        attrs = (port / "gid_attrs/types" / str(n), port / "gid_attrs/ndevs" / str(n))
        if n in used:
            gid, kind = used[n]
            _write(port / "gids" / str(n), f"{gid}\n")
            _write(attrs[0], f"{kind}\n")
            _write(attrs[1], f"{netdev}\n")
        else:
            _write(port / "gids" / str(n), f"{ipaddress.IPv6Address(0).exploded}\n")
            for path in attrs:
                path.unlink(missing_ok=True)
    for sub in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
        for path in (port / sub).iterdir():
            if not path.name.isdigit() or int(path.name) >= count:
                path.unlink()


def lab_gid_entries(address: str, mac: str, v2_index: int = 3) -> list[tuple[int, str, str]]:
    """A RoCE port's GID table: the link-local v1/v2 pair at 0/1 and the IPv4 v1/v2 pair of `address` at
    `v2_index` - 1 and `v2_index`. With `v2_index` 3 that is the usual layout; a larger one leaves empty
    slots from 2 (the holes a removed address leaves, as after netplan re-applies: on one Spark pair the
    RoCE v2 GID was 3 on one node and 4 on the other, recorded-outputs.md 1.1)."""
    if not 3 <= v2_index < 256:
        raise ValueError(f"RoCE v2 GID index {v2_index} is not within 3..255")
    local, mapped = link_local_gid(mac), ipv4_gid(address)
    return [(0, local, ROCE_V1), (1, local, ROCE_V2), (v2_index - 1, mapped, ROCE_V1), (v2_index, mapped, ROCE_V2)]


def write_node_fixtures(root: Path, index: int, venv: str = "", gid_v2_index: int = 3) -> None:
    """Writes the hardware fixtures of lab node `index` under the sysroot `root`, and the lab's tiny models.
    The cabled twins' GID tables hold the node's interconnect addresses (twin A 192.168.100.(index + 1),
    twin B 192.168.101.(index + 1)) with their RoCE v2 GID at `gid_v2_index` (`lab_gid_entries`)."""
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
        # configfs of rdma_cm as the kernel makes it once the device's group exists (what cma_roce_tos writes).
        tos = root / f"sys/kernel/config/rdma_cm/{rdma}/ports/1/default_roce_tos"
        if not tos.exists():
            _write(tos, "0\n")
        if netdev in LAB_SUBNETS:
            address = str(LAB_SUBNETS[netdev].network_address + index + 1)
            mac = f"4c:bb:47:2f:{index % 256:02x}:{PORTS.index((rdma, netdev, bdf)) * 4:02x}"
            write_gids(root, rdma, netdev, lab_gid_entries(address, mac, gid_v2_index))
    gpu = {
        "index": 0,
        "name": "NVIDIA GB10",
        "uuid": f"GPU-5a1e0000-0000-4000-8000-{index + 1:012x}",
        "driver_version": "580.95.05",
        "cuda_version": "13.0",
    }
    _write(root / NVML_FIXTURE.lstrip("/"), json.dumps({"gpus": [gpu]}, indent=2) + "\n")


#: The lab's stand-ins for host tools a VM cannot run (`lab.tools_dir`): they keep the state they were given
#: in their own directory and print it back in the real tools' formats.
TOOLS = Path(__file__).parent / "tools"
TOOL_NAMES = ("dcb", "mlnx_qos", "modprobe", "ufw", "hostnamectl")


def write_tools(directory: Path, root: Path, only: tuple[str, ...] = TOOL_NAMES) -> Path:
    """A node's own copy of the stand-in tools in `directory`, writing only under its sysroot `root`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in only:
        target = directory / name
        target.write_bytes((TOOLS / name).read_bytes())
        target.chmod(0o755)
    qos = directory / "qos-state.json"
    if not qos.exists():  # a fresh ConnectX-7: trust PCP, no DSCP rules, PFC off, on every port
        fresh = {netdev: {"dscp": [], "pfc": [False] * 8} for _, netdev, _ in PORTS}
        qos.write_text(json.dumps({"interfaces": fresh}, sort_keys=True, indent=1))
    (directory / "modprobe.conf.json").write_text(json.dumps({"proc_modules": str(root / "proc/modules")}))
    (directory / "hostnamectl.conf.json").write_text(json.dumps({"etc_hostname": str(root / "etc/hostname")}))
    return directory
