"""Fault injection for tests only: picklable jobs and backend wrappers the embedded world runs.

Production code reads no fault variables; a test hands one of these to the world instead of the
real job (or monkeypatches commbench.measure.sweeps.sweep_job to return one), so the spawned ranks import
this module by name and misbehave exactly where the test says.
"""

import functools
import os

import numpy as np

from commbench.measure.sweeps import run_sweep


def _exit_job(rank: int, after_rows: int, collective, sizes, iters, warmup, timing, backend, on_row):
    """Run the sweep one size at a time; `rank` exits with status 17 once `after_rows` sizes are done."""
    rows = []
    for i, size in enumerate(sizes):
        if backend.rank == rank and i == after_rows:
            os._exit(17)
        frame = run_sweep(backend, collective, [size], iters, warmup, timing, on_row)
        rows.extend(frame.to_dict(orient="records"))
    import pandas as pd

    return pd.DataFrame(rows)


def exit_job(rank: int, after_rows: int):
    """A sweep_job factory (same signature: a SweepSpec) whose `rank` dies after `after_rows` finished sizes."""
    def factory(spec):
        return functools.partial(_exit_job, rank, after_rows, spec.collective, spec.sizes, spec.iters, spec.warmup,
                                 spec.timing)
    return factory


class Corrupting:
    """Wraps a backend: on `rank`, every result read back for checking has its first element off by 1000."""

    def __init__(self, backend, rank: int):
        self._backend, self._rank = backend, rank

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def to_numpy(self, buf):
        out = np.array(self._backend.to_numpy(buf), dtype=np.float64)
        if self._backend.rank == self._rank and out.size:
            out[0] += 1000.0
        return out


def _corrupt_job(rank, collective, sizes, iters, warmup, dtype, op, placement, backend, on_row):
    return run_sweep(Corrupting(backend, rank), collective, list(sizes), iters, warmup, "blocking", on_row,
                     dtype=dtype, op=op, placement=placement)


def corrupt_job(rank: int, collective: str, sizes, iters: int = 2, warmup: int = 0, dtype: str = "float32",
                op: str = "sum", placement: str = "both"):
    """A sweep job whose correctness check on `rank` always sees one wrong element."""
    return functools.partial(_corrupt_job, rank, collective, tuple(sizes), iters, warmup, dtype, op, placement)


def _corrupt_replay(rank, calls_by_phase, iters, warmup, wire, world_size, backend, on_row):
    from commbench.measure.replays import _replay

    return _replay(calls_by_phase, iters, warmup, wire, world_size, Corrupting(backend, rank), on_row)


def corrupt_replay_job(rank: int):
    """A replay_job factory (same signature) whose correctness check on `rank` sees one wrong element per call."""
    def factory(calls_by_phase, iters, warmup, wire, world_size):
        return functools.partial(_corrupt_replay, rank, calls_by_phase, iters, warmup, wire, world_size)
    return factory


def _die_when_done(rank, job, backend, on_row):
    """Run `job`; then `rank` waits until rank 0 has handed over the whole table (the embedded MPI
    world's result file) and kills itself with SIGKILL: a rank dying after the run is complete."""
    import signal
    import threading
    import time
    from pathlib import Path

    frame = job(backend, on_row)
    if backend.rank == rank:
        result = Path(os.environ["COMMBENCH_WORLD_DIR"], "result.pkl")

        def die():
            while not result.exists():
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=die, daemon=True).start()
    return frame


def die_when_done(rank: int, job):
    return functools.partial(_die_when_done, rank, job)
