"""The one timing loop: warm-up, timed iterations, raw per-iteration samples, cross-rank aggregation.

Modes:
  blocking      (default) each sample is one call between a barrier and its completion, so a sample
                is the time of that collective alone;
  back-to-back  nccl-tests' way: `iters` calls issued without barriers, one clock around all of
                them; the single sample is the mean per call (pipelined launches included).
  c-loop        back-to-back with the loop itself in C (the mpi backend's mpi_loop.c, the call's
                `.c_loop(iters)`): no Python between calls, so the harness floor drops to the
                library's own per-call cost.
  cuda-graph    nccl-tests' -G: the calls captured once in a CUDA graph, each sample one timed
                replay over the calls it holds (commbench.measure.cuda_graph; nccl and cupy only).
Clocks: the host's perf_counter for host backends (gloo, MPI on numpy buffers); CUDA events
recorded on the backend's stream for device backends (NCCL, CuPy: `events` true, then `new_event()`
and `elapsed_s(start, end)`; backends.Clock declares them); `synchronize` is the device sync (a no-op on CPU).
The per-iteration time across ranks is the maximum over ranks (the slowest rank ends the call).
"""

from __future__ import annotations

import time

import numpy as np

from commbench import CommbenchError
from commbench.measure.cuda_graph import time_replays

TIMING_MODES = ("blocking", "back-to-back", "c-loop", "cuda-graph")

TARGET_CI = 0.03
"""Adaptive sampling stops once the 95% confidence interval of the p50 is within +-TARGET_CI of it
(pyperf-style), unitless; `--target-ci` overrides it."""
BUDGET_S = 1.0
"""...or once this much time has been measured for the size (the sum of its samples), seconds."""
BLOCK = 10
"""Iterations per block; ranks agree on stopping from the same per-iteration maxima after each block."""
MAX_SAMPLES = 2000
C_LOOP_BLOCK_S = 2e-3
"""c-loop: calls per sample chosen so one sample spans about this long (seconds), at least BLOCK and at
most C_LOOP_MAX_CALLS: a scheduler tick (~4 ms here) landing in a sample of 10 sub-microsecond calls
would be the sample; spread over a 2 ms block it is one slow sample among many."""
C_LOOP_MAX_CALLS = 100_000
SLOW_FACTOR = 2.0
"""A sample more than SLOW_FACTOR x the fastest quartile counts in the slow mode (a scheduler tick,
a thread hand-off); between 10% and 90% of the samples there is a bimodal size."""


def median_ci(samples: np.ndarray) -> tuple[float, float]:
    """95% confidence interval of the median from order statistics (binomial, normal approximation):
    the sorted samples at ranks n/2 -+ 1.96 sqrt(n)/2."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    half = 1.96 * np.sqrt(n) / 2
    lo, hi = int(np.floor(n / 2 - half)), int(np.ceil(n / 2 + half)) - 1
    return float(x[max(lo, 0)]), float(x[min(hi, n - 1)])


def time_adaptive(op, backend, warmup: int, timing: str = "blocking", target_ci: float = TARGET_CI,
                  budget_s: float = BUDGET_S) -> np.ndarray:
    """Blocks of BLOCK timed iterations (time_calls) until the p50's 95% CI is within +-target_ci of
    it, `budget_s` of samples were measured, or MAX_SAMPLES. Every rank sees the same per-iteration
    maxima, so every rank stops after the same block. back-to-back timing gives one sample per block."""
    samples = time_calls(op, backend, BLOCK, warmup, timing)
    per_block = timing in ("back-to-back", "c-loop")  # one sample (a mean) per block of BLOCK calls
    while True:
        if len(samples) >= 2 * BLOCK or (per_block and len(samples) >= 5):
            lo, hi = median_ci(samples)
            if (hi - lo) / 2 <= target_ci * float(np.median(samples)):
                return samples
        calls_per_sample = getattr(op, "calls_per_sample", BLOCK if per_block else 1)  # cuda-graph: calls per replay
        if samples.sum() * calls_per_sample >= budget_s or len(samples) >= MAX_SAMPLES:
            return samples
        samples = np.concatenate([samples, time_calls(op, backend, BLOCK, 0, timing)])


def sample_stats(samples: np.ndarray) -> dict:
    """The figures a row reports beside its p50: sample count, the p50's CI, the slow-mode share,
    a bimodal flag and, when bimodal, each mode's median (microseconds)."""
    x = np.asarray(samples, dtype=float)
    lo, hi = median_ci(x)
    slow = x > SLOW_FACTOR * np.percentile(x, 25)
    share = float(slow.mean())
    bimodal = 0.1 <= share <= 0.9
    return {"samples": len(x), "p50_ci_lo_us": lo * 1e6, "p50_ci_hi_us": hi * 1e6, "slow_mode_share": share,
            "bimodal": bimodal, "fast_mode_us": float(np.median(x[~slow])) * 1e6 if bimodal else None,
            "slow_mode_us": float(np.median(x[slow])) * 1e6 if bimodal else None}


def time_calls(op, backend, iters: int, warmup: int, timing: str = "blocking") -> np.ndarray:
    """Run `op()` warmup + iters times; return the per-iteration seconds, max over ranks."""
    # long: one timed region per mode, side by side, so what each mode puts inside its clock can be compared
    if timing not in TIMING_MODES:
        raise CommbenchError(f"unknown timing mode {timing!r}; valid: {', '.join(TIMING_MODES)}")
    for _ in range(warmup):
        op()
    backend.synchronize()
    if timing == "cuda-graph":
        return time_replays(op, backend, iters)
    barrier, clock = backend.barrier, time.perf_counter
    events = backend.new_event if backend.events else None
    if timing == "c-loop":
        loop = getattr(op, "c_loop", None)
        if loop is None:
            raise CommbenchError("--timing c-loop runs the mpi backend's all_reduce, all_gather and reduce_scatter")
        if not hasattr(op, "calls_per_sample"):  # a pilot block sizes the samples; every rank agrees (max)
            pilot = float(backend.max_over_ranks(np.array([loop(iters)]))[0])
            op.calls_per_sample = int(min(C_LOOP_MAX_CALLS, max(iters, C_LOOP_BLOCK_S / max(pilot, 1e-9))))
        return backend.max_over_ranks(np.array([loop(op.calls_per_sample)]))
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


FLOOR_CALLS = 200
"""Calls timed (after as many warm-up calls) for each part of the harness floor."""
NEAR_FLOOR = 2.0
"""A size whose p50 is within NEAR_FLOOR x the floor measures the harness as much as the transfer."""


def harness_floor(backend, timing: str = "blocking") -> dict:
    """What a timed call costs with nothing to move, measured on this rank at the start of a sweep:

        timer_us  one perf_counter() pair (the clock the host backends read)
        call_us   a 1-element all-reduce on a one-rank communicator (backend.self_group(): the
                  library's own per-call cost, no peer, no wire); None where the backend has none
        floor_us  timer_us + call_us: the smallest time a row could read

    The p50 of FLOOR_CALLS calls, the max over ranks (the slowest rank's floor bounds the row).
    With timing c-loop the calls run inside the C loop and the clock is read once per loop, so
    the floor is the loop's mean per call and the timer's share is nil."""
    clock = time.perf_counter
    ticks = np.empty(FLOOR_CALLS)
    for i in range(FLOOR_CALLS):
        t0 = clock()
        ticks[i] = clock() - t0
    timer = float(np.median(ticks))
    call = float("nan")
    group = backend.self_group()
    if timing == "c-loop" and group is not None and group.c_loop is not None:
        timer = 0.0
        call = float(np.median([group.c_loop(FLOOR_CALLS) for _ in range(10)]))
    elif group is not None:
        op = group.all_reduce
        for _ in range(FLOOR_CALLS):
            op()
        samples = np.empty(FLOOR_CALLS)
        for i in range(FLOOR_CALLS):
            t0 = clock()
            op()
            samples[i] = clock() - t0
        call = float(np.median(samples))
    timer, call = backend.max_over_ranks(np.array([timer, call]))
    call_us = None if np.isnan(call) else float(call) * 1e6
    return {"timer_us": float(timer) * 1e6, "call_us": call_us, "floor_us": float(timer) * 1e6 + (call_us or 0.0)}
