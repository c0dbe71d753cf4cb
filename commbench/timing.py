"""The one timing loop: warm-up, timed iterations, raw per-iteration samples, cross-rank aggregation.

Each sample is one call timed on the host clock after a barrier (blocking mode), so a sample is
the time of that collective alone; `synchronize` is the backend's device sync (a no-op on CPU).
The per-iteration time across ranks is the maximum over ranks (the slowest rank ends the call).
"""

from __future__ import annotations

import time

import numpy as np


def time_calls(op, backend, iters: int, warmup: int) -> np.ndarray:
    """Run `op()` warmup + iters times; return the per-iteration seconds, max over ranks."""
    for _ in range(warmup):
        op()
    backend.synchronize()
    samples = np.empty(iters)
    barrier, clock = backend.barrier, time.perf_counter
    sync = backend.synchronize if backend.needs_sync else None  # host backends: no call in the timed region
    for i in range(iters):
        barrier()
        start = clock()
        op()
        if sync is not None:
            sync()
        samples[i] = clock() - start
    return backend.max_over_ranks(samples)
