"""Joining a world and running a job on it, as one rank: the backend by name, a bounded join, the job.

A job is a picklable callable `job(backend, on_row) -> DataFrame` (commbench.measure.sweeps.sweep_job,
commbench.measure.replays.replay_job) that every rank runs; rank 0 streams each finished row through
`on_row` and returns the table.
"""

from __future__ import annotations

import os
import sys
import threading

from commbench import CommbenchError, require
from commbench.measure.backends import Backend, check_backend
from commbench.measure.launcher import check_torchrun_address, detect, launcher_rank, torch_rendezvous_env

JOIN_GRACE_S = 2.0
"""Seconds past --timeout that joining a world may take before the watchdog ends the process: the
libraries' own rendezvous timeouts do not cover a port that accepts and never answers."""


def make_backend(name: str, timeout_s: float, **options) -> Backend:
    """The backend object for `name`; options are the backend's own (mpi: buffers; torch: store_path)."""
    check_backend(name)
    if name == "mpi":
        from commbench.measure.backends.mpi import MpiBackend

        return MpiBackend(timeout_s, **options)
    if name == "cupy":
        from commbench.measure.backends.cupy_nccl import CupyNcclBackend

        return CupyNcclBackend(timeout_s)
    require("torch")
    from commbench.measure.backends.torch_dist import TorchBackend

    return TorchBackend(timeout_s, name, **options)


def join_world(backend_name: str, timeout_s: float, options: dict | None = None) -> Backend:
    """The backend of the world this process belongs to, or an error naming this rank.

    A watchdog bounds the join: past timeout_s + JOIN_GRACE_S it prints the same one-line error and
    ends the process with status 2 (a rendezvous blocked in C++ cannot be interrupted otherwise).
    """
    launch = detect()
    if launch is not None:
        os.environ.update(torch_rendezvous_env(launch))
        if not (options and "store_path" in options):  # the embedded world joins through a FileStore
            check_torchrun_address(launch)
    where = f"{os.environ.get('MASTER_ADDR', 'a FileStore' if options and 'store_path' in options else '?')}" \
            f"{':' + os.environ['MASTER_PORT'] if 'MASTER_PORT' in os.environ else ''}"
    message = (f"rank {launcher_rank()[0]} could not join the {backend_name} world at {where} within {timeout_s:g} s "
               "(is rank 0 up, and MASTER_ADDR / GLOO_SOCKET_IFNAME right?)")
    if backend_name in ("gloo", "nccl"):  # the imports are not the rendezvous: a loaded host may take seconds
        require("torch.distributed")
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout_s + JOIN_GRACE_S):
            sys.stderr.write(f"commbench: error: {message}: the rendezvous did not answer\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True, name="commbench-join-watchdog").start()
    try:
        backend = make_backend(backend_name, timeout_s, **(options or {}))
        if launch is not None and launch.size and backend.world_size != launch.size:
            # e.g. OMPI_COMM_WORLD_* set by hand, not by mpiexec: MPI_Init makes a singleton world
            size_var = "OMPI_COMM_WORLD_SIZE" if "OMPI_COMM_WORLD_SIZE" in os.environ else \
                "PMI_SIZE" if launch.world == "mpi" else "WORLD_SIZE"
            backend.close()
            raise CommbenchError(f"{size_var}={launch.size} describes {launch.size} ranks but the {backend_name} "
                                 f"world joined has {backend.world_size}: this process was not started by "
                                 f"{launch.launcher} (unset {size_var}, or start every rank with {launch.launcher})")
        return backend
    except CommbenchError:
        raise
    except Exception as exc:  # rendezvous failed: name this rank and where it looked
        raise CommbenchError(f"{message}: {type(exc).__name__}") from None
    finally:
        joined.set()


def run_joined(backend: Backend, job, on_row=None, close: bool = True):
    """Run `job` on a joined backend; returns the frame with `attrs["hosts"]` (every rank's host, in
    rank order: the metadata's "hosts"); closes the backend unless told not to (a caller's own)."""
    frame = job(backend, on_row if backend.rank == 0 else None)
    frame.attrs["hosts"] = backend.hostnames()
    if close:
        backend.close()
    return frame


def run_in_launched_world(backend_name: str, job, timeout_s: float, on_row=None, options: dict | None = None):
    """Join the world and run `job(backend, on_row)`; returns (rank, frame)."""
    backend = join_world(backend_name, timeout_s, options)
    rank = backend.rank
    return rank, run_joined(backend, job, on_row)
