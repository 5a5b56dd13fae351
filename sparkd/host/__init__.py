"""Host adapters: the only code in sparkd that touches the OS.

One module per facility: `sysroot` (files), `sysfs` (ConnectX-7/RDMA inventory),
`proc` (meminfo, kernel), `netlink` (pyroute2), `systemd` (D-Bus), `gpu` (NVML),
`http` (readiness probes).
"""
