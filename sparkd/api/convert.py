"""Conversions between domain types and protobuf messages, in one module.

Domain code never sees `*_pb2` types; servicers call these helpers (containerd's
helpers.go). Proto enums are mapped by name: the domain enum value is the proto
enum value's name without its prefix.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from sparkd.engine.deployments import DeploymentStatus
from sparkd.engine.spec import validate
from sparkd.errors import FieldViolation, InvalidSpec
from sparkd.model.deployment import Assignment, DeploymentSpec, DeploymentState, Framework
from sparkd.model.host import HostAction
from sparkd.model.node import NodeInfo
from sparkd.model.peer import PeerInfo
from sparkd.peer.v1 import peer_service_pb2 as peer_pb
from sparkd.v1 import deployment_pb2, host_service_pb2, node_pb2, peer_pb2


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if seconds:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def role_to_proto(role: str) -> str:
    """The proto enum value name (message constructors accept enum names)."""
    return f"NODE_ROLE_{role.upper()}" if role else "NODE_ROLE_UNSPECIFIED"


def role_from_proto(value: int) -> str:
    name = node_pb2.NodeRole.Name(value)
    return "" if value == 0 else name.removeprefix("NODE_ROLE_").lower()


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
        last_seen_time=_ts(p.last_seen),
        rtt_us=p.rtt_us,
        last_error=p.last_error,
    )


def state_to_proto(s: DeploymentState) -> str:
    return f"DEPLOYMENT_STATE_{s.value}"


def state_from_proto(value: int) -> DeploymentState | None:
    if value == 0:
        return None
    return DeploymentState(deployment_pb2.DeploymentState.Name(value).removeprefix("DEPLOYMENT_STATE_"))


def spec_to_proto(s: DeploymentSpec) -> deployment_pb2.DeploymentSpec:
    return deployment_pb2.DeploymentSpec(
        name=s.name,
        framework=f"FRAMEWORK_{s.framework.name}",
        model=s.model,
        served_model_name=s.served_model_name,
        parallelism=deployment_pb2.Parallelism(pipeline=s.pipeline, tensor=s.tensor),
        port=s.port,
    )


def spec_from_proto(m: deployment_pb2.DeploymentSpec) -> DeploymentSpec:
    """Validates a structured spec with the same rules (and field names) as YAML."""
    doc: dict[str, Any] = {"name": m.name, "model": m.model, "port": m.port or 8000}
    if m.framework:
        doc["framework"] = Framework[deployment_pb2.Framework.Name(m.framework).removeprefix("FRAMEWORK_")].value
    if m.served_model_name:
        doc["served_model_name"] = m.served_model_name
    if m.HasField("parallelism"):
        doc["parallelism"] = {"pipeline": m.parallelism.pipeline, "tensor": m.parallelism.tensor}
    try:
        return validate(doc)
    except InvalidSpec as e:
        raise InvalidSpec([FieldViolation(f"spec.{v.field}", v.description) for v in e.violations]) from None


def deployment_to_proto(d: DeploymentStatus) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        name=d.spec.name,
        spec=spec_to_proto(d.spec),
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
        create_time=_ts(d.create_time),
    )


def assignment_to_proto(a: Assignment) -> peer_pb.Assignment:
    return peer_pb.Assignment(rank=a.rank, nnodes=a.nnodes, master_addr=a.master_addr, master_port=a.master_port)


def assignment_from_proto(m: peer_pb.Assignment) -> Assignment:
    return Assignment(rank=m.rank, nnodes=m.nnodes, master_addr=m.master_addr, master_port=m.master_port)
