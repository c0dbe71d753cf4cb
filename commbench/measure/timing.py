"""The one timing loop: warm-up, timed iterations, raw per-iteration samples, cross-rank aggregation.

Modes:
  blocking      (default) each sample is one call between a barrier and its completion, so a sample
                is the time of that collective alone;
  back-to-back  nccl-tests' way: `iters` calls issued without barriers, one clock around all of
                them; the single sample is the mean per call (pipelined launches included).
Clocks: the host's perf_counter for host backends (gloo, MPI on numpy buffers); CUDA events
recorded on the backend's stream for device backends (NCCL, CuPy), which expose
`new_event()` and `elapsed_s(start, end)`; `synchronize` is the device sync (a no-op on CPU).
The per-iteration time across ranks is the maximum over ranks (the slowest rank ends the call).
"""

from __future__ import annotations

import time

import numpy as np

from commbench import CommbenchError

TIMING_MODES = ("blocking", "back-to-back")


def time_calls(op, backend, iters: int, warmup: int, timing: str = "blocking") -> np.ndarray:
    """Run `op()` warmup + iters times; return the per-iteration seconds, max over ranks."""
    if timing not in TIMING_MODES:
        raise CommbenchError(f"unknown timing mode {timing!r}; valid: {', '.join(TIMING_MODES)}")
    for _ in range(warmup):
        op()
    backend.synchronize()
    barrier, clock = backend.barrier, time.perf_counter
    events = getattr(backend, "new_event", None)
    if timing == "back-to-back":
        barrier()
        if events:
            start, end = events(), events()
            start.record()
            for _ in range(iters):
                op()
            end.record()
            backend.synchronize()
            samples = np.array([backend.elapsed_s(start, end) / iters])
        else:
            t0 = clock()
            for _ in range(iters):
                op()
            backend.synchronize()
            samples = np.array([(clock() - t0) / iters])
        return backend.max_over_ranks(samples)
    if events:
        marks = [(events(), events()) for _ in range(iters)]
        for start, end in marks:
            barrier()
            start.record()
            op()
            end.record()
        backend.synchronize()
        samples = np.array([backend.elapsed_s(start, end) for start, end in marks])
        return backend.max_over_ranks(samples)
    samples = np.empty(iters)
    if backend.needs_sync:
        sync = backend.synchronize
        for i in range(iters):
            barrier()
            start = clock()
            op()
            sync()
            samples[i] = clock() - start
    else:  # host backends: a returned call is a finished call, nothing else in the timed region
        for i in range(iters):
            barrier()
            start = clock()
            op()
            samples[i] = clock() - start
    return backend.max_over_ranks(samples)
