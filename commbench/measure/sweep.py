"""nccl-tests-style size sweeps on a backend, with a correctness pass.

Buffers hold float32. Rank r fills its input with (r + 1); an all-reduce must then hold
n(n+1)/2 everywhere, an all-gather's slot r must hold r + 1, a one-way send must deliver 1.0.
`wrong` counts elements that differ. Columns follow nccl-tests: msg_bytes (S), count, type,
time_us (= time_us_p50; with p50/min/max/p99 of the per-iteration max over ranks), algbw_gbps = S / t,
busbw_gbps = algbw * factor(n) from commbench.collectives.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from commbench import CommbenchError
from commbench.collectives import get_collective
from commbench.measure.backends import Backend, check_backend
from commbench.measure.timing import TARGET_CI, sample_stats, time_adaptive, time_calls

SWEEP_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv",
                     "send_recv_bidir")
TYPESIZE = 4  # float32


def sizes_between(min_bytes: int, max_bytes: int, factor: float = 2.0) -> list[int]:
    """Sizes from min_bytes to max_bytes, each `factor` times the last (nccl-tests -f), rounded down
    to whole float32 elements; factor 2 gives the powers of two."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise CommbenchError(f"need 0 < min-bytes <= max-bytes, got {min_bytes} and {max_bytes}")
    if not factor > 1:
        raise CommbenchError(f"the size step factor must be above 1, got {factor:g}")
    sizes, s = [], float(max(TYPESIZE, min_bytes))
    while s <= max_bytes:
        size = int(s) - int(s) % TYPESIZE
        if not sizes or size > sizes[-1]:
            sizes.append(size)
        s *= factor
    return sizes


def check_sweep_choices(collective: str, backend: str = "gloo") -> None:
    """Raise a one-line error naming a bad collective or backend and the valid choices."""
    if collective not in SWEEP_COLLECTIVES:
        raise CommbenchError(f"unknown sweep collective {collective!r}; valid: {', '.join(SWEEP_COLLECTIVES)}")
    check_backend(backend)


def _collective_calls(backend, collective: str, per_rank: int):
    """(timed op, verified call returning the error array) for one message size.

    Rank r's input holds r + 1 (deterministic data, as nccl-tests). Expected results:
    all_reduce and reduce_scatter n(n+1)/2; all_gather and all_to_all slot j = j + 1; broadcast
    from rank 0 and one-way send 1.0; bidirectional ring shift: the left neighbour's value.
    The timed op runs on buffers left as they are (a sum of zeros stays finite however many
    iterations run); the correctness pass refills the inputs and checks one call.
    """
    # long: one short branch per collective (buffers, the timed op, its check), read side by side
    n, r = backend.world_size, backend.rank
    if collective == "all_reduce":
        buf = backend.buffer(per_rank, 0.0)

        def verify():
            backend.fill(buf, r + 1)
            backend.all_reduce(buf)
            return backend.to_numpy(buf) - n * (n + 1) / 2

        return functools.partial(backend.all_reduce, buf), verify
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        inp_len, out_len = {"all_gather": (per_rank, per_rank * n), "reduce_scatter": (per_rank * n, per_rank),
                            "all_to_all": (per_rank * n, per_rank * n)}[collective]
        inp, out = backend.buffer(inp_len, r + 1), backend.buffer(out_len, 0)
        op = functools.partial(getattr(backend, collective), out, inp)
        # slot j of a gathered buffer holds j + 1 (float32, as the buffers: no int64 copy of the message)
        expected = n * (n + 1) / 2 if collective == "reduce_scatter" else \
            np.repeat(np.arange(1, n + 1, dtype=np.float32), per_rank)

        def verify():
            backend.fill(inp, r + 1)
            op()
            return backend.to_numpy(out) - expected

        return op, verify
    if collective == "broadcast":
        buf = backend.buffer(per_rank, 1.0 if r == 0 else 0.0)

        def verify():
            backend.fill(buf, 1.0 if r == 0 else 0.0)
            backend.broadcast(buf, 0)
            return backend.to_numpy(buf) - 1.0

        return functools.partial(backend.broadcast, buf, 0), verify
    if collective == "send_recv_bidir":
        inp, out = backend.buffer(per_rank, r + 1), backend.buffer(per_rank, 0)
        op = functools.partial(backend.send_recv_bidir, out, inp)

        def verify():
            op()
            return backend.to_numpy(out) - ((r - 1) % n + 1)

        return op, verify
    buf = backend.buffer(per_rank, 1.0 if r == 0 else 0.0)
    op = functools.partial(backend.send_recv, buf, 0, 1)

    def verify():
        backend.fill(buf, 1.0 if r == 0 else 0.0)
        op()
        return backend.to_numpy(buf) - 1.0 if r in (0, 1) else np.zeros(1)

    return op, verify


def run_sweep(backend: Backend, collective: str, sizes: list[int], iters: int | None, warmup: int,
              timing: str = "blocking", on_row=None, target_ci: float = TARGET_CI) -> pd.DataFrame:
    """One row per size (see the module docstring); `on_row(row)` is called as each size finishes.

    iters None: adaptive sampling (commbench.measure.timing.time_adaptive, to +-target_ci on the p50);
    a number: exactly that many timed iterations."""
    check_sweep_choices(collective)
    coll = get_collective(collective)
    n = backend.world_size
    rows = []
    for requested_bytes in sizes:
        per_rank = requested_bytes // TYPESIZE // (n if coll.gathers else 1)
        if per_rank == 0:
            continue
        op, verify = _collective_calls(backend, collective, per_rank)
        samples = time_calls(op, backend, iters, warmup, timing) if iters else \
            time_adaptive(op, backend, warmup, timing, target_ci)
        wrong = backend.sum_over_ranks(int(np.count_nonzero(verify())))  # every rank's check, not rank 0's
        t = float(np.median(samples))
        S = coll.msg_bytes(per_rank, TYPESIZE, n)
        rows.append({
            "collective": collective, "msg_bytes": S, "count": S // TYPESIZE, "type": "float32", "ranks": n,
            "time_us": t * 1e6,  # the time algbw and busbw derive from: the p50 of the samples
            "time_us_p50": t * 1e6, "time_us_min": samples.min() * 1e6, "time_us_max": samples.max() * 1e6,
            "time_us_p99": float(np.percentile(samples, 99)) * 1e6,
            "algbw_gbps": coll.algbw_gbps(S, t), "busbw_gbps": coll.busbw_gbps(S, t, n), "wrong": wrong,
            **sample_stats(samples),
            "samples_us": [round(float(x) * 1e6, 2) for x in samples],
        })
        if on_row is not None:
            on_row(rows[-1])
    return pd.DataFrame(rows)


def sweep_job(collective: str, sizes, iters: int | None, warmup: int, timing: str = "blocking",
              target_ci: float = TARGET_CI):
    """A picklable job: backend, on_row -> the sweep table (run by every rank)."""
    return functools.partial(_sweep_job, collective, tuple(sizes), iters, warmup, timing, target_ci)


def _sweep_job(collective, sizes, iters, warmup, timing, target_ci, backend, on_row):
    return run_sweep(backend, collective, list(sizes), iters, warmup, timing, on_row, target_ci)


def sweep_local(collective: str, sizes: list[int], ranks: int = 2, iters: int = 20, warmup: int = 3,
                timeout_s: float = 60.0, timing: str = "blocking", on_row=None) -> pd.DataFrame:
    """The embedded default for a sweep (see commbench.measure.world.run_local)."""
    from commbench.measure.world import run_local

    return run_local(sweep_job(collective, sizes, iters, warmup, timing), ranks, timeout_s, on_row)
