"""The interface settings every layer of every framework needs, injected into each unit.

Containers do not see the host's /etc/nccl.conf, and each layer picks its interface its own way,
so every rank gets all of them, pointing at twin A (NCCL at both twins' RoCE devices):
vLLM `VLLM_HOST_IP`, SGLang `SGLANG_HOST_IP`, torch.distributed `MASTER_ADDR`, Gloo
`GLOO_SOCKET_IFNAME`, TensorPipe `TP_SOCKET_IFNAME`, NCCL `NCCL_SOCKET_IFNAME` and `NCCL_IB_HCA`,
UCX `UCX_NET_DEVICES`, OpenMPI's TCP transports `OMPI_MCA_btl_tcp_if_include` and
`OMPI_MCA_oob_tcp_if_include`. (Ray takes `--node-ip-address` on its command line.)
"""

from __future__ import annotations

from sparkd.model.host import QosSettings
from sparkd.model.inventory import Twins
from sparkd.render.nccl import host_nccl_env

#: Variables sparkd sets from the interconnect: a spec's `env` may not set them.
MANAGED = (
    "VLLM_HOST_IP",
    "SGLANG_HOST_IP",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GLOO_SOCKET_IFNAME",
    "TP_SOCKET_IFNAME",
    "NCCL_SOCKET_IFNAME",
    "NCCL_IB_HCA",
    "NCCL_IB_TC",
    "UCX_NET_DEVICES",
    "OMPI_MCA_btl_tcp_if_include",
    "OMPI_MCA_oob_tcp_if_include",
    "RAY_ADDRESS",
    "PATH",
)


_NO_QOS = QosSettings(enabled=False)


def environment(host_ip: str, master_addr: str, twins: Twins, qos: QosSettings = _NO_QOS) -> dict[str, str]:
    """The interface variables of a node whose twin A has `host_ip`, in a stable order; with RoCE QoS on, the
    NCCL variables are those of /etc/nccl.conf (`render.nccl.host_nccl_env`), NCCL_IB_TC included."""
    netdev = twins.a.netdev
    env = {
        "VLLM_HOST_IP": host_ip,
        "SGLANG_HOST_IP": host_ip,
        "MASTER_ADDR": master_addr,
        "GLOO_SOCKET_IFNAME": netdev,
        "TP_SOCKET_IFNAME": netdev,
        "UCX_NET_DEVICES": netdev,
        "OMPI_MCA_btl_tcp_if_include": netdev,
        "OMPI_MCA_oob_tcp_if_include": netdev,
    }
    env.update(host_nccl_env(twins, qos))
    return env
