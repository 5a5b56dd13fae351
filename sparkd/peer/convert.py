"""Conversions between the peer protocol's messages and domain types, with their checks.

A peer is another machine: everything it sends is bounded and validated here, and a bad
value is an `InvalidSpec` naming the field (INVALID_ARGUMENT), never a crash. Enum values
outside the known set are refused or read as "unknown", never looked up blindly. The
local API reuses the spec conversion, so a spec is checked the same way wherever it
comes from.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from google.protobuf import timestamp_pb2

from sparkd.engine.spec import validate, validate_name
from sparkd.errors import FieldViolation, InvalidSpec, shown
from sparkd.model.deployment import Assignment, DeploymentSpec, DeploymentState, Framework, PartSummary
from sparkd.model.host import HostAction
from sparkd.model.versions import FRAMEWORK_PACKAGES, Versions, normalize_package
from sparkd.peer.v1 import peer_service_pb2 as pb
from sparkd.v1 import deployment_pb2, host_service_pb2, node_pb2

NODE_ID_RE = re.compile(r"[a-z2-7]{16}")
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
VERSION_RE = re.compile(r"[A-Za-z0-9.+~_-]{0,64}")
BOOT_ID_RE = re.compile(r"[0-9a-f-]{0,36}")
MAX_PACKAGES = 16
MAX_CAPABILITIES = 16
MAX_NODES = 64
MAX_SUMMARIES = 64
MAX_INDEX = 250
_TEXT_LIMIT = 128
MAX_LINE = 512  # a failure or journal line in a summary
MAX_TAIL = 10


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    if seconds:
        stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def enum_name(enum: Any, value: int, prefix: str) -> str | None:
    """The enum value's name after `prefix`, or None for 0 and for values this daemon does not know."""
    if value == 0 or value not in enum.values():
        return None
    return str(enum.Name(value)).removeprefix(prefix)


def role_to_proto(role: str) -> str:
    """The proto enum value name (message constructors accept enum names)."""
    return f"NODE_ROLE_{role.upper()}" if role else "NODE_ROLE_UNSPECIFIED"


def role_from_proto(value: int) -> str:
    """ "head", "worker", or "" (unset or unknown)."""
    name = enum_name(node_pb2.NodeRole, value, "NODE_ROLE_")
    return name.lower() if name else ""


def state_to_proto(s: DeploymentState | None) -> str:
    return f"DEPLOYMENT_STATE_{s.value}" if s else "DEPLOYMENT_STATE_UNSPECIFIED"


def state_from_proto(value: int) -> DeploymentState | None:
    name = enum_name(deployment_pb2.DeploymentState, value, "DEPLOYMENT_STATE_")
    return DeploymentState(name) if name else None


def spec_to_proto(s: DeploymentSpec) -> deployment_pb2.DeploymentSpec:
    e = s.engine
    engine = deployment_pb2.EngineOptions(
        context_length=e.context_length or 0,
        concurrency=e.concurrency or 0,
        memory_fraction=e.memory_fraction or 0.0,
        kv_cache_dtype=e.kv_cache_dtype,
        max_batched_tokens=e.max_batched_tokens or 0,
        quantization=e.quantization,
    )
    if e.chunked_prefill is not None:
        engine.chunked_prefill = e.chunked_prefill
    if (d := e.speculative) is not None:
        engine.speculative.CopyFrom(
            deployment_pb2.Speculative(method=d.method, model=d.model, tokens=d.tokens, steps=d.steps, topk=d.topk)
        )
    m = deployment_pb2.DeploymentSpec(
        name=s.name,
        framework=f"FRAMEWORK_{s.framework.name}",
        model=s.model,
        served_model_name=s.served_model_name,
        parallelism=deployment_pb2.Parallelism(pipeline=s.pipeline, tensor=s.tensor),
        port=s.port,
        engine=engine,
        mode=f"LAUNCH_MODE_{s.mode.name}",
        extra_args=s.extra_args,
        env=dict(s.env),
        command=s.command,
    )
    if s.runtime.image or s.runtime.venv:
        m.runtime.CopyFrom(deployment_pb2.Runtime(image=s.runtime.image, venv=s.runtime.venv))
    return m


def _engine_doc(e: deployment_pb2.EngineOptions) -> dict[str, Any]:
    engine: dict[str, Any] = {"kv_cache_dtype": e.kv_cache_dtype or "auto"}
    for key in ("context_length", "concurrency", "max_batched_tokens", "quantization"):
        if getattr(e, key):
            engine[key] = getattr(e, key)
    if e.memory_fraction:
        # float32 on the wire: round back to what the operator wrote (0.9, not 0.8999999762)
        engine["memory_fraction"] = round(e.memory_fraction, 6)
    if e.HasField("chunked_prefill"):
        engine["chunked_prefill"] = e.chunked_prefill
    if e.HasField("speculative"):
        d = e.speculative
        engine["speculative"] = {"method": d.method or None, "model": d.model}
        engine["speculative"] |= {k: getattr(d, k) for k in ("tokens", "steps", "topk") if getattr(d, k)}
    return engine


def spec_from_proto(m: deployment_pb2.DeploymentSpec, prefix: str = "spec.") -> DeploymentSpec:
    """Validates a structured spec with the same rules (and field names) as YAML."""
    doc: dict[str, Any] = {"name": m.name, "model": m.model, "port": m.port or 8000}
    if m.framework:
        name = enum_name(deployment_pb2.Framework, m.framework, "FRAMEWORK_")
        doc["framework"] = Framework[name].value if name else f"<unknown enum value {m.framework}>"
    if m.mode:
        mode = enum_name(deployment_pb2.LaunchMode, m.mode, "LAUNCH_MODE_")
        doc["mode"] = mode.lower() if mode else f"<unknown enum value {m.mode}>"
    if m.served_model_name:
        doc["served_model_name"] = m.served_model_name
    if m.HasField("parallelism"):
        doc["parallelism"] = {"pipeline": m.parallelism.pipeline, "tensor": m.parallelism.tensor}
    if m.HasField("engine"):
        doc["engine"] = _engine_doc(m.engine)
    if m.HasField("runtime"):
        doc["runtime"] = {k: getattr(m.runtime, k) for k in ("image", "venv") if getattr(m.runtime, k)}
    for key in ("extra_args", "command"):
        if getattr(m, key):
            doc[key] = list(getattr(m, key))
    if m.env:
        doc["env"] = dict(m.env)
    try:
        return validate(doc)
    except InvalidSpec as e:
        raise InvalidSpec([FieldViolation(f"{prefix}{v.field}", v.description) for v in e.violations]) from None


def host_action_to_proto(a: HostAction) -> host_service_pb2.HostAction:
    """A host plan's action as sparkd.v1.HostAction (the local API's, and a worker's PrepareHost answer)."""
    return host_service_pb2.HostAction(
        kind=f"HOST_ACTION_KIND_{a.kind.value}",
        target=a.target,
        current=a.current,
        desired=a.desired,
        description=a.description,
        component=a.component,
    )


def assignment_to_proto(a: Assignment) -> pb.Assignment:
    return pb.Assignment(rank=a.rank, nnodes=a.nnodes, master_addr=a.master_addr, master_port=a.master_port)


def assignment_from_proto(m: pb.Assignment, head_address: str) -> Assignment:
    """A worker's assignment: a rank it can hold, and the head's own address as the rendezvous."""
    bad = []
    if not 2 <= m.nnodes <= MAX_NODES:
        bad.append(FieldViolation("assignment.nnodes", f"must be from 2 to {MAX_NODES}, got {m.nnodes}"))
    if not 1 <= m.rank < max(m.nnodes, 2):
        bad.append(FieldViolation("assignment.rank", f"a worker's rank is from 1 to nnodes - 1, got {m.rank}"))
    if m.master_addr != head_address:
        bad.append(
            FieldViolation(
                "assignment.master_addr", f"must be the head's address {head_address}, got {shown(m.master_addr)}"
            )
        )
    if not 1 <= m.master_port <= 65535:
        bad.append(FieldViolation("assignment.master_port", f"must be a TCP port from 1 to 65535, got {m.master_port}"))
    if bad:
        raise InvalidSpec(bad)
    return Assignment(rank=m.rank, nnodes=m.nnodes, master_addr=m.master_addr, master_port=m.master_port)


def _text(value: str, field: str, bad: list[FieldViolation], limit: int = _TEXT_LIMIT) -> None:
    if len(value) > limit or not value.isprintable():
        bad.append(FieldViolation(field, f"must be at most {limit} printable characters, got {shown(value)}"))


def check_hello(node: pb.NodeHello, field: str = "node") -> None:
    """Refuses a NodeHello whose fields are out of range (the identity checks come after)."""
    bad: list[FieldViolation] = []
    if not NODE_ID_RE.fullmatch(node.node_id):
        bad.append(FieldViolation(f"{field}.node_id", f"must be 16 base32 characters, got {shown(node.node_id)}"))
    if not NODE_NAME_RE.fullmatch(node.name):
        bad.append(FieldViolation(f"{field}.name", f"must be 1-63 letters, digits, '-' or '_', got {shown(node.name)}"))
    if not role_from_proto(node.role):
        bad.append(FieldViolation(f"{field}.role", f"must be NODE_ROLE_HEAD or NODE_ROLE_WORKER, got {node.role}"))
    if node.index > MAX_INDEX:
        bad.append(FieldViolation(f"{field}.index", f"must be from 0 to {MAX_INDEX}, got {node.index}"))
    try:
        ipaddress.IPv4Address(node.address)
    except ValueError:
        bad.append(FieldViolation(f"{field}.address", f"must be an IPv4 address, got {shown(node.address)}"))
    _text(node.sparkd_version, f"{field}.sparkd_version", bad, 64)
    if not BOOT_ID_RE.fullmatch(node.boot_id):
        bad.append(FieldViolation(f"{field}.boot_id", f"must be a boot ID (a UUID), got {shown(node.boot_id)}"))
    if len(node.capabilities) > MAX_CAPABILITIES or any(len(c) > 32 for c in node.capabilities):
        bad.append(
            FieldViolation(f"{field}.capabilities", f"at most {MAX_CAPABILITIES} names of at most 32 characters")
        )
    if not 1 <= node.protocol_min <= node.protocol_max <= 1000:
        bad.append(
            FieldViolation(
                f"{field}.protocol_max",
                f"protocol_min..protocol_max must be a range from 1, got {node.protocol_min}..{node.protocol_max}",
            )
        )
    _check_versions(node.versions, f"{field}.versions", bad)
    if bad:
        raise InvalidSpec(bad)


def _check_versions(v: pb.Versions, field: str, bad: list[FieldViolation]) -> None:
    for name in ("sparkd", "driver", "cuda"):
        if not VERSION_RE.fullmatch(getattr(v, name)):
            bad.append(FieldViolation(f"{field}.{name}", f"must be a version string, got {shown(getattr(v, name))}"))
    _text(v.kernel, f"{field}.kernel", bad, 128)
    if not re.fullmatch(r"(|[0-9a-f]{64})", v.nccl_sha256):
        bad.append(FieldViolation(f"{field}.nccl_sha256", f"must be 64 hex digits, got {shown(v.nccl_sha256)}"))
    if len(v.frameworks) > MAX_PACKAGES:
        bad.append(FieldViolation(f"{field}.frameworks", f"at most {MAX_PACKAGES} packages, got {len(v.frameworks)}"))
        return
    for i, p in enumerate(v.frameworks):
        if normalize_package(p.name) not in FRAMEWORK_PACKAGES or not VERSION_RE.fullmatch(p.version) or not p.version:
            bad.append(
                FieldViolation(f"{field}.frameworks[{i}]", f"must be a known package and version, got {shown(p.name)}")
            )


def versions_to_proto(v: Versions) -> pb.Versions:
    return pb.Versions(
        sparkd=v.sparkd,
        frameworks=[pb.Package(name=n, version=ver) for n, ver in v.frameworks],
        nccl_sha256=v.nccl_sha256,
        driver=v.driver,
        cuda=v.cuda,
        kernel=v.kernel,
    )


def versions_from_proto(m: pb.Versions) -> Versions:
    """A peer's versions (check_hello has checked them)."""
    return Versions(
        sparkd=m.sparkd,
        frameworks=tuple((normalize_package(p.name), p.version) for p in m.frameworks),
        nccl_sha256=m.nccl_sha256,
        driver=m.driver,
        cuda=m.cuda,
        kernel=m.kernel,
    )


def summaries_to_proto(parts: tuple[PartSummary, ...]) -> list[pb.DeploymentSummary]:
    return [
        pb.DeploymentSummary(
            name=p.name,
            state=state_to_proto(p.state),
            unit=p.unit,
            unit_active_state=p.unit_active_state,
            failure=printable(p.failure, MAX_LINE),
            journal_tail=[printable(line, MAX_LINE) for line in p.journal_tail[-MAX_TAIL:]],
            exit_time=p.exit_time,
        )
        for p in parts
    ]


def printable(text: str, limit: int) -> str:
    """Display text from a peer or a journal: at most `limit` characters, anything unprintable as '?'."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _time(value: float) -> float:
    return value if 0 <= value < 1e11 else 0.0  # NaN fails both comparisons


def summaries_from_proto(items: Any, field: str = "deployments") -> dict[str, PartSummary]:
    """A peer's deployment summaries, checked; raises InvalidSpec naming the first bad entries."""
    if len(items) > MAX_SUMMARIES:
        raise InvalidSpec.one(field, f"at most {MAX_SUMMARIES} deployments, got {len(items)}")
    bad: list[FieldViolation] = []
    result = {}
    for i, d in enumerate(items):
        try:
            validate_name(d.name, f"{field}[{i}].name")
        except InvalidSpec as e:
            bad.extend(e.violations)
            continue
        _text(d.unit, f"{field}[{i}].unit", bad)
        _text(d.unit_active_state, f"{field}[{i}].unit_active_state", bad, 32)
        if len(d.journal_tail) > MAX_TAIL:
            bad.append(
                FieldViolation(f"{field}[{i}].journal_tail", f"at most {MAX_TAIL} lines, got {len(d.journal_tail)}")
            )
            continue
        result[d.name] = PartSummary(
            d.name,
            state_from_proto(d.state),
            d.unit,
            d.unit_active_state,
            printable(d.failure, MAX_LINE),
            tuple(printable(line, MAX_LINE) for line in d.journal_tail),
            _time(d.exit_time),
        )
    if bad:
        raise InvalidSpec(bad)
    return result
