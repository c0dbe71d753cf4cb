"""Infer an effective fabric from published end-to-end rows (../shared/reference/calibration.md).

The published TP=2 figures for gpt-oss-120b on two DGX Sparks sit far below what memory-bandwidth
physics and a well-configured 200GbE pair give (commbench predicts TP ahead of PP at batch 128 on
`spark-200gbe`). Holding the compute model fixed (global constants, checked on the PP rows, which
barely touch the link), the only free terms are the collective's: this module solves for the
incremental bus bandwidth of mid-size messages (the decode all-reduces, 64 KiB..SPLIT_BYTES) and of
large ones (prefill chunks, logits) that make the TP rows come out, keeping the published
small-message latency. The result is a fabric profile (fabrics/spark-review.toml): a property of
that review's setup, reported as such, never a per-model constant.

    commbench fabric infer   # re-derives fabrics/spark-review.toml from the rows below
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from commbench.fabric import FabricModel, Segment, load_fabric
from commbench.hardware import HardwareProfile, load_hardware
from commbench.model_card import load_model_card
from commbench.plan import ParallelPlan
from commbench.serving import predict_row
from commbench.workload import Workload

SPLIT_BYTES = 4 * 2**20
"""Where the inferred mid-size regime ends, bytes. Any split between the largest decode all-reduce
the rows contain (128 x 2880 x 2 B = 737 KB) and the smallest prefill or logits message (tens of
MB) gives the same fit; 4 MiB is where NCCL's tuner typically leaves LL128 for Simple on 2 ranks."""


@dataclass(frozen=True)
class PublishedRow:
    model: str
    mode: str
    batch: int
    scenario: str
    output_tok_s: float
    source: str


# ../shared/reference/calibration.md: StorageReview DGX Spark cluster review (May 2026).
PUBLISHED_ROWS = (
    PublishedRow("gpt-oss-120b", "pp", 128, "balanced", 554.69, "StorageReview 2026, PP=2"),
    PublishedRow("gpt-oss-120b", "tp", 128, "balanced", 554.69 / 2.20, "StorageReview 2026, PP/TP = 2.20"),
    PublishedRow("gpt-oss-120b", "pp", 128, "prefill-heavy", 310.63, "StorageReview 2026, PP=2"),
    PublishedRow("gpt-oss-120b", "tp", 128, "prefill-heavy", 164.99, "StorageReview 2026, TP=2"),
)


def predicted(row: PublishedRow, fabric: FabricModel, hardware: HardwareProfile | None = None, cards: dict | None = None) -> float:
    """Output tok/s the serving model gives for a published row (cards: a cache of loaded model cards)."""
    cards = {} if cards is None else cards
    if row.model not in cards:
        cards[row.model] = load_model_card(row.model)
    plan = ParallelPlan.for_mode(cards[row.model], row.mode)
    hw = hardware or load_hardware("dgx-spark")
    return predict_row(plan, Workload.from_options(row.batch, row.scenario), hw, fabric)["output_tok_s"]


def infer_fabric(base: str = "spark-200gbe", rows=PUBLISHED_ROWS, name: str = "spark-review") -> FabricModel:
    """Fit three fabric terms to three published facts, keeping `base`'s small-message slope.

    Unknowns: the per-call latency alpha (small and large messages), the incremental busbw of
    mid-size messages (64 KiB..SPLIT_BYTES: decode all-reduces) and of large ones (prefill chunks,
    logits). Facts: the two TP rows (log error), and "TP leads only at batch 1" turned into an
    equation by putting the TP/PP crossover at the log-midpoint of batch 1 and 2:
    (TP/PP at batch 1) x (TP/PP at batch 2) = 1 for the first row's model and scenario.
    """
    from scipy.optimize import least_squares

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
    return replace(model(fit.x), link=load_fabric(base).link, description=f"inferred from the published gpt-oss-120b rows (TP rows, TP ahead only at "
                                             f"batch 1) over {base}'s small-message slope")
