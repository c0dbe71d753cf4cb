"""Running a job on every rank of a world, wherever the user is: a launcher's world, the embedded
gloo world or the embedded MPI world.

A job is a picklable callable `job(backend, on_row) -> DataFrame` (commbench.measure.sweeps.sweep_job,
commbench.measure.replays.replay_job) that every rank runs; rank 0 streams each finished row through
`on_row` and returns the table.

Where it runs (run_job):
- under torchrun, srun or mpiexec (commbench.measure.launcher): this process joins that world
  (commbench.measure.join);
- no launcher, --backend gloo: `ranks` local processes on loopback only (commbench.measure.local_world);
- no launcher, --backend mpi: the job under `mpiexec -n ranks`, ranks on shared memory
  (commbench.measure.mpi_world).
Both embedded worlds keep one supervision contract (commbench.measure.supervise).
"""

from __future__ import annotations

from commbench import CommbenchError, require
from commbench.measure.backends import check_backend
from commbench.measure.join import join_world, make_backend, run_in_launched_world  # noqa: F401 (make_backend, join_world: for callers)
from commbench.measure.launcher import detect
from commbench.measure.local_world import run_local
from commbench.measure.mpi_world import run_mpiexec
from commbench.measure.supervise import WorldFailed  # noqa: F401 (what run_job raises, for its callers)

BACKEND_NEEDS = {"gloo": "torch", "nccl": "torch", "mpi": "mpi4py", "cupy": "cupy"}
"""The optional library each backend imports (commbench.require names its extra)."""


def run_job(job, backend: str, ranks: int, timeout_s: float, on_row=None, options: dict | None = None,
            how_to_launch: str = "sweep all_reduce"):
    """Run `job` where the user is: a launcher's world, the embedded gloo world, or under mpiexec.

    Returns (frame, launcher, ranks) on the reporting rank, None on the other ranks of a launcher's
    world; raises WorldFailed (with the rows that finished) when an embedded world fails or is stopped.
    `how_to_launch` completes the hint for a GPU backend run without a launcher.
    """
    check_backend(backend)
    require(BACKEND_NEEDS[backend])  # before any rank starts
    launch = detect()
    if launch is None and backend == "mpi":
        return run_mpiexec(job, ranks, timeout_s, on_row, options), "mpiexec", ranks
    if launch is None and backend in ("nccl", "cupy"):
        raise CommbenchError(f"--backend {backend} runs one rank per GPU under a launcher, e.g. "
                             f"torchrun --nproc-per-node 2 -m commbench {how_to_launch} --backend {backend}")
    if launch is None:
        return run_local(job, ranks, timeout_s, on_row), "embedded", ranks
    if launch.launcher == "pmix" and backend != "mpi":
        raise CommbenchError(f"rank {launch.rank}: a PMIx launcher started this process (PMIX_RANK set, no RANK/WORLD_SIZE): "
                             f"it joins its world through MPI; use --backend mpi (--backend {backend} needs torchrun, srun "
                             "or RANK, WORLD_SIZE and MASTER_ADDR)")
    rank, frame = run_in_launched_world(backend, job, timeout_s, on_row if launch.rank == 0 else None, options)
    if rank != 0:
        return None
    return frame, launch.launcher, int(frame["ranks"].iloc[0]) if "ranks" in frame else launch.size
