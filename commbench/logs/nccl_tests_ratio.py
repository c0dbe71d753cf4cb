"""What busbw / algbw says about a nccl-tests run whose log does not name its collective.

nccl-tests prints busbw = algbw x a factor of the rank count n that depends only on the collective
(github.com/NVIDIA/nccl-tests, `src/*.cu`, each test's `GetBw`; explained in `doc/PERFORMANCE.md`):
- all_reduce: 2(n-1)/n;
- all_gather, reduce_scatter, alltoall, alltoallv, gather, scatter: (n-1)/n;
- broadcast, reduce, sendrecv, hypercube: 1.
For n > 2, 2(n-1)/n >= 4/3 belongs to all_reduce alone, so a run whose every row (algbw >= 1 GB/s,
where the two printed decimals pin the ratio within 1%) has busbw = algbw x 2(n-1)/n is all_reduce.
Of the (n-1)/n family only reduce_scatter applies a reduction: its rows carry the op (`sum`, `max`
...), while all_gather, alltoall, gather and scatter print `none` (2.13+) or no op (before); among
the collectives with an op (all_reduce, reduce_scatter, reduce) only reduce_scatter has (n-1)/n.
So a run with a real op on every row and busbw = algbw x (n-1)/n is reduce_scatter. Nothing else is
identified: (n-1)/n without an op, factor 1, n <= 2, or rows below 1 GB/s are left to --collective.
"""

from __future__ import annotations

import math

REDUCTIONS = {"sum", "prod", "max", "min", "avg", "mulsum", "premulsum"}
MIN_ALGBW_GBPS = 1.0  # below it the printed two decimals leave the ratio uncertain by more than 1%


def _fits(pairs: list[tuple[float, float]], factor: float) -> bool:
    """Every (algbw, busbw) as printed (rounded to 0.01) agrees with busbw = algbw x factor."""
    tol = 0.0051 * (1 + factor)
    return all(abs(bus - alg * factor) <= tol for alg, bus in pairs)


def fits(pairs: list[tuple[float, float]], factor: float) -> bool:
    """The rows of at least MIN_ALGBW_GBPS agree with busbw = algbw x factor (True where none is that fast)."""
    return _fits([(alg, bus) for alg, bus in pairs if MIN_ALGBW_GBPS <= alg < math.inf and math.isfinite(bus)], factor)


def identify(pairs: list[tuple[float, float]], redops: set[str], ranks: int | None) -> tuple[str, str] | None:
    """(nccl-tests collective, how it was inferred) where busbw/algbw and the op pin it down, else None."""
    pairs = [(alg, bus) for alg, bus in pairs if MIN_ALGBW_GBPS <= alg < math.inf and math.isfinite(bus)]
    if not ranks or ranks <= 2 or not pairs:
        return None
    alg, bus = max(pairs)
    ratio = f"busbw/algbw = {bus / alg:.3f}"
    if _fits(pairs, 2 * (ranks - 1) / ranks):
        return "all_reduce", (f"inferred from {ratio} = 2(n-1)/n at n = {ranks}: among nccl-tests' collectives "
                              "only all_reduce has that factor")
    if redops and redops <= REDUCTIONS and _fits(pairs, (ranks - 1) / ranks):
        return "reduce_scatter", (f"inferred from {ratio} = (n-1)/n at n = {ranks} with redop "
                                  f"{'/'.join(sorted(redops))}: among nccl-tests' collectives with a reduction op only "
                                  "reduce_scatter has that factor")
    return None


def pairs(rows: list[list[str]], layout) -> list[tuple[float, float]]:
    """(algbw, busbw) of each row's out-of-place figures as printed; `layout(n_tokens)` is the text
    reader's (has root, names of one placement's figures) or None."""
    out = []
    for tokens in rows:
        found = layout(len(tokens))
        if found and len(tokens) >= len(found[1]) * 2 + found[0]:
            vals = tokens[found[0]:]
            try:
                out.append((float(vals[1]), float(vals[2])))
            except ValueError:
                pass
    return out


def hint(pairs: list[tuple[float, float]], implied_all_reduce: int | None, redops: set[str] = frozenset()) -> str:
    """What busbw/algbw says about the collective's family, for a refusal."""
    pairs = [(alg, bus) for alg, bus in pairs if math.isfinite(alg) and math.isfinite(bus)]
    if not pairs:
        return ""
    alg, bus = max(pairs)
    if alg < MIN_ALGBW_GBPS:
        return ""
    ratio = bus / alg
    if ratio > 1.01:
        at = f" at {implied_all_reduce} ranks" if implied_all_reduce else ""
        return f" (busbw/algbw = {ratio:.3f} fits all_reduce{at})"
    if ratio < 0.99:
        which = "all_gather or alltoall (no reduction op: not reduce_scatter)" if redops and not redops & REDUCTIONS \
            else "all_gather, reduce_scatter or alltoall"
        return f" (busbw/algbw = {ratio:.3f}: {which})"
    return " (busbw = algbw: broadcast, sendrecv, or 2 ranks)"
