"""The node's identity and inventory: sysfs facts joined with netlink state, memory, GPUs.

Built from the state loop's snapshot only: a GetNode or GetStatus does no netlink, NVML
or file I/O of its own.
"""

from __future__ import annotations

from sparkd import __version__
from sparkd.config import Config
from sparkd.engine.membership import Membership
from sparkd.engine.twins import cabled_functions, select_twins
from sparkd.errors import PreconditionFailed
from sparkd.identity import Identity
from sparkd.model.node import NodeInfo, PortInfo
from sparkd.model.observed import Snapshot


class Inventory:
    """Builds NodeInfo from the snapshot."""

    def __init__(self, config: Config, identity: Identity, snapshot: Snapshot, membership: Membership) -> None:
        self.config, self.identity, self.snapshot, self.membership = config, identity, snapshot, membership

    def node(self) -> NodeInfo:
        s = self.snapshot
        links, rdma = s.links, list(s.rdma)
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
        return NodeInfo(
            node_id=self.identity.node_id,
            name=self.config.node.name,
            role=self.membership.role,
            index=self.membership.index,
            sparkd_version=__version__,
            kernel=s.kernel,
            memory=s.memory,
            ports=tuple(ports),
            gpus=s.gpus,
            gpu_unavailable_reason=s.gpu_reason,
            key_fingerprint=self.identity.fingerprint,
        )
