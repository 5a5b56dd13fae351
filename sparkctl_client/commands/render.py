"""Table renderers shared by the nouns that show the same messages (status shows them all)."""

from __future__ import annotations

from sparkctl_client.output import table
from sparkd.v1 import deployment_pb2, node_pb2, peer_pb2


def node_line(n: node_pb2.Node) -> str:
    role = node_pb2.NodeRole.Name(n.role).removeprefix("NODE_ROLE_")
    gib = n.memory.total_bytes / 2**30
    gpus = ", ".join(g.name for g in n.gpus) or f"none ({n.gpu_unavailable_reason})"
    return (
        f"node {n.name}  id {n.id}  role {role}  sparkd {n.sparkd_version}  kernel {n.kernel}  "
        f"memory {gib:.1f} GiB  gpu {gpus}"
    )


def ports(n: node_pb2.Node) -> str:
    return table(
        ["NETDEV", "RDMA", "PCI", "TWIN", "CABLED", "OPER", "MTU", "ADDRESSES", "RATE"],
        [
            [
                p.netdev,
                p.rdma_device,
                p.pci_address,
                node_pb2.Twin.Name(p.twin).removeprefix("TWIN_"),
                "yes" if p.cabled else "no",
                p.operstate,
                p.mtu,
                ",".join(p.addresses) or "-",
                f"{p.rate_gbps}G",
            ]
            for p in n.ports
        ],
    )


def peers(items: list[peer_pb2.Peer]) -> str:
    if not items:
        return "no peers"
    return table(
        ["PEER", "ADDRESS", "ROLE", "STATE", "VERSION", "RTT", "LAST ERROR"],
        [
            [
                p.name or "?",
                p.address,
                node_pb2.NodeRole.Name(p.role).removeprefix("NODE_ROLE_"),
                peer_pb2.PeerState.Name(p.state).removeprefix("PEER_STATE_"),
                p.sparkd_version or "-",
                f"{p.rtt_us / 1000:.1f}ms" if p.rtt_us else "-",
                p.last_error or "-",
            ]
            for p in items
        ],
    )


def deployments(items: list[deployment_pb2.Deployment]) -> str:
    if not items:
        return "no deployments"
    return table(
        ["DEPLOYMENT", "STATE", "MODEL", "NODES", "MESSAGE"],
        [
            [
                d.name,
                deployment_pb2.DeploymentState.Name(d.state).removeprefix("DEPLOYMENT_STATE_"),
                d.spec.model,
                ",".join(f"{n.node_name}:{n.unit_active_state}" for n in d.nodes) or "-",
                d.message,
            ]
            for d in items
        ],
    )
