"""The lab: N simulated DGX Sparks on one Linux machine (`sparkd lab up|status|exec|down`).

Each node is a network namespace (spark1 is the head) with two veth "twins" named like a
Spark's CX-7 netdevs, a sysroot holding recorded-layout fixtures for what a VM cannot
have (a GB10's /proc/meminfo, the RDMA and PCIe sysfs of a Spark, NVML answers), and its
own sparkd running as a systemd unit inside the namespace, the same code as in
production. Stand-ins for the inference frameworks (`standins/`) accept the real flags
and really rendezvous across the namespaces. Nothing here is imported by production
code paths, except `nvml.FixtureGpus` when a config names a lab NVML fixture.
"""
