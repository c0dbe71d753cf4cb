"""A fabric model: what one call of a collective costs on a named interconnect.

A fabric model is piecewise latency-bandwidth (alpha-beta, Hockney) per size segment:

    t(S) = alpha_i + S * f(n) / busbw_i        for S <= up_to_bytes_i (first segment that holds S)

with S nccl-tests' message size and f(n) the collective's busbw factor (commbench.collectives),
so one profile prices all_reduce, all_gather and send/recv alike. Segments exist because NCCL
switches protocol (LL -> LL128 -> Simple) with size: small messages pay latency at a low
incremental bandwidth, large ones stream near the link rate.

A FabricModel prices a call; commbench.fabric.fit builds one from measurements and
commbench.fabric.profiles reads and writes fabrics/*.toml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use (loading a fabric profile needs no tables)
from commbench.collectives import get_collective


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
