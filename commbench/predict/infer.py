"""`fabric infer`: a diagnostic of what fabric end-to-end rows would imply, and whether it can exist.

No profile commbench ships is derived from end-to-end throughput (docs/sources.md#calibration):
fabrics come from nccl-tests figures or transport physics. This module asks the opposite question
of published rows: holding the compute model fixed, what per-call latency and mid- / large-message
bus bandwidth would make the TP rows come out, with "TP ahead only at batch 1"? Then it judges the
answer:

- physical: effective bandwidth does not fall as messages grow, and no regime is slower than the
  slowest transport the pair has (NCCL over TCP on a 10GbE management port, fabrics/spark-tcp-10gbe);
- if not, the rows are not a fabric property: `unexplained` reports, per row, the milliseconds per
  engine step that the well-configured fabric leaves unexplained.

    commbench fabric infer
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from commbench.fabric import FabricModel, Segment, load_fabric
from commbench.predict.hardware import HardwareProfile, load_hardware
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.predict.published import PublishedRow, review_rows
from commbench.predict.serving import predict_row
from commbench.traffic.workload import Workload

SPLIT_BYTES = 4 * 2**20
"""Where the inferred mid-size regime ends, bytes. Any split between the largest decode all-reduce
the rows contain (128 x 2880 x 2 B = 737 KB) and the smallest prefill or logits message (tens of
MB) gives the same fit; 4 MiB is where NCCL's tuner typically leaves LL128 for Simple on 2 ranks."""

SLOWEST_TRANSPORT = "spark-tcp-10gbe"
"""The slowest transport two Sparks have between them: NCCL over TCP on the 10GbE management port."""


def predicted_row(row: PublishedRow, fabric: FabricModel, hardware: HardwareProfile | None = None,
                  cards: dict | None = None) -> dict:
    """The serving model's row (commbench.predict.serving.predict_row) for a published row's setup."""
    cards = {} if cards is None else cards
    if row.model not in cards:
        cards[row.model] = load_model_card(row.model)
    plan = ParallelPlan.for_mode(cards[row.model], row.mode)
    hw = hardware or load_hardware("dgx-spark")
    return predict_row(plan, Workload.from_options(row.batch, row.scenario), hw, fabric)


def predicted(row: PublishedRow, fabric: FabricModel, hardware: HardwareProfile | None = None, cards: dict | None = None) -> float:
    """Output tok/s the serving model gives for a published row."""
    return predicted_row(row, fabric, hardware, cards)["output_tok_s"]


def unexplained_ms_per_step(row: PublishedRow, fabric: FabricModel, hardware: HardwareProfile | None = None) -> float:
    """Milliseconds per engine step the published row takes beyond the prediction on `fabric`.

    published run time = B x OSL / published tok/s; predicted from the same schedule; the
    difference over the run's engine steps (positive: the row is slower than every modelled term).
    """
    pred = predicted_row(row, fabric, hardware)
    published_run_s = row.batch * pred["osl"] / row.output_tok_s
    return (published_run_s - pred["run_s"]) / pred["steps"] * 1e3


def infer_fabric(base: str = "spark-200gbe", rows=None, name: str = "inferred") -> FabricModel:
    """Fit three fabric terms to three published facts, keeping `base`'s small-message slope.

    Unknowns: the per-call latency alpha (small and large messages), the incremental busbw of
    mid-size messages (64 KiB..SPLIT_BYTES: decode all-reduces) and of large ones (prefill chunks,
    logits). Facts: the TP rows (log error), and "TP leads only at batch 1" turned into an equation
    by putting the TP/PP crossover at the log-midpoint of batch 1 and 2:
    (TP/PP at batch 1) x (TP/PP at batch 2) = 1 for the first row's model and scenario.
    """
    from scipy.optimize import least_squares

    rows = review_rows() if rows is None else rows
    small = load_fabric(base).segments[0]
    tp_rows = [r for r in rows if r.mode == "tp"]
    anchor = tp_rows[0]
    hw, cards = load_hardware("dgx-spark"), {}  # loaded once, not per solver iteration

    def model(x: np.ndarray) -> FabricModel:
        alpha = math.exp(x[0])
        mid_bw, big_bw = np.exp(x[1:])
        # t(S) continuous where the small line meets the mid one: at 64 KiB, or earlier where a
        # slow mid regime crosses alpha + S / small_bw (then the mid line runs through the origin)
        edge = small.up_to_bytes
        mid_alpha = alpha + edge / small.busbw_Bps - edge / mid_bw
        if mid_alpha < 0:
            edge = alpha / (1 / mid_bw - 1 / small.busbw_Bps)
            mid_alpha = 0.0
        return FabricModel(name, "", (Segment(edge, alpha, small.busbw_Bps), Segment(SPLIT_BYTES, mid_alpha, mid_bw),
                                      Segment(math.inf, alpha, big_bw)))

    def ratio(fab: FabricModel, batch: int) -> float:
        tp = predicted(replace(anchor, mode="tp", batch=batch), fab, hw, cards)
        pp = predicted(replace(anchor, mode="pp", batch=batch), fab, hw, cards)
        return tp / pp

    def residual(x: np.ndarray) -> np.ndarray:
        fab = model(x)
        errors = [math.log(predicted(r, fab, hw, cards) / r.output_tok_s) for r in tp_rows]
        return np.array(errors + [math.log(ratio(fab, 1) * ratio(fab, 2))])

    fit = least_squares(residual, x0=np.log([50e-6, 1e9, 5e9]), bounds=(np.log([1e-6, 1e7, 1e7]), np.log([1e-2, 1e11, 1e11])))
    return replace(model(fit.x), link=load_fabric(base).link,
                   description=f"implied by the published TP rows over {base}'s small-message slope (a diagnostic, not a profile)")


@dataclass(frozen=True)
class Verdict:
    physical: bool
    reasons: tuple[str, ...]


def judge(fabric: FabricModel) -> Verdict:
    """Can `fabric` exist? Bandwidth must not fall as messages grow (past the small-message regime,
    where latency dominates) and no regime may be slower than the slowest transport the pair has."""
    reasons = []
    streaming = fabric.segments[1:]
    for lo, hi in zip(streaming, streaming[1:]):
        if hi.busbw_Bps < lo.busbw_Bps * 0.999:
            reasons.append(f"bandwidth falls as messages grow ({lo.busbw_Bps / 1e9:.3g} GB/s up to "
                           f"{lo.up_to_bytes:,.0f} B, then {hi.busbw_Bps / 1e9:.3g} GB/s)")
    floor = load_fabric(SLOWEST_TRANSPORT)
    floor_bw = floor.segments[-1].busbw_Bps
    for seg in streaming:
        if seg.busbw_Bps < floor_bw:
            reasons.append(f"{seg.busbw_Bps / 1e9:.3g} GB/s is below the slowest transport the pair has "
                           f"({floor.name}: {floor_bw / 1e9:.3g} GB/s)")
    return Verdict(not reasons, tuple(reasons))
