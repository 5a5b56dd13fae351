"""Waiting for a Ray cluster's GPUs, between the workers' Ray nodes and the head's `vllm serve`.

The seed guide sleeps (15 s, then 20 s) and hopes; sparkd asks Ray. `ray status --address GCS` (run
the way the deployment runs: the venv's `ray`, or `docker exec` into the head's Ray container) prints
the cluster's resources, `0.0/2.0 GPU` among them; vllm serve starts once the total reaches the world
size (one GPU per Spark). Otherwise the launch fails after RAY_WAIT_S, saying how many GPUs Ray saw.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

import structlog

from sparkd.errors import HostOperationFailed, PreconditionFailed
from sparkd.host.protocols import Runner

log = structlog.get_logger(__name__)

RAY_WAIT_S = 120.0  # Ray nodes join in seconds; a worker that has not joined by then will not
POLL_S = 0.5
STATUS_TIMEOUT_S = 15.0
_GPUS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)/([0-9]+(?:\.[0-9]+)?) GPU\s*$", re.MULTILINE)


def cluster_gpus(status: str) -> float | None:
    """The GPUs a `ray status` report counts in all (None when it names none)."""
    found = _GPUS.search(status[: 64 * 1024])
    return float(found.group(2)) if found else None


#: A native `ray status` runs the framework's environment, which root need not trust (a venv a user can
#: write): sparkd runs it as nobody, with no privileges to gain.
AS_NOBODY = ("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs")


def status_argv(ray: str, gcs: str, container: str = "", docker: str = "/usr/bin/docker") -> list[str]:
    """`ray status` of the cluster at `gcs`: natively as nobody, or inside the head's Ray container."""
    argv = [ray, "status", "--address", gcs]
    return [docker, "exec", container, *argv] if container else [*AS_NOBODY, *argv]


async def wait_for_gpus(
    runner: Runner, argv: Sequence[str], want: int, deployment: str, timeout: float = RAY_WAIT_S
) -> float:
    """Polls until Ray counts `want` GPUs; returns the seconds it took. Raises PreconditionFailed after
    `timeout`, naming what Ray saw."""
    start = time.monotonic()
    seen: float | None = None
    problem = ""
    while True:
        try:
            result = await runner.run(argv, STATUS_TIMEOUT_S)
            if result.returncode == 0:
                seen, problem = cluster_gpus(result.stdout), ""
                if seen is not None and seen >= want:
                    took = time.monotonic() - start
                    log.info("deployment.ray_ready", deployment=deployment, gpus=seen, seconds=round(took, 2))
                    return took
            else:
                lines = (result.stderr or result.stdout).strip().splitlines()
                problem = lines[-1][:200] if lines else f"ray status exited with status {result.returncode}"
        except HostOperationFailed as e:
            problem = e.message[:200]
        if time.monotonic() - start > timeout:
            counted = f"Ray counts {seen:g} of {want} GPUs" if seen is not None else "Ray did not answer"
            why = f" ({problem})" if problem else ""
            raise PreconditionFailed(
                f"deployment {deployment}: {counted} after {timeout:g} s{why}: a worker's Ray node has not "
                f"joined; see `sparkctl-client deploy logs {deployment}`",
                field="mode",
            )
        await asyncio.sleep(POLL_S)
