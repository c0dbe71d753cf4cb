"""Mechanisms that could make TP=2 lose to PP=2, switched one at a time; what-ifs; the crossover.

Each mechanism is a set of what-ifs (commbench.predict.whatif: NAME=VALUE switches of the engine
and the fabric, also `commbench predict --what-if`).

`mechanism_table` starts from a well-configured TP=2 (BASELINE: the nccl-tests fabric, mp with async
scheduling, CUDA graphs, no MoE padding), switches each MECHANISMS entry on alone, and reports TP
and PP output tok/s at the batch with it on and the share of the published gap it closes:

    gap(x)  = B x (1 / TP(x) - 1 / PP(x)) x 1e3        ms per decode step (positive: TP slower)
    share   = (gap(mechanism) - gap(baseline)) / (gap(published) - gap(baseline))

Combinations are every fabric mechanism (or none) with every subset of the others; the closest to
the published TP are said as "consistent with" when within CONSISTENT_WITHIN, never fitted.

The crossover: with d added to every collective call, TP's run time grows by its calls x d and
PP's by its sends x d; `crossover` finds the d where PP's output tok/s reaches TP's by bisection
(TP - PP is monotone in d). The per-call all-reduce cost there, t(S) + d at the model's decode
all-reduce size S, is the figure to read off `commbench fabric validate`; the link bandwidth is
the same search on a busbw cap applied to every segment.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import pandas as pd

from commbench.fabric import FabricModel, load_fabric
from commbench.predict.hardware import HardwareProfile
from commbench.predict.recipes import apply_recipe, load_recipe
from commbench.predict.whatif import WHAT_IFS, add_per_call, apply_what_ifs, cap_busbw, parse_what_ifs  # noqa: F401
from commbench.predict.serving import predict_row
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.workload import Workload

CONSISTENT_WITHIN = 0.15
"""A combination is 'consistent with' the published TP when its predicted TP tok/s is within this
fraction of the published figure. Unitless; a reading tolerance (the three OEM pairs of the review
differ by a few percent), not a fitted number."""


@dataclass(frozen=True)
class Mechanism:
    label: str
    what_if: dict
    source: str


BASELINE = {"fabric": "spark-200gbe", "executor": "mp", "async_scheduling": True, "cuda_graphs": True,
            "moe_kernel": "triton"}
"""A well-configured TP=2: NCCL at the nccl-tests figures of a well-configured pair, vLLM's mp executor
with async scheduling (host work overlapped), CUDA graphs, an MoE kernel without padding."""

MECHANISMS = (
    Mechanism("host-staged mid-size NCCL", {"fabric": "spark-hoststaged"},
              "no GPUDirect RDMA on GB10 (NVIDIA forum thread 348787, NVIDIA/nccl issue 1017); 4-Spark mid-size "
              "all-reduce (local-inference-lab/b12x PR 295) by ring step count"),
    Mechanism("Ray without async scheduling", {"executor": "ray", "async_scheduling": False},
              "multi-node playbook runs TP on Ray (NVIDIA dgx-spark-playbooks nvidia/vllm); Ray disables async "
              "scheduling (vLLM PR 25887); host per request measured (scripts/time_vllm_scheduler.py)"),
    Mechanism("NCCL over TCP sockets", {"fabric": "spark-tcp-200g"},
              "run_cluster.sh passes no /dev/infiniband (vllm examples/online_serving/run_cluster.sh); socket "
              "transport from physics (fabrics/spark-tcp-200g.toml)"),
    Mechanism("one HCA", {"fabric": "spark-1hca"},
              "98 vs 161 Gb/s one vs both HCAs (two-GX10 cluster PR); ~12 GB/s (dgx-spark-playbooks issue 102)"),
    Mechanism("degraded link start", {"fabric": "spark-degraded"},
              "RDMA 13.23 vs ~97 Gb/s per interface (dgx-spark-playbooks PR 108)"),
    Mechanism("Marlin MoE padding", {"moe_kernel": "marlin"},
              "Marlin, the MXFP4 path on SM 12.1 (vLLM issue 41477), pads I/tp to 128 and H to 256 (vllm mxfp4.py)"),
    Mechanism("eager instead of CUDA graphs", {"cuda_graphs": False},
              "kernel launches per layer (vllm gpt_oss.py / llama.py forward); eager vs graphs on a Spark "
              "(conselara.dev notes; kubis.ai ran eager)"),
)


def _pricer(model: str, hw: HardwareProfile, batch: int, scenario: str, isl, osl, recipe: str = "checkpoint"):
    """pair(fabric, what) -> (TP row, PP row) at `batch` on `fabric` with the what-ifs on top of the
    recipe; the model card, recipe and workload are read once for all the pairs priced."""
    served = load_recipe(recipe)
    card = apply_recipe(load_model_card(model), served)
    plans = [ParallelPlan.for_mode(card, mode) for mode in ("tp", "pp")]
    w = Workload.from_options(batch, scenario, isl, osl)

    def pair(fabric: FabricModel, what: dict | None = None):
        engine, fabric = apply_what_ifs(served.engine, fabric, what or {})
        return tuple(predict_row(plan, w, hw, fabric, engine) for plan in plans)
    return pair


def _gap_ms(batch: int, tp: float, pp: float) -> float:
    return batch * 1e3 * (1 / tp - 1 / pp)


def mechanism_table(model: str, hw: HardwareProfile, batch: int, scenario: str = "balanced", isl=None, osl=None,
                    published: tuple[float, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per mechanism switched on alone, the combinations closest to the published TP).

    published: (TP, PP) output tok/s at this batch, or None (then no share and no combinations ranking
    against it: the combinations are ranked by PP/TP).
    """
    pair = functools.partial(_pricer(model, hw, batch, scenario, isl, osl), load_fabric(hw.fabric))  # pair(what)
    base_tp, base_pp = pair(BASELINE)
    base_gap = _gap_ms(batch, base_tp["output_tok_s"], base_pp["output_tok_s"])
    pub_gap = _gap_ms(batch, *published) if published else None
    rows = [{"mechanism": "baseline: well-configured TP=2", "switch": _what_text(BASELINE),
             "tp_tok_s": base_tp["output_tok_s"], "pp_tok_s": base_pp["output_tok_s"],
             "pp_over_tp": base_pp["output_tok_s"] / base_tp["output_tok_s"], "gap_ms_per_step": base_gap,
             "share_of_gap_pct": 0.0 if published else math.nan, "source": "fabrics/spark-200gbe.toml; recipes.py"}]
    for mech in MECHANISMS:
        tp, pp = pair({**BASELINE, **mech.what_if})
        gap = _gap_ms(batch, tp["output_tok_s"], pp["output_tok_s"])
        rows.append({"mechanism": mech.label, "switch": _what_text(mech.what_if), "tp_tok_s": tp["output_tok_s"],
                     "pp_tok_s": pp["output_tok_s"], "pp_over_tp": pp["output_tok_s"] / tp["output_tok_s"],
                     "gap_ms_per_step": gap,
                     "share_of_gap_pct": (gap - base_gap) / (pub_gap - base_gap) * 100 if published else math.nan,
                     "source": mech.source})
    fabric_mechs = [m for m in MECHANISMS if "fabric" in m.what_if]
    others = [m for m in MECHANISMS if "fabric" not in m.what_if]
    combos = []
    for fab in [None, *fabric_mechs]:
        for k in range(len(others) + 1):
            for subset in itertools.combinations(others, k):
                chosen = ([fab] if fab else []) + list(subset)
                if len(chosen) < 2:
                    continue
                what = dict(BASELINE)
                for mech in chosen:
                    what.update(mech.what_if)
                tp, pp = pair(what)
                gap = _gap_ms(batch, tp["output_tok_s"], pp["output_tok_s"])
                combos.append({"combination": " + ".join(m.label for m in chosen), "tp_tok_s": tp["output_tok_s"],
                               "pp_tok_s": pp["output_tok_s"], "pp_over_tp": pp["output_tok_s"] / tp["output_tok_s"],
                               "share_of_gap_pct": (gap - base_gap) / (pub_gap - base_gap) * 100 if published else math.nan})
    combo = pd.DataFrame(combos)
    if published:
        combo["tp_vs_published_pct"] = (combo.tp_tok_s / published[0] - 1) * 100
        combo = combo.reindex(combo.tp_vs_published_pct.abs().sort_values().index)
    else:
        combo = combo.sort_values("pp_over_tp", ascending=False)
    return pd.DataFrame(rows), combo.head(3).reset_index(drop=True)


def _what_text(what: dict) -> str:
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in what.items())


def crossover(diff, lo: float, hi: float, tol: float = 1e-3, iters: int = 60) -> float | None:
    """x in [lo, hi] where diff(x) changes sign (diff monotone), by bisection to a relative tol.

    diff(lo) <= 0 returns lo (already crossed); diff(hi) > 0 returns None (no crossover below hi).
    """
    if diff(lo) <= 0:
        return lo
    if diff(hi) > 0:
        return None
    for _ in range(iters):
        mid = (lo + hi) / 2
        if diff(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= tol * max(abs(hi), 1e-12):
            break
    return (lo + hi) / 2


def crossover_table(model: str, hw: HardwareProfile, fabric: FabricModel, batch: int, scenario: str = "balanced",
                    isl=None, osl=None, recipe: str = "checkpoint") -> dict:
    """Where PP starts to beat TP at `batch`: the per-call collective cost and the link busbw.

    Returns msg_bytes (TP decode all-reduce at the batch), call_us (its cost on `fabric`),
    crossover_call_us (t(S) + d at the crossover; None if no crossover below 100 ms per call),
    extra_us (d), crossover_busbw_gbps (busbw cap where PP wins; None if none above 0.01 GB/s),
    and tp/pp tok/s on the fabric as given.
    """
    from commbench.predict.explain import model_message_sizes

    pair = _pricer(model, hw, batch, scenario, isl, osl, recipe)

    def tok_s(fab):
        return [row["output_tok_s"] for row in pair(fab)]

    def by_extra(d):
        tp, pp = tok_s(add_per_call(fabric, d))
        return tp - pp

    def by_busbw(b):  # falling busbw makes TP slower: diff in -b is monotone like by_extra
        tp, pp = tok_s(cap_busbw(fabric, -b))
        return tp - pp

    size = dict(model_message_sizes(model, batch))[f"TP decode all-reduce, b{batch}"]
    call = fabric.time_s("all_reduce", size, 2)
    extra = crossover(by_extra, 0.0, 0.1)
    cap = crossover(by_busbw, -fabric.segments[-1].busbw_Bps, -1e7)
    tp, pp = tok_s(fabric)
    return {"model": model, "batch": batch, "fabric": fabric.name, "tp_tok_s": tp, "pp_tok_s": pp,
            "msg_bytes": size, "call_us": call * 1e6, "extra_us": None if extra is None else extra * 1e6,
            "crossover_call_us": None if extra is None else (call + extra) * 1e6,
            "crossover_busbw_gbps": None if cap is None else -cap / 1e9}


def crossover_sentences(x: dict) -> list[str]:
    """Plain sentences from crossover_table for a user with their own `fabric validate` figures."""
    kb = x["msg_bytes"] / 1e3
    if x["extra_us"] == 0.0:
        return [f"Crossover: PP is already ahead of TP at batch {x['batch']} on {x['fabric']} "
                f"({x['pp_tok_s']:.1f} vs {x['tp_tok_s']:.1f} output tok/s)."]
    lines = []
    if x["crossover_call_us"] is None:
        lines.append(f"Crossover: TP stays ahead at batch {x['batch']} even at 100 ms per collective call.")
    else:
        lines.append(f"Crossover at batch {x['batch']}: PP starts to beat TP when one TP decode all-reduce of {kb:,.0f} KB "
                     f"takes more than {x['crossover_call_us']:,.0f} us (it takes {x['call_us']:,.0f} us on {x['fabric']}: "
                     f"{x['extra_us']:,.0f} us more per call), or when the link's busbw falls below "
                     + (f"{x['crossover_busbw_gbps']:.3g} GB/s." if x["crossover_busbw_gbps"] else "0.01 GB/s (never, in practice)."))
    lines.append(f"  Read it off your pair: `commbench fabric validate --expect 200gbe --backend nccl` (the all_reduce row "
                 f"near {kb:,.0f} KB) or `commbench predict {x['model']} --fabric sweep.csv`.")
    return lines


def independent_curves(model: str, fabric: FabricModel) -> pd.DataFrame:
    """Every shipped figure of `model` (published/figures.csv) beside its prediction, by source and setup:
    the independent single-box and TP=2 curves and the review's rows, so a reader sees which agree."""
    from commbench.predict.accuracy import predict_figure
    from commbench.predict.published import shipped_figures

    figs = shipped_figures()
    figs = figs[figs.model == model]
    cache: dict = {}
    rows = []
    for r in figs.itertuples():
        setup = "one box" if r.tp * r.pp == 1 else f"TP={r.tp}" if r.pp == 1 else f"PP={r.pp}"
        predicted = predict_figure(r, fabric, cache)
        rows.append({"source": r.source, "setup": setup, "recipe": r.recipe, "batch": int(r.batch),
                     "isl_osl": f"{r.isl}/{r.osl}", "metric": r.metric, "published": float(r.value),
                     "predicted": predicted, "error_pct": (predicted / r.value - 1) * 100})
    return pd.DataFrame(rows)


def curve_sentences(curves: pd.DataFrame) -> list[str]:
    """Which rows agree with which: the review's TP and PP rows against the independent curves."""
    if curves.empty:
        return ["No published figures are shipped for this model: the mechanism table and the crossover stand alone."]
    lines = []
    for (source, setup), grp in curves.groupby(["source", "setup"], sort=False):
        label = source if setup in source else f"{source} {setup}"
        lines.append(f"{label} ({grp.metric.iloc[0]}): error {grp.error_pct.abs().mean():.1f}% mean over "
                     f"{len(grp)} rows ({', '.join(f'b{b} {e:+.0f}%' for b, e in zip(grp.batch, grp.error_pct))}).")
    review = curves[curves.source == "StorageReview"]
    indep = curves[(curves.source != "StorageReview") & (curves.metric == "decode_tok_s")]
    for r in review[review.setup == "TP=2"].itertuples():
        for setup in ("TP=2", "one box"):
            curve = indep[indep.setup == setup].sort_values("batch")
            above = curve[curve.published > r.published]
            if not above.empty:
                lines.append(f"The review's TP=2 at {r.batch} ({r.published:.1f} output tok/s, {r.isl_osl}) is below the "
                             f"independent {setup} curve from concurrency {above.batch.iloc[0]} on "
                             f"({above.published.iloc[0]:.1f} decode tok/s there).")
    for r in review[review.setup == "PP=2"].itertuples():
        single = indep[indep.setup == "one box"]
        if not single.empty:
            top = single.published.max()
            lines.append(f"The review's PP=2 at {r.batch} ({r.published:.1f}, {r.isl_osl}) is {r.published / top:.2f}x the "
                         f"single box's best ({top:.1f}): a two-stage pipeline doubles at most.")
    if not review.empty and not indep.empty:
        lines.append("Rows that agree with the independent curves and the physics (the review's PP) are evidence about "
                     "the model; a row that agrees with neither (the review's TP) is evidence about its setup, "
                     "reported here, not fitted.")
    return lines


def mechanism_sentences(table: pd.DataFrame, combos: pd.DataFrame, published: tuple[float, float] | None,
                        batch: int) -> list[str]:
    """The mechanism table and its closest combinations in words, 'consistent with' only within CONSISTENT_WITHIN."""
    lines = []
    if published:
        best = table.iloc[1:].sort_values("share_of_gap_pct", ascending=False).iloc[0]
        lines.append(f"Each mechanism alone, from a well-configured TP=2 at batch {batch}: the largest, {best.mechanism}, "
                     f"closes {best.share_of_gap_pct:.1f}% of the published gap (TP {best.tp_tok_s:.1f} tok/s against "
                     f"the review's {published[0]:.1f}).")
        near = combos[combos.tp_vs_published_pct.abs() <= CONSISTENT_WITHIN * 100]
        if near.empty:
            top = combos.iloc[0]
            lines.append(f"No combination of these mechanisms reaches the review's TP=2 ({published[0]:.1f} tok/s): the "
                         f"closest, {top.combination}, predicts {top.tp_tok_s:.1f} ({top.share_of_gap_pct:.1f}% of the gap). "
                         f"The rest is unexplained by any measured mechanism.")
        for r in near.itertuples():
            lines.append(f"Consistent with (within {CONSISTENT_WITHIN:.0%}, not fitted): {r.combination}, TP {r.tp_tok_s:.1f} tok/s.")
    else:
        top = combos.iloc[0] if not combos.empty else None
        if top is not None:
            lines.append(f"No published TP/PP pair for this setup; the combination that helps PP most, {top.combination}, "
                         f"gives PP/TP {top.pp_over_tp:.2f}.")
    return lines


def explain_mechanisms(model: str, hw: HardwareProfile, fabric: FabricModel, batch: int, scenario: str = "balanced",
                       isl=None, osl=None) -> dict:
    """What `commbench explain` adds for the TP-PP question: the published curves beside the prediction,
    the mechanism table and closest combinations, the crossover; with their sentences."""
    from commbench.predict.grid import published_for

    w = Workload.from_options(batch, scenario, isl, osl)
    key = {"model": model, "batch": batch, "isl": w.isl, "osl": w.osl, "hardware": hw.name, "recipe": "checkpoint"}
    tp_pub, pp_pub = (published_for({**key, "tp": tp, "pp": pp}) for tp, pp in ((2, 1), (1, 2)))
    published = (tp_pub, pp_pub) if tp_pub and pp_pub else None
    curves = independent_curves(model, fabric)
    table, combos = mechanism_table(model, hw, batch, scenario, isl, osl, published)
    cross = crossover_table(model, hw, fabric, batch, scenario, isl, osl)
    sentences = (curve_sentences(curves) + mechanism_sentences(table, combos, published, batch)
                 + crossover_sentences(cross))
    return {"curves": curves, "mechanisms": table, "combinations": combos, "crossover": cross, "sentences": sentences}
