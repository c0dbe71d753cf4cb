"""Explain predictions: TP vs PP in numbers and plain sentences.

Over the grids of commbench.predict.grid (predict_grid), `explain` compares TP and PP at
batch 1 and at the asked batch, names the term that decides, and shows how the verdict moves on
the fabrics a hardware profile lists for comparison.
"""

from __future__ import annotations

import pandas as pd

from commbench.collectives import get_collective
from commbench.fabric import FabricModel, load_fabric
from commbench.predict.hardware import HardwareProfile
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.predict.grid import predict_grid
from commbench.predict.serving import BREAKDOWN_TERMS
from commbench.links import LINKS
from commbench.traffic.trace import StepShape, step_ops
from commbench.traffic.workload import Workload

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
            isl: int | None = None, osl: int | None = None,
            what_if: dict | None = None) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """TP vs PP at batch 1 and `batch`: per-output-token terms, sentences saying why, and the
    TP-PP gap split by term on each fabric the hardware profile names (gap_evidence).
    what_if switches mechanisms in the first table (commbench.predict.mechanisms)."""
    batches = sorted({1, batch})
    grid = predict_grid([model], hw, fab, ["tp", "pp"], batches, [scenario], isl, osl, what_if=what_if)
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
    fabrics = [fab] + [load_fabric(name) for name in hw.compare_fabrics if name != fab.name]
    evidence = gap_evidence(model, hw, fabrics, batch, scenario, isl, osl)
    lines.extend(evidence_sentences(evidence, model, batch))
    return grid, lines, evidence


def gap_evidence(model: str, hw: HardwareProfile, fabrics: list[FabricModel], batch: int, scenario: str,
                 isl: int | None = None, osl: int | None = None) -> pd.DataFrame:
    """How much of the TP-PP gap each term accounts for, per fabric, in ms per decode step.

    Per-step time = run time / OSL (each request's share of the run; B output tokens per step).
    A term's share of the gap = B x (TP's ms per output token - PP's) for that term; positive
    terms make TP slower. Where a published TP and PP pair exists for the setup, the published
    gap (B x (1/TP - 1/PP) in ms) is set beside it and the rest is `unexplained`.
    Columns: term, then one per fabric.
    """
    table: dict[str, dict[str, float]] = {}
    for fabric in fabrics:
        grid = predict_grid([model], hw, fabric, ["tp", "pp"], [batch], [scenario], isl, osl)
        tp, pp = (grid[grid["mode"] == m].iloc[0] for m in ("tp", "pp"))
        col = {}
        for term, label in TERM_LABELS.items():
            col[label] = batch * (tp[f"{term}_ms_per_token"] - pp[f"{term}_ms_per_token"])
        col["predicted TP - PP gap"] = batch * 1e3 * (1 / tp.output_tok_s - 1 / pp.output_tok_s)
        col["predicted PP / TP"] = pp.output_tok_s / tp.output_tok_s
        if pd.notna(tp.published_tok_s) and pd.notna(pp.published_tok_s):
            published_gap = batch * 1e3 * (1 / tp.published_tok_s - 1 / pp.published_tok_s)
            col["published PP / TP"] = pp.published_tok_s / tp.published_tok_s
            col["published TP - PP gap"] = published_gap
            col["unexplained (published - predicted gap)"] = published_gap - col["predicted TP - PP gap"]
            col["of it on the TP side"] = batch * 1e3 * (1 / tp.published_tok_s - 1 / tp.output_tok_s)
            col["of it on the PP side"] = -batch * 1e3 * (1 / pp.published_tok_s - 1 / pp.output_tok_s)
        table[fabric.name] = col
    frame = pd.DataFrame(table)
    frame.index.name = "term (ms per decode step, TP minus PP)"
    return frame.reset_index()


CAUSE_CHECKS = (
    ("the transport and HCAs NCCL actually used (RoCE on both halves, one HCA, or TCP sockets)",
     "NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET mpirun -np 2 -H spark1,spark2 all_reduce_perf -b 8 -e 64M -f 2 -g 1"
     "   # look for NET/IB with both rocep1s0f0 and roceP2p1s0f0, or NET/Socket"),
    ("the fabric as the TP step uses it, against each named profile",
     "torchrun --nnodes 2 --nproc-per-node 1 --rdzv-endpoint spark1:29500 -m commbench fabric validate --expect 200gbe --backend nccl"),
    ("the decode step's own collectives in engine order on the pair",
     "torchrun --nnodes 2 --nproc-per-node 1 --rdzv-endpoint spark1:29500 -m commbench trace {model} --mode tp "
     "--batch {batch} --replay --backend nccl --out replay.csv && commbench predict {model} --fabric replay.csv"),
    ("the slope of TP step time with batch (a fabric or kernel cost grows with batch; a per-call or host cost does not)",
     "for c in 1 8 32 128; do vllm bench serve --model $MODEL --max-concurrency $c --num-prompts $((4*c)) "
     "--save-result --metadata tp=2 pp=1; done && commbench accuracy --published *.json   # MODEL: its Hugging Face id"),
    ("the MoE kernel path at TP=2 and CUDA graphs vs eager",
     "VLLM_LOGGING_LEVEL=DEBUG vllm serve $MODEL -tp 2 2>&1 | grep -i -E 'moe|marlin|cuda graph'"
     "   # then the same with --enforce-eager"),
    ("the gpt-oss vs Llama contrast (similar all-reduces, dense compute): if Llama's TP keeps its lead, the link is not the cause",
     "commbench explain llama-3.1-8b-instruct --batch {batch}   # and the same vllm bench serve runs for Llama-3.1-8B"),
)


def evidence_sentences(evidence: pd.DataFrame, model: str, batch: int) -> list[str]:
    """Plain sentences from gap_evidence: how much each fabric explains, what is left, what to measure."""
    rows = evidence.set_index(evidence.columns[0])
    lines = []
    if "published TP - PP gap" in rows.index:
        gap = rows.loc["published TP - PP gap"].iloc[0]
        lines.append(f"Published gap at batch {batch}: TP takes {gap:.1f} ms more per decode step than PP "
                     f"(PP/TP {rows.loc['published PP / TP'].iloc[0]:.2f}).")
        for name in rows.columns:
            explained = rows.loc["predicted TP - PP gap", name]
            rest = rows.loc["unexplained (published - predicted gap)", name]
            lines.append(f"  {name}: the modelled terms give {explained:+.1f} ms (PP/TP {rows.loc['predicted PP / TP', name]:.2f}); "
                         f"unexplained {rest:.1f} ms per step ({rows.loc['of it on the TP side', name]:.1f} ms of it on TP's side).")
        lines.append("What no measured term explains is reported, not fitted. Measurements that tell the candidate causes apart:")
    else:
        lines.append("No published TP and PP pair for this setup; the fabrics side by side (PP/TP): "
                     + ", ".join(f"{n} {rows.loc['predicted PP / TP', n]:.2f}" for n in rows.columns) + ".")
        lines.append("To check the verdict on your own pair:")
    for cause, command in CAUSE_CHECKS:
        lines.append(f"  - {cause}: `{command.format(model=model, batch=batch)}`")
    return lines


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
    all_reduce = get_collective("all_reduce")
    for label, size in model_message_sizes(model, batch):
        rows.append({"level": f"{fabric.name}: {label}", "msg_bytes": size,
                     "busbw_gbps": all_reduce.wire_bytes(size, n) / fabric.time_s("all_reduce", size, n) / 1e9})
    frame = pd.DataFrame(rows)
    frame["pct_of_line_rate"] = frame.busbw_gbps / (line / 1e9) * 100
    return frame
