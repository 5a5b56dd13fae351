"""TensorRT-LLM 1.2.1 (PyTorch backend): `mpirun` on the head starts every rank.

`mpirun -np WORLD --host IP0:1,IP1:1 ... trtllm-llmapi-launch trtllm-serve MODEL ...`: MPI rank 0
(the head) runs the server, the others run `trtllm-llmapi-launch`'s worker loop. OpenMPI reaches
the other nodes through its `plm_rsh_agent`, which is sparkd's launch agent, not ssh: the agent asks
this node's sparkd (with a credential scoped to the deployment) to have the peer sparkd start that
node's planned rank; there is no sshd anywhere. Each node's rank unit gets that node's own
interface variables (its part's environment), so nothing is forwarded with `-x`: a head's netdev
name must not be imposed on a worker whose names differ. Flags are trtllm-serve's underscore
spellings; the TensorRT-engine path (`--engine_dir`, which never existed, and trtllm-build) is gone.
"""

from __future__ import annotations

from sparkd.engine.launchers.base import ExeLookup, Node, RankUnit, StartOrder, managed_flag_problems
from sparkd.engine.launchers.mpi import orted_command
from sparkd.errors import FieldViolation
from sparkd.model.deployment import Assignment, DeploymentSpec, Framework, LaunchMode

#: The variable that tells sparkd's launch agent (in the head's mpirun unit) where its sparkd listens.
AGENT_SOCKET_ENV = "SPARKD_LAUNCH_AGENT_SOCKET"
MANAGED = {
    "--host": "port (the head listens on every address)",
    "--port": "port",
    "--tp_size": "parallelism.tensor",
    "--tensor_parallel_size": "parallelism.tensor",
    "--pp_size": "parallelism.pipeline",
    "--pipeline_parallel_size": "parallelism.pipeline",
    "--gpus_per_node": "the cluster (one GPU per Spark)",
    "--max_seq_len": "engine.context_length",
    "--max_batch_size": "engine.concurrency",
    "--free_gpu_memory_fraction": "engine.memory_fraction",
    "--kv_cache_free_gpu_memory_fraction": "engine.memory_fraction",
    "--max_num_tokens": "engine.max_batched_tokens",
    "--enable_chunked_prefill": "engine.chunked_prefill",
    "--engine_dir": "model (trtllm-serve never had --engine_dir: give the checkpoint directory as the model)",
    "--backend": "the framework (the PyTorch backend is the default; the option is deprecated)",
}


class Trtllm:
    framework = Framework.TRTLLM
    mode = LaunchMode.NATIVE
    order = StartOrder(workers_by_framework=True)
    token_metric = ""  # /metrics is JSON iteration stats; Prometheus only with return_perf_metrics

    def check(self, spec: DeploymentSpec) -> list[FieldViolation]:
        bad = managed_flag_problems(spec.extra_args, MANAGED)
        if spec.served_model_name and spec.served_model_name != spec.model:
            bad.append(
                FieldViolation(
                    "served_model_name",
                    "trtllm-serve 1.2.1 serves the model under the path it is given (it has no served-name option); "
                    "leave served_model_name out",
                )
            )
        e = spec.engine
        if e.kv_cache_dtype != "auto":
            bad.append(
                FieldViolation(
                    "engine.kv_cache_dtype",
                    "trtllm-serve 1.2.1 has no --kv_cache_dtype (it came after 1.2.1); leave it auto, or set "
                    "kv_cache_config.dtype in a --config YAML through extra_args",
                )
            )
        if e.quantization:
            bad.append(
                FieldViolation(
                    "engine.quantization",
                    "trtllm-serve reads the method from the checkpoint (use a pre-quantized one, such as an NVFP4 "
                    "checkpoint); leave it out",
                )
            )
        if e.speculative is not None:
            bad.append(
                FieldViolation(
                    "engine.speculative",
                    "sparkd does not plan TensorRT-LLM speculative decoding yet: give speculative_config in a "
                    "--config YAML through extra_args",
                )
            )
        if spec.runtime.container and spec.world_size > 1:
            bad.append(
                FieldViolation(
                    "runtime.image",
                    "TensorRT-LLM across nodes runs natively for now (the launch agent and its socket are not in "
                    "the image, and a container's mpirun is not the rank's unit); use a venv (runtime.venv)",
                )
            )
        if e.chunked_prefill is False:
            bad.append(FieldViolation("engine.chunked_prefill", "is off by default in trtllm-serve: leave it out"))
        return bad

    def units(self, spec: DeploymentSpec, a: Assignment, node: Node, exe: ExeLookup) -> tuple[RankUnit, ...]:
        if a.rank > 0:
            return ()  # started by mpirun, through the launch agent (`remote_rank`)
        serve = [
            exe("trtllm-llmapi-launch"),
            exe("trtllm-serve"),
            spec.model,
            "--tp_size",
            str(spec.tensor),
            "--pp_size",
            str(spec.pipeline),
            "--gpus_per_node",
            "1",
            "--host",
            "0.0.0.0",
            "--port",
            str(spec.port),
        ]
        e = spec.engine
        if e.context_length:
            serve += ["--max_seq_len", str(e.context_length)]
        if e.concurrency:
            serve += ["--max_batch_size", str(e.concurrency)]
        if e.max_batched_tokens:
            serve += ["--max_num_tokens", str(e.max_batched_tokens)]
        if e.memory_fraction:
            serve += ["--free_gpu_memory_fraction", f"{e.memory_fraction:g}"]
        if e.chunked_prefill:
            serve += ["--enable_chunked_prefill"]
        hosts = ",".join(f"{ip}:1" for ip in node_addresses(a, node))
        mpirun = [
            exe("mpirun"),
            "-np",
            str(a.nnodes),
            "--host",
            hosts,
            "--map-by",
            "ppr:1:node",
            "--bind-to",
            "none",
            "--mca",
            "plm_rsh_agent",
            node.launch_agent,
            "--mca",
            "plm_rsh_no_tree_spawn",
            "1",  # every orted from the head's mpirun: a worker never launches further
        ]
        env = (("MASTER_PORT", str(a.master_port)), (AGENT_SOCKET_ENV, node.agent_socket))
        return (RankUnit("", tuple(mpirun + serve + list(spec.extra_args)), env),)

    def listen_ports(self, spec: DeploymentSpec, a: Assignment) -> tuple[int, ...]:
        return (spec.port,) if a.rank == 0 else ()

    def remote_rank(self, a: Assignment, command: str, node: Node, exe: ExeLookup) -> RankUnit:
        """A worker's rank as the head's mpirun asked for it through the launch agent: its orted, checked
        (`mpi.orted_command`), in the foreground of the rank's unit. OrtedRefused for anything else."""
        words = orted_command(command, node.launch_agent, a.master_addr)
        return RankUnit("", (exe("orted"), *words[1:]), (("MASTER_PORT", str(a.master_port)),))


def node_addresses(a: Assignment, node: Node) -> tuple[str, ...]:
    """Every rank's interconnect address, rank 0 first (the head's plan holds them: `Node.peers`)."""
    return (node.host_ip, *node.peers)


LAUNCHER = Trtllm()
