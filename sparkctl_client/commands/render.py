"""Table renderers shared by the nouns that show the same messages (status shows them all).

Text a peer supplies (its name, versions, error messages) is shown with control characters
escaped, so a peer cannot write to the operator's terminal."""

from __future__ import annotations

import time
from datetime import datetime

from google.protobuf import timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from sparkctl_client.output import table
from sparkd.v1 import deployment_pb2, deployment_service_pb2, node_pb2, peer_pb2, peer_service_pb2

#: Characters of the NCCL library's SHA-256 shown in the versions line.
NCCL_PREFIX = 12


def clean(text: str) -> str:
    """`text` safe for a terminal and one line: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def enum(kind: EnumTypeWrapper, value: int, prefix: str) -> str:
    """An enum value's name after `prefix`; the number when this client does not know it (a newer daemon)."""
    try:
        name = kind.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)


def seconds(stamp: timestamp_pb2.Timestamp) -> float:
    """The stamp in seconds since the epoch; 0 when unset."""
    return stamp.seconds + stamp.nanos / 1e9


def clock(at: float) -> str:
    """Local wall-clock time of `at` (seconds since the epoch), e.g. "12:15:03"."""
    return datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")


def span(delta: float) -> str:
    """A duration for people: "45 s", "15 min", "2 h 5 min"."""
    delta = max(0.0, delta)
    if delta < 60:
        return f"{delta:.0f} s"
    minutes = round(delta / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def ago(stamp: timestamp_pb2.Timestamp, now: float) -> str:
    at = seconds(stamp)
    if not at:
        return "never"
    delta = now - at
    if delta < 1:
        return "just now"
    return f"{delta:.0f}s ago" if delta < 120 else f"{span(delta)} ago"


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


def peers(items: list[peer_pb2.Peer], now: float | None = None) -> str:
    """One row per peer (`status`, `lab status` and `peer status`); `now` for "last seen" (default: now)."""
    if not items:
        return "no peers"
    now = time.time() if now is None else now
    return table(
        ["PEER", "INDEX", "ADDRESS", "ROLE", "STATE", "EPOCH", "VERSION", "RTT", "LAST SEEN", "LAST ERROR"],
        [
            [
                clean(p.name) or "?",
                p.index,
                clean(p.address) or "-",
                enum(node_pb2.NodeRole, p.role, "NODE_ROLE_"),
                enum(peer_pb2.PeerState, p.state, "PEER_STATE_"),
                p.epoch or "-",
                clean(p.sparkd_version) or "-",
                f"{p.rtt_us / 1000:.1f}ms" if p.rtt_us else "-",
                ago(p.last_seen_time, now),
                clean(p.last_error) or "-",
            ]
            for p in items
        ],
    )


def pairing_line(p: peer_service_pb2.Pairing, now: float | None = None) -> str:
    """This node's role and index, whether pinned, whether a token is open (until when), paired peers."""
    now = time.time() if now is None else now
    role = enum(node_pb2.NodeRole, p.role, "NODE_ROLE_")
    if p.role == node_pb2.NODE_ROLE_UNSPECIFIED:
        text = "pairing: not paired (no role yet)"
    else:
        text = f"pairing: {role} index {p.index}" + (" (pinned in the config)" if p.pinned else "")
    if p.open:
        until = seconds(p.expire_time)
        text += f", open until {clock(until)} (in {span(until - now)}, {p.tries_left} tries left)"
    count = p.paired_peers
    text += f", {count} paired peer{'' if count == 1 else 's'}"
    if p.role == node_pb2.NODE_ROLE_UNSPECIFIED and not p.open:
        text += ": `peer pair begin` on the head, then `peer pair join` on each worker"
    return text


def versions_line(v: peer_pb2.PeerVersions) -> str:
    """sparkd, frameworks, driver, CUDA, kernel and the NCCL hash's prefix; "-" when none is known."""
    parts = [f"sparkd {v.sparkd}"] if v.sparkd else []
    parts += list(v.frameworks)
    for label, value in (("driver", v.driver), ("CUDA", v.cuda), ("kernel", v.kernel)):
        if value:
            parts.append(f"{label} {value}")
    parts += [f"nccl {v.nccl_sha256[:NCCL_PREFIX]}"] if v.nccl_sha256 else []
    return clean(", ".join(parts)) or "-"


def difference(d: peer_pb2.VersionDifference, peer: str = "the peer") -> str:
    """One line: blocking (deployments refused until fixed) or a warning, both values, what to do."""
    mark = "BLOCKING" if d.blocking else "warning "
    text = f"{mark} {d.field}: this node {d.local or 'unknown'}, {peer} {d.remote or 'unknown'}"
    return clean(f"{text}: {d.message}" if d.message else text)


def peer_details(p: peer_pb2.Peer) -> str:
    """The peer's identity, its versions and how they differ from this node's (blocking ones marked)."""
    name = clean(p.name) or clean(p.address) or "?"
    ident = ", ".join(
        part
        for part in (
            f"node {clean(p.node_id)}" if p.node_id else "",
            f"key {clean(p.key_fingerprint)[:16]}" if p.key_fingerprint else "",
            f"protocol {p.protocol_version}" if p.protocol_version else "",
            f"boot {clean(p.boot_id)[:8]}" if p.boot_id else "",
        )
        if part
    )
    lines = [f"{name}: {ident or 'not reached yet'}"]
    if p.state == peer_pb2.PEER_STATE_KEY_CHANGED:
        lines.append(
            "  KEY CHANGED: it presents a key other than the one pinned at pairing; refused. If it was "
            f"reinstalled, run `sparkctl-client peer pair reset {clean(p.node_id) or 'NODE_ID'}` here and pair again; "
            "otherwise find out who answers on its address"
        )
    if p.HasField("versions"):
        lines.append(f"  versions: {versions_line(p.versions)}")
    blocking = sorted(p.differences, key=lambda d: not d.blocking)
    lines += [f"  {difference(d, name)}" for d in blocking]
    if p.HasField("versions") and not p.differences:
        lines.append("  versions agree with this node's")
    return "\n".join(lines)


def peer_status(r: peer_service_pb2.ListPeersResponse, now: float | None = None) -> str:
    """`peer status`: the pairing line, the peers' table, then each peer's details."""
    now = time.time() if now is None else now
    blocks = [pairing_line(r.pairing, now), peers(list(r.peers), now)]
    blocks += [peer_details(p) for p in r.peers]
    return "\n\n".join(blocks)


def pairing_begun(
    r: peer_service_pb2.BeginPairingResponse, name: str = "", tries: int = 0, now: float | None = None
) -> str:
    """`peer pair begin`: the token, the head's node ID, the expiry, and what to run on the worker."""
    now = time.time() if now is None else now
    until = seconds(r.expire_time)
    on = f" on {clean(name)}" if name else ""
    extra = f", {tries} tries" if tries else ""
    return (
        f"pairing open{on} until {clock(until)} ({span(until - now)}{extra})\n"
        f"  head node ID: {clean(r.node_id)}\n"
        f"  token:        {clean(r.token)}\n"
        "on the worker, run:\n"
        f"  {clean(r.join_command)}"
    )


def paired(r: peer_service_pb2.JoinPairingResponse, head_id: str = "") -> str:
    """`peer pair join`: the head paired with, this node's index, and the next step."""
    name = clean(r.head.name) or "?"
    node_id = clean(r.head.node_id) or head_id
    return (
        f"paired with head {name} ({node_id}) as index {r.index}\n"
        "next: sparkctl-client host apply (on this node and on the head), then sparkctl-client peer status"
    )


def forgotten(r: peer_service_pb2.ResetPairingResponse, names: dict[str, str], everything: bool) -> str:
    """`peer pair reset`: the peers forgotten (by name where known), and the role when everything was."""
    shown = [f"{clean(names[i])} ({clean(i)})" if names.get(i) else clean(i) for i in r.forgotten]
    text = f"forgot {len(shown)} peer{'' if len(shown) == 1 else 's'}: {', '.join(shown)}" if shown else ""
    if everything:
        text = (text or "no paired peers to forget") + (
            "\nforgot this node's role: pair it again (`peer pair begin` on a head, `peer pair join` on a worker)"
        )
    return text or "nothing forgotten"


def deployments(items: list[deployment_pb2.Deployment]) -> str:
    if not items:
        return "no deployments"
    text = table(
        ["DEPLOYMENT", "STATE", "MODEL", "NODES", "RESTARTS", "MESSAGE"],
        [
            [
                clean(d.name),
                enum(deployment_pb2.DeploymentState, d.state, "DEPLOYMENT_STATE_"),
                clean(d.spec.model),
                ",".join(f"{clean(n.node_name)}:{clean(n.unit_active_state)}" for n in d.nodes) or "-",
                d.supervision.restarts,
                clean(d.message),
            ]
            for d in items
        ],
    )
    for d in items:  # the first failure of a deployment that is down, with its journal's last lines
        f = d.supervision.last_failure
        if d.state == deployment_pb2.DEPLOYMENT_STATE_FAILED and f.unit:
            text += f"\n\n{clean(d.name)}: rank {f.rank} on {clean(f.node_name)} failed first ({clean(f.unit)}): "
            text += clean(f.cause)
            text += "".join(f"\n  | {clean(line)}" for line in f.journal_tail)
    return text


def _gb(n: int) -> str:
    """A size as the memory planner counts it (GB = 10^9 bytes); MB for what a lab's tiny model weighs."""
    return f"{n / 1e9:.1f} GB" if n >= 100e6 else f"{n / 1e6:.1f} MB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def deployment_plan(r: deployment_service_pb2.PlanDeploymentResponse) -> str:
    """The memory plan, then every node's unit (argv, environment, properties), then the gates' verdict."""
    lines = []
    m = r.memory
    if r.HasField("memory"):
        precision, kv = clean(m.weight_precision), clean(m.kv_cache_dtype)
        lines.append(
            f"model: {_count(m.parameters)} parameters, weights {_gb(m.weight_bytes)} ({precision}), "
            f"KV cache {m.kv_bytes_per_token / 1024:g} KiB/token ({kv}); context {m.context_length} "
            f"x concurrency {m.concurrency}, memory fraction {m.memory_fraction:.2f}"
        )
        lines.append(
            table(
                ["RANK", "NODE", "LAYERS", "WEIGHTS", "KV/TOKEN", "KV CAPACITY", "BUDGET", "FITS"],
                [
                    [
                        n.rank,
                        clean(n.node_name),
                        f"{n.first_layer}-{n.end_layer - 1}",
                        _gb(n.weight_bytes),
                        f"{n.kv_bytes_per_token / 1024:g} KiB",
                        f"{n.kv_capacity_tokens:,} tokens",
                        f"{_gb(n.budget_bytes)} of {_gb(n.memory_bytes)}",
                        "yes" if n.fits else "NO",
                    ]
                    for n in m.nodes
                ],
            )
        )
    else:
        lines.append("memory plan: none (the model's config.json could not be read; see the blockers)")
    for n in r.nodes:
        lines.append(f"\nrank {n.rank} on {clean(n.node_name)} ({clean(n.address)}): {clean(n.unit)}")
        lines.append("  argv: " + " ".join(clean(a) for a in n.argv))
        lines += [f"  env {clean(k)}={clean(v)}" for k, v in sorted(n.environment.items())]
        lines += [f"  {clean(k)}={clean(v)}" for k, v in sorted(n.properties.items())]
        if n.listen_ports:
            lines.append("  listens on: " + ", ".join(str(p) for p in n.listen_ports))
        lines.append(f"  model manifest: {clean(n.model_digest[:16]) or '-'}")
    lines.append(f"\nrendezvous port: {r.master_port}")
    if r.blockers:
        lines.append("REFUSED: " + "".join(f"\n  - {clean(b)}" for b in r.blockers))
    else:
        lines.append("every gate passes: `deploy up -f` would start it")
    return "\n".join(lines)


def log_line(r: deployment_service_pb2.DeploymentLogsResponse) -> str:
    when = (
        datetime.fromtimestamp(r.time.ToNanoseconds() / 1e9).isoformat(timespec="milliseconds")
        if r.time.seconds
        else "-"
    )
    return f"{when} {clean(r.node_name)}[{r.rank}] {clean(r.message)}"
