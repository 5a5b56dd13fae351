"""Conversions between domain types and protobuf messages, in one module.

Domain code never sees `*_pb2` types; servicers call these helpers (containerd's
helpers.go). Proto enums are mapped by name: the domain enum value is the proto
enum value's name without its prefix. The spec conversion (and its validation) is the
peer layer's, so a spec is checked the same way whether it comes from a user or a peer.
"""

from __future__ import annotations

from sparkd.engine.gates import Preflight
from sparkd.model.deployment import DeploymentSpec, DeploymentStatus, Failure
from sparkd.model.host import DesiredHost
from sparkd.model.memory import MemoryPlan
from sparkd.model.node import NodeInfo
from sparkd.model.peer import PeerInfo
from sparkd.model.unit import unit_properties
from sparkd.model.versions import Versions
from sparkd.peer.convert import role_to_proto, spec_from_proto, spec_to_proto, state_to_proto, ts
from sparkd.v1 import deployment_pb2, deployment_service_pb2, host_service_pb2, node_pb2, peer_pb2

__all__ = ["spec_from_proto", "ts"]


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


def desired_host_to_proto(d: DesiredHost) -> host_service_pb2.DesiredHost:
    return host_service_pb2.DesiredHost(
        twins=[
            host_service_pb2.HostTwin(netdev=t.netdev, rdma_device=t.rdma_device, address=str(t.address))
            for t in d.twins
        ],
        mtu=d.mtu,
        persist=d.persist,
        qos=d.qos.enabled,
        qos_priority=d.qos.priority,
        qos_trust=d.qos.trust,
        qos_tos=d.qos.tos,
        peermem=d.peermem,
        nccl=[f"{k}={v}" for k, v in d.nccl],
        hosts=[f"{a} {n}" for a, n in d.hosts],
        firewall_ports=[f.port for f in d.firewall],
        hostname=d.hostname,
        existing=d.existing,
        takeover=[p for p, _ in d.takeover],
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


def failure_to_proto(f: Failure | None, journal: bool = True) -> deployment_pb2.Failure | None:
    """`journal`: with the journal's last lines (they can hold prompts: the admin socket only)."""
    if f is None:
        return None
    return deployment_pb2.Failure(
        rank=f.rank,
        node_name=f.node_name,
        unit=f.unit,
        cause=f.cause,
        journal_tail=list(f.journal_tail) if journal else [],
        time=ts(f.time),
    )


def deployment_to_proto(d: DeploymentStatus, journal: bool = True) -> deployment_pb2.Deployment:
    sup = d.supervision
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
                health=n.health,
                node_reachable=n.reachable,
            )
            for n in d.nodes
        ],
        create_time=ts(d.create_time),
        supervision=deployment_pb2.Supervision(
            restarts=sup.restarts,
            failures_in_row=sup.failures_in_row,
            max_failures=d.max_failures,
            breaker_open=sup.breaker_open,
            last_failure=failure_to_proto(sup.last_failure, journal),
            next_restart_time=ts(d.next_restart),
        ),
        master_port=d.master_port,
    )


def memory_to_proto(m: MemoryPlan) -> deployment_service_pb2.MemoryPlan:
    return deployment_service_pb2.MemoryPlan(
        parameters=m.parameters,
        weight_precision=str(m.precision),
        kv_cache_dtype=m.kv_cache_dtype,
        weight_bytes=m.weight_bytes,
        kv_bytes_per_token=m.kv_bytes_per_token,
        context_length=m.context_length,
        concurrency=m.concurrency,
        memory_fraction=m.memory_fraction,
        nodes=[
            deployment_service_pb2.NodeMemory(
                rank=n.rank,
                node_name=n.name,
                first_layer=n.layers[0],
                end_layer=n.layers[1],
                weight_bytes=n.weight_bytes,
                kv_bytes_per_token=n.kv_bytes_per_token,
                memory_bytes=n.memory_bytes,
                budget_bytes=n.budget_bytes,
                reserve_bytes=n.reserve_bytes,
                kv_capacity_tokens=n.kv_capacity_tokens,
                needed_tokens=n.tokens_needed,
                fits=n.fits,
                refusal=n.refusal,
            )
            for n in m.nodes
        ],
        fits=m.fits,
    )


def plan_to_proto(
    spec: DeploymentSpec, p: Preflight, master_port: int
) -> deployment_service_pb2.PlanDeploymentResponse:
    return deployment_service_pb2.PlanDeploymentResponse(
        spec=spec_to_proto(spec),
        memory=memory_to_proto(p.memory) if p.memory else None,
        nodes=[
            deployment_service_pb2.NodePlan(
                node_name=n.node_name,
                rank=n.rank,
                address=n.address,
                unit=n.unit.name,
                argv=list(n.unit.argv),
                environment=dict(n.unit.environment),
                properties=n.properties if n.properties is not None else unit_properties(n.unit),
                listen_ports=list(n.listen_ports),
                model_digest=n.model_digest,
            )
            for n in p.plans
        ],
        master_port=master_port,
        blockers=list(p.blockers),
    )
