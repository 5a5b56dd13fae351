"""The node's identity and inventory: sysfs facts joined with netlink state, memory, GPUs."""

from __future__ import annotations

from sparkd import __version__
from sparkd.config import Config
from sparkd.engine.twins import cabled_functions, select_twins
from sparkd.errors import PreconditionFailed
from sparkd.host.gpu import Gpus
from sparkd.host.netlink import Netlink
from sparkd.host.proc import Proc
from sparkd.host.sysfs import Sysfs
from sparkd.identity import Identity
from sparkd.model.node import NodeInfo, PortInfo


class Inventory:
    """Builds NodeInfo from the host adapters."""

    def __init__(
        self, config: Config, identity: Identity, sysfs: Sysfs, netlink: Netlink, proc: Proc, gpus: Gpus
    ) -> None:
        self.config, self.identity = config, identity
        self.sysfs, self.netlink, self.proc, self.gpus = sysfs, netlink, proc, gpus

    async def node(self) -> NodeInfo:
        links = await self.netlink.links()
        rdma = self.sysfs.rdma_ports()
        try:
            twins = select_twins(rdma, links, self.config.interconnect.mode)
            twin_of = {twins.a.netdev: "A"} | ({twins.b.netdev: "B"} if twins.b else {})
        except PreconditionFailed:
            twin_of = {}
        cabled = set(cabled_functions(rdma, links))
        ports = []
        for p in rdma:
            link = links.get(p.netdev)
            ports.append(
                PortInfo(
                    netdev=p.netdev,
                    rdma_device=p.rdma_device,
                    pci_address=p.pci_address,
                    twin=twin_of.get(p.netdev, ""),
                    cabled=p.function in cabled and link is not None,
                    carrier=bool(link and link.carrier),
                    operstate=link.operstate if link else "ABSENT",
                    mtu=link.mtu if link else 0,
                    addresses=link.addresses if link else (),
                    rate_gbps=p.rate_gbps,
                    rdma_state=p.state,
                )
            )
        gpus, reason = self.gpus.gpus()
        return NodeInfo(
            node_id=self.identity.node_id,
            name=self.config.node.name,
            role=self.config.node.role,
            index=self.config.node.index,
            sparkd_version=__version__,
            kernel=self.proc.kernel_release(),
            memory=self.proc.memory(),
            ports=tuple(ports),
            gpus=tuple(gpus),
            gpu_unavailable_reason=reason,
            key_fingerprint=self.identity.fingerprint,
        )
