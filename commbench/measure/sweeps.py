"""nccl-tests-style size sweeps on a backend, with a correctness pass.

Buffers hold the sweep's datatype (-d, float32 by default); each collective's buffers, known inputs
and expected results are its spec's (commbench.measure.collective_specs), so `wrong` counts the
elements that differ on every rank (summed). Reducing and gathering collectives run in place, out
of place or both, as the backend allows (nccl-tests prints both); each is its own row (`placement`).
Columns follow nccl-tests: msg_bytes (S), count, type, redop, time_us (= time_us_p50; with
p50/min/max/p99 of the per-iteration max over ranks), algbw_gbps = S / t, busbw_gbps = algbw *
factor(n) from commbench.collectives. floor_us is the harness's own cost per call measured at the
start (commbench.measure.timing.harness_floor); near_floor marks rows within 2x of it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from commbench import CommbenchError
from commbench.dtypes import ELEMENT_BYTES
from commbench.measure.backends import CAPABILITIES, DTYPE_BYTES, REDUCE_OPS, Backend, check_backend, check_datatype
from commbench.measure.collective_specs import SPECS, prepared
from commbench.measure.timing import NEAR_FLOOR, TARGET_CI, harness_floor, sample_stats, time_adaptive, time_calls

SWEEP_COLLECTIVES = tuple(SPECS)
TYPESIZE = ELEMENT_BYTES["float32"]  # the default datatype
MAX_SWEEP_SIZES = 10_000
"""Most sizes one sweep takes: at up to a second of samples each (timing.BUDGET_S), 10,000 sizes is
about three hours already."""
REDUCING = tuple(name for name, spec in SPECS.items() if spec.reduces)
SWEEP_PEERS = {"broadcast": 0, "send_recv": (0, 1)}
"""A sweep's broadcast is from rank 0; its one-way send from rank 0 to rank 1 (PP traffic)."""


def sizes_between(min_bytes: int, max_bytes: int, factor: float = 2.0) -> list[int]:
    """Sizes from min_bytes to max_bytes, each `factor` times the last (nccl-tests -f), rounded down
    to whole float32 elements; factor 2 gives the powers of two."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise CommbenchError(f"need 0 < min-bytes <= max-bytes, got {min_bytes} and {max_bytes}")
    if not factor > 1:
        raise CommbenchError(f"the size step factor must be above 1, got {factor:g}")
    if max_bytes < TYPESIZE:
        raise CommbenchError(f"-b {min_bytes} -e {max_bytes} holds no whole float32 element ({TYPESIZE} B): -e must be "
                             f"at least {TYPESIZE}")
    steps = math.floor(math.log(max_bytes / max(TYPESIZE, min_bytes)) / math.log(factor)) + 1 if factor != math.inf else 1
    if steps > MAX_SWEEP_SIZES:
        raise CommbenchError(f"-f {factor} from {min_bytes:,} to {max_bytes:,} B is {steps:,} steps; a sweep takes at "
                             f"most {MAX_SWEEP_SIZES:,} (a size per step, each measured for up to a second): use a larger -f")
    sizes, s = [], float(max(TYPESIZE, min_bytes))
    while s <= max_bytes:
        size = int(s) - int(s) % TYPESIZE
        if not sizes or size > sizes[-1]:
            sizes.append(size)
        s *= factor
    return sizes


def check_sweep_choices(collective: str, backend: str = "gloo", dtype: str = "float32", op: str = "sum",
                        placement: str = "both") -> tuple[str, ...]:
    """The placements to run; a one-line error naming a bad collective, backend, datatype, op or
    placement and the valid choices (for this backend)."""
    if collective not in SWEEP_COLLECTIVES:
        raise CommbenchError(f"unknown sweep collective {collective!r}; valid: {', '.join(SWEEP_COLLECTIVES)}")
    check_backend(backend)
    caps = CAPABILITIES[backend]
    check_datatype(dtype, backend)
    if op not in REDUCE_OPS:
        raise CommbenchError(f"unknown reduction op {op!r}; valid: {', '.join(REDUCE_OPS)}")
    if op not in caps["ops"]:
        raise CommbenchError(f"the {backend} backend has no {op!r} reduction; valid: {', '.join(caps['ops'])}")
    if op != "sum" and collective not in REDUCING:
        raise CommbenchError(f"-o {op} applies to {' and '.join(REDUCING)}; {collective} reduces nothing")
    offered = SPECS[collective].placements[backend]
    if placement == "both":
        return offered
    if placement not in offered:
        if set(SPECS[collective].placements.values()) == {offered}:  # one placement by nature, on every backend
            placed = [name for name, spec in SPECS.items() if len(set(spec.placements.values())) > 1]
            raise CommbenchError(f"--{placement.replace('_', '-')} applies to {', '.join(placed)}")
        raise CommbenchError(f"{collective} on {backend} runs {' and '.join(p.replace('_', '-') for p in offered)} "
                             f"only; --{placement.replace('_', '-')} is not available")
    return (placement,)


def run_sweep(backend: Backend, collective: str, sizes: list[int], iters: int | None, warmup: int,
              timing: str = "blocking", on_row=None, target_ci: float = TARGET_CI, dtype: str = "float32",
              op: str = "sum", placement: str = "both") -> pd.DataFrame:
    """One row per size and placement (see the module docstring); `on_row(row)` is called as each
    row finishes.

    iters None: adaptive sampling (commbench.measure.timing.time_adaptive, to +-target_ci on the p50);
    a number: exactly that many timed iterations."""
    placements = check_sweep_choices(collective, backend.name if backend.name in CAPABILITIES else "gloo", dtype, op,
                                     placement)
    spec = SPECS[collective]
    coll = spec.collective
    n = backend.world_size
    typesize = DTYPE_BYTES[dtype]
    if timing == "c-loop":
        backend.enable_c_loop()  # the mpi backend's compiled loop; its bound() calls carry .c_loop
    floor = harness_floor(backend, timing)
    rows = []
    for requested_bytes, where in ((s, p) for s in sizes for p in placements):
        per_rank = requested_bytes // typesize // (n if coll.gathers else 1)
        if per_rank == 0:
            continue
        call, verify = prepared(backend, backend.bound, spec, per_rank, n, backend.rank, dtype, op,
                                where == "in_place", SWEEP_PEERS.get(collective))
        samples = time_calls(call, backend, iters, warmup, timing) if iters else \
            time_adaptive(call, backend, warmup, timing, target_ci)
        wrong = backend.sum_over_ranks(verify())  # every rank's check, not rank 0's
        t = float(np.median(samples))
        S = coll.msg_bytes(per_rank, typesize, n)
        rows.append({
            "collective": collective, "msg_bytes": S, "count": S // typesize, "type": dtype,
            "redop": op if collective in REDUCING else "none", "placement": where, "ranks": n,
            "time_us": t * 1e6,  # the time algbw and busbw derive from: the p50 of the samples
            "time_us_p50": t * 1e6, "time_us_min": samples.min() * 1e6, "time_us_max": samples.max() * 1e6,
            "time_us_p99": float(np.percentile(samples, 99)) * 1e6,
            "algbw_gbps": coll.algbw_gbps(S, t), "busbw_gbps": coll.busbw_gbps(S, t, n), "wrong": wrong,
            **sample_stats(samples),
            # the harness floor (timing.harness_floor): a p50 within NEAR_FLOOR x of it is mostly harness
            "floor_us": floor["floor_us"], "near_floor": t * 1e6 < NEAR_FLOOR * floor["floor_us"],
            "floor_timer_us": floor["timer_us"], "floor_call_us": floor["call_us"],
            "samples_us": [round(float(x) * 1e6, 2) for x in samples],
        })
        if on_row is not None:
            on_row(rows[-1])
    return pd.DataFrame(rows)


def sweep_job(spec):
    """The picklable job every rank runs for a commbench.measure.SweepSpec: (backend, on_row) -> the table."""
    return functools.partial(_sweep_job, spec)


def _sweep_job(spec, backend, on_row):
    return run_sweep(backend, spec.collective, list(spec.sizes), spec.iters, spec.warmup, spec.timing, on_row,
                     spec.target_ci, spec.dtype, spec.op, spec.placement)
