"""Predict grids and explain them: TP vs PP in numbers and plain sentences.

`predict_grid` runs the serving model (commbench.serving) over models x modes x batches x
scenarios and sets published figures beside the rows they match. `explain` compares TP and PP at
batch 1 and at the asked batch, names the term that decides, and shows how the verdict moves on
the fabrics a hardware profile lists for comparison.
"""

from __future__ import annotations

import itertools

import pandas as pd

from commbench import CommbenchError
from commbench.calibrate import PUBLISHED_ROWS
from commbench.fabric import FabricModel, load_fabric
from commbench.hardware import HardwareProfile
from commbench.model_card import load_model_card
from commbench.plan import ParallelPlan
from commbench.serving import BREAKDOWN_TERMS, predict_row
from commbench.links import LINKS
from commbench.trace import StepShape, step_ops
from commbench.workload import SCENARIOS, Workload

TERM_LABELS = {
    "weights": "weight reads",
    "kv": "KV-cache reads",
    "flops": "FLOPs (compute-bound steps)",
    "tp_latency": "TP collectives, count x latency",
    "tp_bandwidth": "TP collectives, bytes / bandwidth",
    "pp_send": "PP boundary sends",
    "bubble": "pipeline bubble (a stage waiting)",
    "overhead": "host overhead per step",
}
TERM_COLUMNS = [t[:-2] + "_ms_per_token" for t in BREAKDOWN_TERMS]


def parse_modes(text: str) -> list[str]:
    """'both' (tp and pp), or a comma list of tp, pp and tp+pp (tensor inside pipeline stages)."""
    if text == "both":
        return ["tp", "pp"]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes or [text]:
        if mode not in ("tp", "pp", "tp+pp"):
            raise CommbenchError(f"unknown mode {mode!r}; valid: tp, pp, tp+pp, both (or a comma list)")
    return modes


def plan_for(card, mode: str, tp: int | None, pp: int | None) -> ParallelPlan:
    """tp: tp ranks (default 2); pp: pp stages (default 2); tp+pp: both (default 2 x 2)."""
    if mode == "tp+pp":
        return ParallelPlan(card, tp=tp or 2, pp=pp or 2)
    return ParallelPlan.for_mode(card, mode, tp=tp if mode == "tp" else None, pp=pp if mode == "pp" else None)


def parse_scenarios(text: str) -> list[str]:
    names = list(SCENARIOS) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in SCENARIOS:
            raise CommbenchError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}, all")
    return names


def published_for(row: dict, extra: pd.DataFrame | None = None) -> float | None:
    """The measured or published output tok/s for a predicted row, or None.

    Built in: the calibration rows (two DGX Sparks, TP=2 or PP=2, preset ISL/OSL). `extra` is a
    user's table (predict --published FILE) with columns model, mode, batch, scenario,
    output_tok_s and optionally hardware, tp, pp: matched on every column it has.
    """
    if extra is not None:
        match = extra
        for col in ("model", "mode", "batch", "scenario", "hardware", "tp", "pp"):
            if col in extra.columns:
                match = match[match[col] == row[col]]
        if len(match):
            return float(match.output_tok_s.iloc[0])
    if row["hardware"] != "dgx-spark" or row["isl"] != SCENARIOS.get(row["scenario"], (0, 0))[0] \
            or row["tp"] * row["pp"] != 2:  # the review ran two boxes: TP=2 or PP=2
        return None
    for p in PUBLISHED_ROWS:
        if (p.model, p.mode, p.batch, p.scenario) == (row["model"], row["mode"], row["batch"], row["scenario"]):
            return p.output_tok_s
    return None


def load_published(path: str) -> pd.DataFrame:
    """A table of measured/published tok/s to set beside predictions (see published_for)."""
    from commbench.results import load_table

    frame = load_table(path)[0]
    need = {"model", "mode", "batch", "scenario", "output_tok_s"}
    if not need <= set(frame.columns):
        raise CommbenchError(f"published table {path} lacks columns {sorted(need - set(frame.columns))}; "
                             f"it needs {', '.join(sorted(need))} (optionally hardware, tp, pp)")
    return frame


def predict_grid(models: list[str], hardware: HardwareProfile, fabric: FabricModel, modes: list[str],
                 batches: list[int], scenarios: list[str], isl: int | None = None, osl: int | None = None,
                 token_budget: int = 8192, tp: int | None = None, pp: int | None = None,
                 published: pd.DataFrame | None = None) -> pd.DataFrame:
    rows = []
    for name in models:
        card = load_model_card(name)
        plans = {mode: plan_for(card, mode, tp, pp) for mode in modes}
        for scenario, batch, mode in itertools.product(scenarios, batches, modes):
            w = Workload.from_options(batch, scenario, isl, osl, token_budget)
            row = predict_row(plans[mode], w, hardware, fabric)
            figure = published_for(row, published)
            row["published_tok_s"] = figure
            row["error_pct"] = (row["output_tok_s"] / figure - 1) * 100 if figure else None
            rows.append(row)
    return pd.DataFrame(rows)


def _per_token(row: pd.Series) -> dict[str, float]:
    return {c[: -len("_ms_per_token")]: float(row[c]) for c in TERM_COLUMNS}


def _top_terms(row: pd.Series, n: int = 3) -> str:
    terms = sorted(_per_token(row).items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in terms) or 1.0
    return ", ".join(f"{TERM_LABELS[k]} {v:.2f} ms ({v / total:.0%})" for k, v in terms[:n] if v > 0)


def pp_over_tp(grid: pd.DataFrame, index=("model", "scenario", "batch")) -> pd.DataFrame:
    """One row per (index) with tp and pp output tok/s and pp_over_tp (above 1: PP ahead)."""
    ratio = grid[grid["mode"].isin(["tp", "pp"])].pivot_table(
        index=list(index), columns="mode", values="output_tok_s").reset_index()
    ratio["pp_over_tp"] = ratio["pp"] / ratio["tp"]
    return ratio


def explain(model: str, hw: HardwareProfile, fab: FabricModel, batch: int, scenario: str,
            isl: int | None = None, osl: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """TP vs PP at batch 1 and `batch`: a table of per-output-token terms and sentences saying why."""
    batches = sorted({1, batch})
    grid = predict_grid([model], hw, fab, ["tp", "pp"], batches, [scenario], isl, osl)
    lines = []
    w = Workload.from_options(batch, scenario, isl, osl)
    lines.append(f"{model} on two {hw.name} ({fab.name} fabric), {w.scenario} ISL {w.isl} / OSL {w.osl}; "
                 f"time per output token of the whole system, split into named terms.")
    for b in batches:
        tp_row = grid[(grid.batch == b) & (grid["mode"] == "tp")].iloc[0]
        pp_row = grid[(grid.batch == b) & (grid["mode"] == "pp")].iloc[0]
        tp_s, pp_s = tp_row.output_tok_s, pp_row.output_tok_s
        winner, loser = ("TP", "PP") if tp_s > pp_s else ("PP", "TP")
        ratio = max(tp_s, pp_s) / min(tp_s, pp_s)
        diff = {k: _per_token(tp_row)[k] - _per_token(pp_row)[k] for k in TERM_LABELS}
        # the term that moves the gap most in the winner's favour
        key = max(diff, key=lambda k: diff[k] if winner == "PP" else -diff[k])
        lines.append(f"Batch {b}: {winner} ahead, {max(tp_s, pp_s):.1f} vs {min(tp_s, pp_s):.1f} output tok/s "
                     f"({ratio:.2f}x). Deciding term: {TERM_LABELS[key]}, {abs(diff[key]):.2f} ms per token more on {loser}.")
        lines.append(f"  TP: {_top_terms(tp_row)}.")
        lines.append(f"  PP: {_top_terms(pp_row)}.")
    ladder = theory_ladder(model, fab, batch)
    decode = ladder[ladder.level.str.contains(f"TP decode all-reduce, b{batch}")]
    if not decode.empty:
        row = decode.iloc[0]
        lines.append(f"Percent of theory: a TP decode all-reduce at batch {batch} ({row.msg_bytes / 1e3:,.0f} KB) runs at "
                     f"{row.busbw_gbps:.3g} GB/s busbw on {fab.name}, {row.pct_of_line_rate:.2g}% of the "
                     f"{ladder.iloc[0].busbw_gbps:.3g} GB/s line rate.")
    for other in (load_fabric(name) for name in hw.compare_fabrics if name != fab.name):
        alt = predict_grid([model], hw, other, ["tp", "pp"], [batch], [scenario], isl, osl)
        tp_s, pp_s = (float(alt[alt["mode"] == m].output_tok_s.iloc[0]) for m in ("tp", "pp"))
        verdict = "TP" if tp_s > pp_s else "PP"
        lines.append(f"On {other.name} instead ({other.description}): batch {batch} TP {tp_s:.1f} vs PP "
                     f"{pp_s:.1f} tok/s, {verdict} ahead. The fabric, not the model, decides: "
                     f"run `commbench fabric validate` before choosing.")
    return grid, lines


def model_message_sizes(model: str, batch: int) -> list[tuple[str, float]]:
    """The model's own messages: TP decode all-reduce at batch 1 and `batch`, TP prefill chunk, PP send."""
    card = load_model_card(model)
    tp, pp = ParallelPlan.for_mode(card, "tp"), ParallelPlan.for_mode(card, "pp")
    w = Workload.from_options(batch)
    marks = []
    for label, plan, shape in (("TP decode all-reduce, b1", tp, StepShape(1, 1)),
                               (f"TP decode all-reduce, b{batch}", tp, StepShape(batch, batch)),
                               (f"TP prefill chunk all-reduce ({w.prefill_chunk_tokens} tok)", tp,
                                StepShape(w.prefill_chunk_tokens, 1)),
                               (f"PP boundary send, b{batch}", pp, StepShape(-(-batch // 2), -(-batch // 2)))):
        ops = step_ops(plan, shape, "decode")
        op = next(o for o in ops if o.collective in ("all_reduce", "send_recv"))
        marks.append((label, float(op.msg_bytes)))
    return marks


def theory_ladder(model: str, fabric: FabricModel, batch: int, n: int = 2) -> pd.DataFrame:
    """Percent of theory from the line rate down to the model's own messages on `fabric`.

    Rows: the link's line rate, its best published point-to-point figure, the fabric's
    large-message busbw, then busbw = S x f / t(S) at each of the model's message sizes.
    """
    link = LINKS.get(fabric.link)
    line = link.bandwidth_Bps if link else fabric.segments[-1].busbw_Bps
    rows = [{"level": f"{fabric.link or fabric.name} line rate", "msg_bytes": None, "busbw_gbps": line / 1e9}]
    if link is not None and link.measured_Bps:
        rows.append({"level": "published point-to-point (RDMA write)", "msg_bytes": None, "busbw_gbps": link.measured_Bps / 1e9})
    rows.append({"level": f"{fabric.name}: large-message busbw", "msg_bytes": None,
                 "busbw_gbps": fabric.segments[-1].busbw_Bps / 1e9})
    factor = 2 * (n - 1) / n
    for label, size in model_message_sizes(model, batch):
        rows.append({"level": f"{fabric.name}: {label}", "msg_bytes": size,
                     "busbw_gbps": size * factor / fabric.time_s("all_reduce", size, n) / 1e9})
    frame = pd.DataFrame(rows)
    frame["pct_of_line_rate"] = frame.busbw_gbps / (line / 1e9) * 100
    return frame
