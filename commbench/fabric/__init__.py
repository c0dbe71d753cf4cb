"""Fabric: what a collective costs on a named interconnect, fitted or from a profile.

A fabric model is piecewise latency-bandwidth (alpha-beta, Hockney) per size segment:

    t(S) = alpha_i + S * f(n) / busbw_i        for S <= up_to_bytes_i (first segment that holds S)

with S nccl-tests' message size and f(n) the collective's busbw factor (commbench.collectives),
so one profile prices all_reduce, all_gather and send/recv alike. Segments exist because NCCL
switches protocol (LL -> LL128 -> Simple) with size: small messages pay latency at a low
incremental bandwidth, large ones stream near the link rate.

Profiles live in fabrics/*.toml; `fit_sweep` builds one from a measured sweep (commbench sweep --out).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from commbench import CommbenchError, lazy_module

pd = lazy_module("pandas")  # imported on first use (loading a fabric profile needs no tables)
from commbench.collectives import get_collective
from commbench.data import data_dir, names_in, number, read_toml, unknown_name_error


@dataclass(frozen=True)
class Segment:
    up_to_bytes: float  # inclusive upper bound of S for this segment
    alpha_s: float  # per-call latency, s
    busbw_Bps: float  # incremental bus bandwidth, bytes/s
    alpha_ci_s: tuple[float, float] | None = None  # 95% confidence interval when fitted
    busbw_ci_Bps: tuple[float, float] | None = None
    points: int = 0  # distinct sizes the segment was fitted on (0: a profile, not a fit)
    sizes_bytes: tuple[float, float] | None = None  # smallest and largest S it was fitted on


@dataclass(frozen=True)
class FabricModel:
    name: str
    description: str
    segments: tuple[Segment, ...]
    link: str = ""
    source: str = ""
    per_collective: dict = field(default_factory=dict, hash=False, compare=False)  # name -> tuple[Segment]
    # collective -> (smallest, largest) S priced so far with a fitted model: what fabric.trust checks
    # against the sizes the fit was measured on (commands warn when they price far outside them)
    priced: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    def time_s(self, collective: str, msg_bytes: float, n: int) -> float:
        """Seconds for one call of `collective` with nccl-tests size S = msg_bytes over n ranks."""
        alpha, stream = self.latency_and_bandwidth_s(collective, msg_bytes, n)
        return float(alpha + stream)

    def latency_and_bandwidth_s(self, collective: str, msg_bytes, n: int):
        """time_s split into its two named terms: (alpha, S * f(n) / busbw); S may be an array."""
        segments = self.per_collective.get(collective, self.segments)
        msg = np.asarray(msg_bytes, dtype=float)
        if segments[-1].sizes_bytes is not None:
            self._note_priced(collective, msg)
        bounds = np.array([seg.up_to_bytes for seg in segments])
        idx = np.minimum(np.searchsorted(bounds, msg, side="left"), len(segments) - 1)
        alpha = np.array([seg.alpha_s for seg in segments])[idx]
        busbw = np.array([seg.busbw_Bps for seg in segments])[idx]
        live = msg > 0
        stream = np.where(live, get_collective(collective).wire_bytes(msg, n) / busbw, 0.0)
        alpha = np.where(live, alpha, 0.0)
        if alpha.ndim == 0:
            return float(alpha), float(stream)
        return alpha, stream

    def _note_priced(self, collective: str, msg: np.ndarray) -> None:
        if msg.ndim == 0:  # the common call: one size, kept cheap
            lo = hi = float(msg)
            if not lo > 0:
                return
        else:
            live = msg[msg > 0]
            if not live.size:
                return
            lo, hi = float(live.min()), float(live.max())
        seen = self.priced.get(collective)
        if seen is None:
            self.priced[collective] = (lo, hi)
        elif lo < seen[0] or hi > seen[1]:
            self.priced[collective] = (min(seen[0], lo), max(seen[1], hi))

    def to_frame(self) -> pd.DataFrame:
        """One row per segment; a fitted model adds the sizes each segment was fitted on
        (points, measured_from_bytes, measured_to_bytes) and a note where it is not determined."""
        rows = []
        fitted = any(seg.points for segs in (self.segments, *self.per_collective.values()) for seg in segs)
        for coll, segs in [("any", self.segments), *self.per_collective.items()]:
            lo = 0.0
            for seg in segs:
                row = {"fabric": self.name, "collective": coll, "from_bytes": lo, "up_to_bytes": seg.up_to_bytes,
                       "alpha_us": seg.alpha_s * 1e6, "busbw_gbps": seg.busbw_Bps / 1e9,
                       **_ci_columns("alpha", seg.alpha_ci_s, 1e6, "us"),
                       **_ci_columns("busbw", seg.busbw_ci_Bps, 1e-9, "gbps")}
                if fitted:
                    from commbench.fabric.trust import segment_note

                    sizes = seg.sizes_bytes or (math.nan, math.nan)
                    row.update(points=seg.points, measured_from_bytes=sizes[0], measured_to_bytes=sizes[1],
                               note=segment_note(seg))
                rows.append(row)
                lo = seg.up_to_bytes
        return pd.DataFrame(rows)


CI_COLUMNS = ("alpha_ci_lo_us", "alpha_ci_hi_us", "busbw_ci_lo_gbps", "busbw_ci_hi_gbps")


def _ci_columns(name: str, ci, scale: float, unit: str) -> dict:
    """A 95% interval as two numbers (NaN where none was fitted; an unbounded end stays inf, and
    strict JSON writes it as null)."""
    lo, hi = (math.nan, math.nan) if ci is None else (ci[0] * scale, ci[1] * scale)
    return {f"{name}_ci_lo_{unit}": lo, f"{name}_ci_hi_{unit}": hi}


def shipped_fabrics() -> list[str]:
    return names_in("fabrics", ".toml")


def load_fabric(name_or_path: str, allow_wrong: bool = False) -> FabricModel:
    """A shipped profile name, a fabric .toml, or a measured sweep to fit: a commbench table
    (.csv/.json/.parquet, sweep or replay) or a nccl-tests / OSU log (commbench.importers). A table
    with wrong values (wrong > 0) is refused unless `allow_wrong` (refuse_wrong)."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and name_or_path not in shipped_fabrics() and (path.is_file() or path.suffix in
                                                                             (".csv", ".json", ".parquet")):
        if not path.is_file():
            raise CommbenchError(f"fabric file {name_or_path!r} not found")
        from commbench.importers import read_sweep

        table, _, source = read_sweep(path)
        if not allow_wrong:
            refuse_wrong(table, str(path))
        if "measured_us_per_step" in table.columns:
            return fit_replay(table, name=path.stem)
        model = fit_sweep(check_sweep_table(table, str(path)), name=path.stem)
        return replace(model, source=source)
    if path.suffix != ".toml":
        if name_or_path not in shipped_fabrics():
            raise unknown_name_error("fabric", name_or_path, shipped_fabrics() + ["<sweep.csv>", "<fabric.toml>"])
        path = data_dir("fabrics") / f"{name_or_path}.toml"
    elif not path.is_file():
        raise CommbenchError(f"fabric file {name_or_path!r} not found")
    raw = read_toml(path, "fabric")
    if not isinstance(raw.get("segment"), list) or not raw["segment"]:
        raise CommbenchError(f"fabric file {path}: needs [[segment]] tables with up_to_bytes, alpha_us, busbw_gbps")
    try:
        segments = tuple(
            Segment(number(s["up_to_bytes"], f"fabric file {path}: up_to_bytes"),
                    number(s["alpha_us"], f"fabric file {path}: alpha_us", inclusive=True) * 1e-6,
                    number(s["busbw_gbps"], f"fabric file {path}: busbw_gbps") * 1e9,
                    **_fitted_range(s, path))
            for s in raw["segment"]
        )
    except (KeyError, TypeError) as exc:
        raise CommbenchError(f"fabric file {path}: each [[segment]] needs up_to_bytes, alpha_us, busbw_gbps ({exc})") from None
    if list(segments) != sorted(segments, key=lambda seg: seg.up_to_bytes) or not math.isinf(segments[-1].up_to_bytes):
        raise CommbenchError(f"fabric file {path}: segments must rise in up_to_bytes and the last must be inf")
    return FabricModel(raw.get("name", path.stem), raw.get("description", ""), segments, raw.get("link", ""), str(path))


def _fitted_range(seg: dict, path: Path) -> dict:
    """A fitted profile's segment keeps what it was fitted on (fabric fit --out writes these keys):
    points (distinct sizes) and measured_from_bytes / measured_to_bytes; all three or none."""
    keys = ("points", "measured_from_bytes", "measured_to_bytes")
    if not any(k in seg for k in keys):
        return {}
    if not all(k in seg for k in keys):
        raise CommbenchError(f"fabric file {path}: a [[segment]] with any of {', '.join(keys)} needs all three")
    points = number(seg["points"], f"fabric file {path}: points")
    lo = number(seg["measured_from_bytes"], f"fabric file {path}: measured_from_bytes")
    hi = number(seg["measured_to_bytes"], f"fabric file {path}: measured_to_bytes")
    if points % 1 or hi < lo:
        raise CommbenchError(f"fabric file {path}: points must be whole and measured_from_bytes <= measured_to_bytes")
    return {"points": int(points), "sizes_bytes": (lo, hi)}


# ---- fitting ---------------------------------------------------------------------------------

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


def fabric_toml(model: FabricModel, header: str) -> str:
    """A model as fabrics/*.toml text (the default collective's segments, with CIs where fitted)."""
    # JSON string syntax is TOML basic-string syntax: quotes, backslashes and newlines are escaped
    lines = [f"# {' '.join(header.split())}", f"name = {json.dumps(model.name)}",
             f"description = {json.dumps(model.description)}"]
    lines += [f"link = {json.dumps(model.link)}", ""] if model.link else [""]
    for seg in model.segments:
        up_to = "inf" if math.isinf(seg.up_to_bytes) else f"{seg.up_to_bytes:.0f}"
        lines += ["[[segment]]", f"up_to_bytes = {up_to}", f"alpha_us = {seg.alpha_s * 1e6:.6g}",
                  f"busbw_gbps = {seg.busbw_Bps / 1e9:.6g}"]
        if seg.sizes_bytes is not None:  # what the fit was made on: commands warn when they price far outside
            lines += [f"points = {seg.points}", f"measured_from_bytes = {seg.sizes_bytes[0]:.0f}",
                      f"measured_to_bytes = {seg.sizes_bytes[1]:.0f}"]
        if seg.alpha_ci_s:
            lines.append(f"# 95% CI: alpha [{seg.alpha_ci_s[0] * 1e6:.3f}, {seg.alpha_ci_s[1] * 1e6:.3f}] us, "
                         f"busbw [{seg.busbw_ci_Bps[0] / 1e9:.5g}, {seg.busbw_ci_Bps[1] / 1e9:.5g}] GB/s")
        lines.append("")
    return "\n".join(lines)
