"""How far the prediction is from published and measured figures: per row, per source, and overall.

Every figure (commbench.predict.published) is predicted with its own setup: the recipe's weight formats,
KV-cache dtype and engine mode, its tp x pp, concurrency and ISL/OSL, on the hardware profile it
names and, across boxes, on one fabric profile. The error is predicted / measured - 1 (for the
metrics in ms as well: +10% means the prediction says 10% slower). MAPE is the mean of |error|.
Besides rows, the review's qualitative findings (docs/sources.md#calibration) are checked on the same fabric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from commbench import CommbenchError
from commbench.fabric import FabricModel
from commbench.predict.hardware import load_hardware
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.predict.recipes import apply_recipe, load_recipe
from commbench.predict.serving import predict_row
from commbench.predict.step_cost import decode_step
from commbench.traffic.workload import Workload

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
#: figure metric -> predict_row column, where the row names it differently (the other metrics share the name)
PREDICTED_AS = {"output_tok_s": "output_tok_s", "output_throughput": "output_tok_s", "total_token_throughput": "total_tok_s"}


def predict_figure(row, fabric: FabricModel, cache: dict) -> float:
    """The prediction for one figure row (a namedtuple/Series with the FIGURE_COLUMNS)."""
    key = (row.model, row.recipe, row.hardware)
    if key not in cache:
        recipe = load_recipe(row.recipe)
        cache[key] = (apply_recipe(load_model_card(row.model), recipe), recipe.engine, load_hardware(row.hardware))
    card, engine, hw = cache[key]
    plan = ParallelPlan(card, tp=int(row.tp), pp=int(row.pp))
    if row.metric == "decode_tok_s":  # steady decode, each sequence half-way through its output
        step = decode_step(plan, hw, fabric, int(row.batch), int(row.isl) + int(row.osl) // 2, engine)
        return int(row.batch) / step["wall_s"]
    w = Workload(int(row.batch), int(row.isl), int(row.osl), scenario=row.scenario or "custom")
    pred = predict_row(plan, w, hw, fabric, engine)
    return float(pred[PREDICTED_AS.get(row.metric, row.metric)])


#: What each figure metric is compared with (the `compared_as` column of accuracy_table).
COMPARED_AS = {
    "decode_tok_s": "steady decode tok/s over all sequences (batch / TPOT), as llama-benchy and llama-batched-bench print",
    "output_tok_s": "mean output tok/s of the run (vllm bench serve output_throughput); source names no metric: "
                    "the 1-s peak is beside it",
    "output_throughput": "mean output tok/s of the run (vllm bench serve output_throughput)",
    "max_output_tokens_per_s": "peak output tok/s in a 1-second window (vllm bench serve max_output_tokens_per_s)",
}


def accuracy_table(figures: pd.DataFrame, fabric: FabricModel, progress=None) -> pd.DataFrame:
    """figures plus predicted and error_pct columns, compared_as (the metric each row is compared with)
    and, for rows whose source does not say mean or peak (output_tok_s), predicted_peak and peak_error_pct:
    the 1-second-window peak as vllm bench serve computes it (serving.bench_metrics)."""
    cache: dict = {}
    predicted, peaks = [], []
    for row in figures.itertuples():
        predicted.append(predict_figure(row, fabric, cache))
        peaks.append(predict_figure(row._replace(metric="max_output_tokens_per_s"), fabric, cache)
                     if row.metric == "output_tok_s" else np.nan)
        if progress:
            progress()
    out = figures.copy()
    out["predicted"] = predicted
    out["error_pct"] = (out.predicted / out.value - 1) * 100
    out["compared_as"] = [COMPARED_AS.get(m, f"{m} (vllm bench serve)") for m in out.metric]
    out["predicted_peak"] = peaks
    out["peak_error_pct"] = (out.predicted_peak / out.value - 1) * 100
    out["fabric"] = np.where(out.tp * out.pp > 1, fabric.name, "")
    return out


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """MAPE per source and metric, and overall; `tuned` says whether a constant was chosen on the rows."""
    rows = []
    for (source, metric), grp in table.groupby(["source", "metric"], sort=False):
        rows.append({"source": source, "metric": metric, "rows": len(grp), "mape_pct": grp.error_pct.abs().mean(),
                     "worst_pct": grp.error_pct.iloc[grp.error_pct.abs().argmax()],
                     "tuned_on": ", ".join(sorted(set(grp.tuned) - {""})) or "no"})
    rows.append({"source": "all", "metric": "", "rows": len(table), "mape_pct": table.error_pct.abs().mean(),
                 "worst_pct": table.error_pct.iloc[table.error_pct.abs().argmax()], "tuned_on": ""})
    untuned = table[table.tuned == ""]
    if len(untuned) and len(untuned) < len(table):
        rows.append({"source": "all not tuned on", "metric": "", "rows": len(untuned),
                     "mape_pct": untuned.error_pct.abs().mean(),
                     "worst_pct": untuned.error_pct.iloc[untuned.error_pct.abs().argmax()], "tuned_on": "no"})
    return pd.DataFrame(rows)


def winner_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Where a setup was measured both as TP and as PP: does the prediction pick the same winner?"""
    keys = ["source", "model", "hardware", "recipe", "batch", "isl", "osl", "metric"]
    rows = []
    for key, grp in table[(table.tp * table.pp > 1)].groupby(keys):
        tp, pp = grp[grp.pp == 1], grp[grp.tp == 1]
        if tp.empty or pp.empty:
            continue
        measured, predicted = pp.value.iloc[0] / tp.value.iloc[0], pp.predicted.iloc[0] / tp.predicted.iloc[0]
        rows.append({**dict(zip(keys, key)), "measured_pp_over_tp": measured, "predicted_pp_over_tp": predicted,
                     "winner_agrees": (measured > 1) == (predicted > 1)})
    return pd.DataFrame(rows)


def findings(fabric: FabricModel, hardware: str = "dgx-spark") -> pd.DataFrame:
    """The review's qualitative findings (docs/sources.md#calibration) checked on `fabric`, TP=2 vs PP=2, batches 1..128."""
    from commbench.predict.explain import pp_over_tp
    from commbench.predict.grid import predict_grid

    hw = load_hardware(hardware)
    grid = predict_grid(["gpt-oss-120b", "llama-3.1-8b-instruct"], hw, fabric, ["tp", "pp"], list(BATCHES),
                        ["balanced", "prefill-heavy"])
    ratio = pp_over_tp(grid)
    rows = []
    for scenario in ("balanced", "prefill-heavy"):
        gpt = ratio[(ratio.model == "gpt-oss-120b") & (ratio.scenario == scenario)].sort_values("batch")
        tp_ahead = [int(b) for b in gpt.batch[gpt.pp_over_tp < 1]]
        rows.append({"finding": f"gpt-oss-120b {scenario}: TP ahead only at batch 1", "holds": tp_ahead == [1],
                     "predicted": f"TP ahead at batch {', '.join(map(str, tp_ahead)) or 'none'}"})
        llama = ratio[(ratio.model == "llama-3.1-8b-instruct") & (ratio.scenario == scenario)].sort_values("batch")
        tp_ahead = [int(b) for b in llama.batch[llama.pp_over_tp < 1]]
        pp_ahead = [int(b) for b in llama.batch[llama.pp_over_tp > 1]]
        rows.append({"finding": f"llama-3.1-8b {scenario}: TP ahead at most batch sizes",
                     "holds": len(tp_ahead) > len(BATCHES) / 2, "predicted": f"TP ahead at {len(tp_ahead)} of {len(BATCHES)} batches"})
        rows.append({"finding": f"llama-3.1-8b {scenario}: PP overtakes at high concurrency",
                     "holds": max(BATCHES) in pp_ahead, "predicted": f"PP ahead at {', '.join(map(str, pp_ahead)) or 'no batch'}"})
    return pd.DataFrame(rows)


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        raise CommbenchError("no figures to check")
    return pd.concat(frames, ignore_index=True)
