"""Conversions between domain types and protobuf messages, in one module.

Domain code never sees `*_pb2` types; servicers call these helpers (containerd's
helpers.go). Proto enums are mapped by name: the domain enum value is the proto
enum value's name without its prefix. The spec conversion (and its validation) is the
peer layer's, so a spec is checked the same way whether it comes from a user or a peer.
"""

from __future__ import annotations

from sparkd.model.deployment import DeploymentStatus
from sparkd.model.host import HostAction
from sparkd.model.node import NodeInfo
from sparkd.model.peer import PeerInfo
from sparkd.model.versions import Versions
from sparkd.peer.convert import role_to_proto, spec_from_proto, spec_to_proto, state_to_proto, ts
from sparkd.v1 import deployment_pb2, host_service_pb2, node_pb2, peer_pb2

__all__ = ["spec_from_proto"]


def node_to_proto(n: NodeInfo) -> node_pb2.Node:
    return node_pb2.Node(
        id=n.node_id,
        name=n.name,
        role=role_to_proto(n.role),
        index=n.index,
        sparkd_version=n.sparkd_version,
        kernel=n.kernel,
        memory=node_pb2.Memory(total_bytes=n.memory.total_bytes, available_bytes=n.memory.available_bytes),
        ports=[
            node_pb2.NetworkPort(
                netdev=p.netdev,
                rdma_device=p.rdma_device,
                pci_address=p.pci_address,
                twin=f"TWIN_{p.twin}" if p.twin else "TWIN_UNSPECIFIED",
                cabled=p.cabled,
                carrier=p.carrier,
                operstate=p.operstate,
                mtu=p.mtu,
                addresses=[str(a) for a in p.addresses],
                rate_gbps=p.rate_gbps,
                rdma_state=p.rdma_state,
            )
            for p in n.ports
        ],
        gpus=[
            node_pb2.Gpu(
                index=g.index, name=g.name, uuid=g.uuid, driver_version=g.driver_version, cuda_version=g.cuda_version
            )
            for g in n.gpus
        ],
        gpu_unavailable_reason=n.gpu_unavailable_reason,
        key_fingerprint=n.key_fingerprint,
    )


def host_action_to_proto(a: HostAction) -> host_service_pb2.HostAction:
    return host_service_pb2.HostAction(
        kind=f"HOST_ACTION_KIND_{a.kind.value}",
        target=a.target,
        current=a.current,
        desired=a.desired,
        description=a.description,
    )


def peer_to_proto(p: PeerInfo) -> peer_pb2.Peer:
    return peer_pb2.Peer(
        node_id=p.node_id,
        name=p.name,
        role=role_to_proto(p.role),
        address=p.address,
        state=f"PEER_STATE_{p.state.value}",
        sparkd_version=p.sparkd_version,
        last_seen_time=ts(p.last_seen),
        rtt_us=p.rtt_us,
        last_error=p.last_error,
        index=p.index,
        versions=versions_to_proto(p.versions) if p.versions else None,
        differences=[
            peer_pb2.VersionDifference(
                field=d.field, local=d.local, remote=d.remote, blocking=d.blocking, message=f"{d.message}; {d.advice}"
            )
            for d in p.differences
        ],
        epoch=p.epoch,
        protocol_version=p.protocol_version,
        boot_id=p.boot_id,
        key_fingerprint=p.key_fingerprint,
    )


def versions_to_proto(v: Versions) -> peer_pb2.PeerVersions:
    return peer_pb2.PeerVersions(
        sparkd=v.sparkd,
        frameworks=[f"{n}=={ver}" for n, ver in v.frameworks],
        nccl_sha256=v.nccl_sha256,
        driver=v.driver,
        cuda=v.cuda,
        kernel=v.kernel,
    )


def deployment_to_proto(d: DeploymentStatus) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        name=d.name,
        spec=spec_to_proto(d.spec) if d.spec else None,
        state=state_to_proto(d.state),
        message=d.message,
        nodes=[
            deployment_pb2.DeploymentNode(
                node_name=n.node_name,
                rank=n.rank,
                address=n.address,
                unit=n.unit,
                unit_active_state=n.unit_active_state,
            )
            for n in d.nodes
        ],
        create_time=ts(d.create_time),
    )
