"""Fabric models fitted from measurements: a weighted least-squares line t = alpha + S / beta per
collective (fit_alpha_beta, with 95% confidence intervals), split in two where a protocol switch
bends it (fit_piecewise), turned into busbw = beta x f(n) so one fit prices every collective
(fit_sweep); a replay table's in-step cost per call (fit_replay); the checks a measured table
must pass first (check_sweep_table, refuse_wrong).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from commbench import CommbenchError, lazy_module

pd = lazy_module("pandas")  # imported on first use
from commbench.collectives import get_collective
from commbench.fabric.model import FabricModel, Segment


@dataclass(frozen=True)
class LineFit:
    alpha_s: float
    beta_Bps: float  # 1 / slope: bytes per second of S (algbw units)
    alpha_ci_s: tuple[float, float]
    beta_ci_Bps: tuple[float, float]
    rss: float
    points: int  # distinct sizes fitted
    sizes_bytes: tuple[float, float] = (math.nan, math.nan)  # smallest and largest S fitted


def fit_alpha_beta(msg_bytes, time_s) -> LineFit:
    """Least squares t = alpha + S / beta with 95% confidence intervals (t distribution, n-2 dof).

    Points are weighted by 1/t so a 64 MiB point does not drown the 8 B ones (relative error).
    The CI on beta is the CI on the slope 1/beta, inverted (slope interval endpoints swap).
    S is scaled to its largest value before solving, so sizes of GB do not make the normal matrix
    singular (which gave alpha a zero-width interval). Fewer than 3 distinct sizes leave no degree
    of freedom: the line goes through the points and both intervals are unbounded.
    """
    from scipy import stats

    S = np.asarray(msg_bytes, dtype=float)
    t = np.asarray(time_s, dtype=float)
    distinct = len(np.unique(S))
    if len(S) < 2 or distinct < 2:
        raise CommbenchError(f"a fit needs at least 2 distinct sizes, got {distinct}")
    sizes = (float(S.min()), float(S.max()))
    scale = sizes[1]
    w = 1.0 / t
    A = np.c_[np.ones_like(S), S / scale] * w[:, None]
    coef, *_ = np.linalg.lstsq(A, t * w, rcond=None)
    a, slope = float(coef[0]), max(float(coef[1]) / scale, 1e-30)
    if distinct < 3:  # a line through two sizes: exact, nothing to bound alpha or beta with
        return LineFit(a, 1 / slope, (-math.inf, math.inf), (0.0, math.inf), 0.0, distinct, sizes)
    resid = t * w - A @ coef
    dof = len(S) - 2
    rss = float(resid @ resid)
    cov = rss / dof * np.linalg.inv(A.T @ A)
    q = stats.t.ppf(0.975, dof)
    da, ds = q * math.sqrt(max(cov[0, 0], 0.0)), q * math.sqrt(max(cov[1, 1], 0.0)) / scale
    beta_ci = (1 / (slope + ds), 1 / (slope - ds) if slope - ds > 0 else math.inf)
    return LineFit(a, 1 / slope, (a - da, a + da), beta_ci, rss, distinct, sizes)


def fit_piecewise(msg_bytes, time_s, min_points: int = 3) -> list[tuple[float, LineFit]]:
    """One line, or two split at the break that lowers the residual the most (a protocol switch).

    A split is kept only if it reduces the weighted residual by more than half (a clear kink) and
    one line misses by more than ~1% RMS;
    returns [(up_to_bytes, fit), ...].
    """
    S = np.asarray(msg_bytes, dtype=float)
    t = np.asarray(time_s, dtype=float)
    order = np.argsort(S)
    S, t = S[order], t[order]
    whole = fit_alpha_beta(S, t)
    if len(S) < 2 * min_points:
        return [(math.inf, whole)]
    best = None
    for k in range(min_points, len(S) - min_points + 1):
        left, right = fit_alpha_beta(S[:k], t[:k]), fit_alpha_beta(S[k:], t[k:])
        if best is None or left.rss + right.rss < best[0]:
            best = (left.rss + right.rss, k, left, right)
    # relative residuals (weights 1/t): a line already within ~1% RMS needs no split
    if best is not None and best[0] < 0.5 * whole.rss and whole.rss / len(S) > 1e-4:
        _, k, left, right = best
        return [(float(S[k - 1]), left), (math.inf, right)]
    return [(math.inf, whole)]


def fit_replay(frame: pd.DataFrame, name: str = "replayed") -> FabricModel:
    """A FabricModel from a replay table (commbench trace --replay --out): the in-step cost per call.

    Each site row gives one point per collective: (S, measured time in the step / calls). These
    are the model's own message sizes measured in engine order, so back-to-back effects are in.
    """
    rows = frame[frame.site != "step"]
    n = int(rows["group_size"].iloc[0]) if "group_size" in rows else 2
    points = rows.assign(time_us_p50=rows.measured_us_per_step / rows.calls, ranks=n)
    points = points.groupby(["collective", "msg_bytes"], as_index=False).agg(time_us_p50=("time_us_p50", "median"),
                                                                           ranks=("ranks", "first"))
    model = fit_sweep(points, name)
    return FabricModel(name, f"fitted from a replay of {', '.join(model.per_collective)} in engine order",
                       model.segments, source="replay", per_collective=model.per_collective)


SWEEP_COLUMNS = ("collective", "msg_bytes", "ranks", "time_us_p50")
"""The columns a sweep table needs (commbench sweep --out writes them; nccl-tests' S and time)."""


def refuse_wrong(frame: pd.DataFrame, name: str) -> None:
    """A one-line refusal of a measured table whose correctness check failed (any wrong > 0): its times
    are those of a transfer that delivered wrong data. --allow-wrong (fabric fit, fabric validate
    --sweep, predict --fabric) takes it anyway."""
    if "wrong" not in frame.columns:
        return
    wrong = pd.to_numeric(frame["wrong"], errors="coerce").fillna(0)
    if (wrong > 0).any():
        sizes = frame["msg_bytes"][wrong > 0] if "msg_bytes" in frame.columns else []
        where = f" (msg_bytes {', '.join(f'{int(s):,}' for s in list(sizes)[:5])}{' ...' if len(sizes) > 5 else ''})" \
            if len(sizes) else ""
        raise CommbenchError(f"{name}: {int((wrong > 0).sum())} of {len(frame)} rows have wrong values (wrong > 0){where}: "
                             "their times measure a transfer that delivered wrong data; pass --allow-wrong to use them anyway")


def check_sweep_table(frame: pd.DataFrame, name: str = "sweep table") -> pd.DataFrame:
    """The table with numeric, finite, positive msg_bytes, ranks and time_us_p50 (and time_us_min
    when present), and busbw_gbps derived where it is missing; else a one-line error naming the
    column and the first bad value. A table saved from a run that ended early is accepted: the
    caller reads `complete` in its metadata and says so. A table with both placements keeps its
    out-of-place rows."""
    missing = [c for c in SWEEP_COLUMNS if c not in frame.columns]
    if missing:
        raise CommbenchError(f"{name} lacks columns {', '.join(missing)}; a sweep needs {', '.join(SWEEP_COLUMNS)} "
                             "(commbench sweep --out writes them)")
    if frame.empty:
        raise CommbenchError(f"{name} has no rows")
    frame = frame.copy()
    if "placement" in frame.columns and frame["placement"].nunique() > 1:
        # a sweep with both placements: fit the out-of-place rows, the figure nccl-tests leads with
        frame = frame[frame["placement"] == "out_of_place"].reset_index(drop=True)
    for col in ("msg_bytes", "ranks", "time_us_p50", "time_us_min"):
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = ~((values > 0) & np.isfinite(values))
        if bad.any():
            bad_value = frame[col][bad].iloc[0]
            raise CommbenchError(f"{name}: {col} = {bad_value.item() if hasattr(bad_value, 'item') else bad_value!r} "
                                 "must be a positive finite number")
        frame[col] = values
    for coll in frame["collective"].unique():
        get_collective(str(coll))  # a one-line error naming the valid collectives
    if "busbw_gbps" not in frame.columns:
        frame["busbw_gbps"] = [get_collective(c).busbw_gbps(s, t * 1e-6, int(n)) for c, s, t, n in
                               zip(frame.collective, frame.msg_bytes, frame.time_us_p50, frame.ranks)]
    return frame


def fit_sweep(frame: pd.DataFrame, name: str = "fitted") -> FabricModel:
    """A FabricModel from a sweep table (columns collective, msg_bytes, ranks, time_us_p50).

    Each collective's line t = alpha + S / beta is turned into busbw = beta * f(n) so the
    model prices other collectives too; the all_reduce fit (else the first) is the default.
    """
    frame = check_sweep_table(frame)
    per_collective = {}
    for coll, rows in frame.groupby("collective", sort=False):
        if len(rows["msg_bytes"].unique()) < 2:
            continue  # one size cannot separate latency from bandwidth
        n = int(rows["ranks"].iloc[0])
        factor = get_collective(coll).busbw_factor(n)
        segments = []
        for up_to, fit in fit_piecewise(rows["msg_bytes"], rows["time_us_p50"] * 1e-6):
            segments.append(Segment(up_to, max(fit.alpha_s, 0.0), fit.beta_Bps * factor,
                                    fit.alpha_ci_s, tuple(b * factor for b in fit.beta_ci_Bps),
                                    fit.points, fit.sizes_bytes))
        per_collective[coll] = tuple(segments)
    if not per_collective:
        raise CommbenchError("no collective in the table has two or more sizes to fit")
    default = per_collective.get("all_reduce") or next(iter(per_collective.values()))
    return FabricModel(name, f"fitted from a sweep of {', '.join(per_collective)}", default,
                       source="fit", per_collective=per_collective)
