"""Which launcher started this process, and this rank's place in its world.

Launchers commbench joins: torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT), mpiexec (Open MPI's
OMPI_COMM_WORLD_*, MPICH/Hydra's PMI_*) and SLURM's srun (SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID; the rendezvous is the first host of the job's node list). No launcher: the caller
runs the embedded world (commbench.measure.world). A process that sees a launcher's variables joins that
world or fails with a message; it never falls back to an embedded world.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from commbench import CommbenchError

SLURM_DEFAULT_PORT = 29500
"""Rendezvous port under srun when MASTER_PORT is unset (torchrun's default)."""


@dataclass(frozen=True)
class Launch:
    world: str  # "torch" (a torch.distributed rendezvous: torchrun or srun) or "mpi"
    launcher: str  # torchrun, mpiexec or srun
    rank: int
    size: int
    local_rank: int


def _int(env: dict, name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise CommbenchError(f"launcher variable {name}={env[name]!r} is not a whole number") from None


def detect(env: dict | None = None) -> Launch | None:
    """The launcher of this process from its environment; MPI first, as mpiexec under a
    torchrun-like environment is still an MPI world; srun after torchrun (torchrun inside srun is
    torchrun); a bare PMIx launch last (size 0: MPI_Init learns it from the PMIx server)."""
    env = os.environ if env is None else env
    for size_var, rank_var, local_var in (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
                                          ("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID")):
        if size_var in env:
            if rank_var not in env:  # a stray variable, not a launcher: MPI_Init would make a 1-rank world
                raise CommbenchError(f"{size_var}={env[size_var]} is set but {rank_var} is not: this process was not "
                                     f"started by mpiexec (unset {size_var}, or start every rank with mpiexec)")
            return _checked(Launch("mpi", "mpiexec", _int(env, rank_var), _int(env, size_var),
                                   _int(env, local_var) if local_var in env else 0), rank_var, size_var)
    if "RANK" in env and "WORLD_SIZE" in env:
        return _checked(Launch("torch", "torchrun", _int(env, "RANK"), _int(env, "WORLD_SIZE"),
                               _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0), "RANK", "WORLD_SIZE")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and _int(env, "SLURM_NTASKS") > 1:
        return _checked(Launch("torch", "srun", _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"),
                               _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0), "SLURM_PROCID", "SLURM_NTASKS")
    if "PMIX_RANK" in env:  # a PMIx launcher without Open MPI's variables (prun, a PMIx-enabled scheduler):
        # the world size lives in the PMIx server, so the world is joined through MPI (MPI_Init asks it)
        return Launch("mpi", "pmix", _int(env, "PMIX_RANK"), 0, _int(env, "PMIX_LOCAL_RANK") if "PMIX_LOCAL_RANK" in env else 0)
    if "WORLD_SIZE" in env and "RANK" not in env:
        raise CommbenchError("WORLD_SIZE is set but RANK is not: start every rank with torchrun (or set both)")
    return None


def _checked(launch: Launch, rank_var: str, size_var: str) -> Launch:
    """A launcher's world as its variables describe it, refused where no rank can be in it: a size
    below 1, or a rank outside 0..size-1. A world of one is a world (nccl-tests runs one rank; one
    GPU holds one NCCL rank): it is measured and titled as one rank, its busbw 0 by the factors."""
    if launch.size < 1:
        raise CommbenchError(f"{size_var}={launch.size}: the launcher describes an empty world; valid: 1 or more "
                             "ranks (torchrun --nproc-per-node N, mpiexec -n N)")
    if not 0 <= launch.rank < launch.size:
        raise CommbenchError(f"{rank_var}={launch.rank} is outside the {size_var}={launch.size} world (ranks 0.."
                             f"{launch.size - 1})")
    return launch


def check_torchrun_address(launch: Launch, env: dict | None = None) -> None:
    """torchrun sets MASTER_ADDR and MASTER_PORT for every worker; RANK and WORLD_SIZE set by hand without
    them would fail in torch's env:// rendezvous with a bare ValueError: refused naming what is missing.
    (The embedded world sets RANK and WORLD_SIZE too, but joins through a FileStore: not checked.)"""
    env = os.environ if env is None else env
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not env.get(v)]
    if launch.launcher == "torchrun" and missing:
        raise CommbenchError(f"RANK={launch.rank} and WORLD_SIZE={launch.size} are set but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not: start every rank with torchrun (it sets "
                             "them), or set MASTER_ADDR (rank 0's host) and MASTER_PORT")


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07'; 'a,b' -> 'a'."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise CommbenchError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def torch_rendezvous_env(launch: Launch, env: dict | None = None) -> dict:
    """The variables torch.distributed's env:// rendezvous reads, for a torch-kind world.

    Under srun they are derived: RANK, WORLD_SIZE, LOCAL_RANK from SLURM_*, MASTER_ADDR from the
    job's first host (SLURM_STEP_NODELIST or SLURM_JOB_NODELIST), MASTER_PORT default 29500.
    """
    env = os.environ if env is None else env
    if launch.launcher != "srun":
        return {}
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not env.get("MASTER_ADDR") and not nodelist:
        raise CommbenchError("under srun, commbench needs SLURM_JOB_NODELIST (or MASTER_ADDR) to find rank 0's host")
    return {"RANK": str(launch.rank), "WORLD_SIZE": str(launch.size), "LOCAL_RANK": str(launch.local_rank),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_slurm_host(nodelist),
            "MASTER_PORT": env.get("MASTER_PORT", str(SLURM_DEFAULT_PORT))}


def launcher_world() -> str | None:
    """'mpi' under mpiexec, 'torch' under torchrun or srun, None when no launcher started this process."""
    launch = detect()
    return launch.world if launch else None


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (0, 1 without one)."""
    launch = detect()
    return (launch.rank, launch.size) if launch else (0, 1)


def local_rank() -> int:
    launch = detect()
    return launch.local_rank if launch else 0
