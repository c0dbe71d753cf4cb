"""How far a fitted fabric can be trusted: the sizes it was fitted on, and the sizes it priced.

A fit t(S) = alpha + S / beta is a measurement between its smallest and largest size and an
extrapolation outside. alpha is the line's value at S = 0: fitted on 1-4 GB only, it is set by
the differences between times of tens of ms and says nothing about a 5 KB decode all-reduce.
FabricModel records the smallest and largest S each collective was priced at (`priced`); a priced
size more than EXTRAPOLATION_FACTOR below the smallest fitted size, or above the largest, is named
here with the sweep that would cover it. A segment fitted on fewer than MIN_FIT_SIZES distinct
sizes has no degree of freedom left: its line goes through the points and its intervals are
unbounded (fit_alpha_beta), which is said too.
"""

from __future__ import annotations

import math

EXTRAPOLATION_FACTOR = 2.0  # a priced size within 2x of the fitted range is read as measured
MIN_FIT_SIZES = 3  # distinct sizes a line needs for a confidence interval (n - 2 >= 1 dof)


def size_text(msg_bytes: float) -> str:
    """Bytes as the sweep options take them (powers of 1024): 5760 -> '5.6K', 2**30 -> '1G'."""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if msg_bytes >= scale:
            return f"{msg_bytes / scale:.3g}{unit}"
    return f"{msg_bytes:.0f}"


def _pow2_floor(x: float) -> int:
    return 2 ** max(0, math.floor(math.log2(x)))


def _pow2_ceil(x: float) -> int:
    return 2 ** max(0, math.ceil(math.log2(x)))


def segment_note(seg) -> str:
    """'' for a profile or a segment fitted on enough sizes; else what is not determined."""
    if seg.sizes_bytes is None or seg.points >= MIN_FIT_SIZES:
        return ""
    return (f"fitted on {seg.points} sizes: alpha and busbw not determined (unbounded interval); "
            f"measure {MIN_FIT_SIZES} or more sizes in this segment")


def fitted_range(segments) -> tuple[float, float, list[int]] | None:
    """(smallest, largest fitted S, distinct sizes per segment) of fitted segments; None for a profile."""
    sized = [seg for seg in segments if seg.sizes_bytes is not None]
    if not sized:
        return None
    return min(s.sizes_bytes[0] for s in sized), max(s.sizes_bytes[1] for s in sized), [s.points for s in segments]


def extrapolations(model) -> list[dict]:
    """Each collective `model` priced more than EXTRAPOLATION_FACTOR outside its fitted range, with
    the sizes a sweep needs to cover what was priced (powers of two around the priced range)."""
    out = []
    for coll, (lo, hi) in sorted(model.priced.items()):
        fit_name = coll if coll in model.per_collective else next(
            (name for name, segs in model.per_collective.items() if segs == model.segments), "default")
        found = fitted_range(model.per_collective.get(coll, model.segments))
        if found is None:
            continue
        fit_lo, fit_hi, points = found
        below, above = lo < fit_lo / EXTRAPOLATION_FACTOR, hi > fit_hi * EXTRAPOLATION_FACTOR
        if not (below or above):
            continue
        need_lo, need_hi = _pow2_floor(min(lo, fit_lo)), _pow2_ceil(max(hi, fit_hi))
        outside = " and ".join(
            [f"{size_text(lo)} is {fit_lo / lo:,.0f}x below the smallest"] * below +
            [f"{size_text(hi)} is {hi / fit_hi:,.0f}x above the largest"] * above)
        via = "" if fit_name == coll else f" with the {fit_name} fit (the sweep has no {coll})"
        message = (f"fabric {model.name}: priced {coll} at {size_text(lo)}-{size_text(hi)} bytes{via}, but the fit was "
                   f"measured at {size_text(fit_lo)}-{size_text(fit_hi)} bytes ({' + '.join(map(str, points))} sizes "
                   f"per segment): {outside}, an extrapolation, not a measurement; sizes needed: "
                   f"{size_text(need_lo)}-{size_text(need_hi)} (commbench sweep {coll} -b {size_text(need_lo)} "
                   f"-e {size_text(need_hi)}, or nccl-tests -b {size_text(need_lo)} -e {size_text(need_hi)})")
        out.append({"fabric": model.name, "collective": coll, "fit": fit_name, "priced_from_bytes": lo,
                    "priced_to_bytes": hi, "measured_from_bytes": fit_lo, "measured_to_bytes": fit_hi,
                    "points_per_segment": points, "need_from_bytes": need_lo, "need_to_bytes": need_hi,
                    "message": message})
    return out


def fit_notes(model) -> list[str]:
    """One line per fitted segment with fewer than MIN_FIT_SIZES sizes (its interval is unbounded)."""
    lines = []
    for coll, segs in (model.per_collective or {"default": model.segments}).items():
        for i, seg in enumerate(segs):
            note = segment_note(seg)
            if note:
                lines.append(f"fabric {model.name}: {coll} segment {i + 1} of {len(segs)} "
                             f"({size_text(seg.sizes_bytes[0])}-{size_text(seg.sizes_bytes[1])} bytes) {note}")
    return lines


def warnings(model) -> list[str]:
    """What a command that priced with `model` should say: segments without an interval, then every
    collective priced outside its fitted range (call after pricing)."""
    return fit_notes(model) + [e["message"] for e in extrapolations(model)]
