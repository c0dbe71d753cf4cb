"""Serving model: per-stage compute + communication -> tok/s, TTFT, TPOT and a time breakdown.

A full run is B concurrent requests of ISL input and OSL output tokens served with chunked prefill
(commbench.traffic.workload.build_schedule: decode first, then prompt chunks up to the token budget).
Every step of the schedule (a TP step, or a PP round of micro-batches) is priced by
commbench.predict.step_cost, whose docstring gives the formulas: compute (weights, KV, FLOPs at
the binding roof), TP communication, PP sends, host overhead and the bubble; MoE expert coverage
is commbench.predict.routing. This module walks the schedule (the per-step token counts, contexts
and attention pairs as flat arrays, priced in one vectorised call), sums the breakdown terms, and
reports the run as one row with the metrics `vllm bench serve` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from commbench.fabric import FabricModel
from commbench.predict.hardware import HardwareProfile
from commbench.predict.recipes import Engine
# the serving model's routing assumption, also named here: `commbench compute` (cli/measure) passes
# expert_coverage to the measured compute, and the model report cites ROUTING_ZIPF_EXPONENT in this module
from commbench.predict.routing import ROUTING_ZIPF_EXPONENT, expert_coverage  # noqa: F401
from commbench.predict.step_cost import StageCost, round_cost, stage_cost
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.workload import Schedule, Workload, build_schedule

BREAKDOWN_TERMS = ("weights_s", "kv_s", "flops_s", "tp_latency_s", "tp_bandwidth_s", "pp_send_s",
                   "bubble_s", "overhead_s")


def _sum_min(keys_sorted: np.ndarray, cumsum: np.ndarray, j: np.ndarray, cap: float) -> np.ndarray:
    """For each j: sum_i min(keys_i + j, cap), keys sorted ascending with their cumsum."""
    n = len(keys_sorted)
    if n == 0:
        return np.zeros_like(j, dtype=float)
    idx = np.searchsorted(keys_sorted, cap - j, side="left")  # keys below cap - j are uncapped
    below = np.where(idx > 0, cumsum[np.maximum(idx - 1, 0)], 0.0) + idx * j
    return below + (n - idx) * cap


def _prefill_pairs(start: int, n: int, cap: float | None) -> float:
    """Causal (query, key) pairs of a prompt chunk at positions [start, start+n): sum of min(p+1, cap)."""
    total = n * start + n * (n + 1) / 2
    if cap is None:
        return total
    first_capped = max(start, int(cap) - 1)  # positions p >= cap-1 see cap keys
    if first_capped >= start + n:
        return total
    uncapped_n = first_capped - start
    return uncapped_n * start + uncapped_n * (uncapped_n + 1) / 2 + (start + n - first_capped) * cap


@dataclass
class Prediction:
    wall_s: float
    schedule: Schedule
    clock: np.ndarray  # [steps] end time of every engine step (PP: schedule round), s
    sampled: np.ndarray  # [steps] output tokens each step samples
    breakdown: dict
    steps: int
    weights_gb_per_rank: float
    kv_gb_per_rank: float

    @property
    def ttft_s(self) -> float:
        """Mean time to first token over the requests."""
        return float(np.mean(self.clock[self.schedule.prefill_done_step]))


def predict_run(plan: ParallelPlan, w: Workload, hw: HardwareProfile, fabric: FabricModel,
                engine: Engine = Engine()) -> Prediction:
    """Walk the schedule and price every step (commbench.predict.step_cost gives the formulas).

    Every step of the run becomes one entry of flat arrays (tokens, sequences, summed contexts),
    priced in one vectorised round_cost call; runs of identical decode steps differ only in
    their contexts, which grow by one key per sequence per step.
    """
    from commbench.traffic.limits import check_workload

    pp = plan.pp
    check_workload(plan.model, w, pp)  # context, concurrency, steps, memory, before any step is priced
    stages = [stage_cost(plan, s, hw, engine.moe_kernel) for s in range(pp)]
    schedule = build_schedule(w, w.token_budget * pp)
    a = _step_columns(w.batch, w.isl, w.osl, w.token_budget * pp, stages[0].window or None)
    m = plan.micro_batches(a["seqs"])
    step, busy, tp_lat, tp_bw, send_s, bubble = round_cost(
        plan, stages, fabric, hw, m, a["tokens"], a["seqs"], a["kv_full"], a["kv_slide"],
        a["pairs_full"], a["pairs_slide"], engine)
    n_steps = len(m)
    launch, host = busy.pop("launch_s"), busy.pop("host_s")
    terms = {name: float(np.sum(np.broadcast_to(value, (n_steps,)))) for name, value in busy.items()}
    terms["tp_latency_s"] = float(np.sum(m * tp_lat))
    terms["tp_bandwidth_s"] = float(np.sum(m * tp_bw))
    terms["pp_send_s"] = float(np.sum(np.broadcast_to(send_s, (n_steps,))))
    terms["bubble_s"] = float(np.sum(np.broadcast_to(bubble, (n_steps,))))
    terms["overhead_s"] = float(np.sum(np.broadcast_to(host, (n_steps,))) + np.sum(np.broadcast_to(launch, (n_steps,))))
    clock = np.cumsum(np.broadcast_to(step, (n_steps,)))  # end time of every step
    max_context = w.isl + w.osl
    kv_gb = max(_kv_resident_bytes(sc, max_context) for sc in stages) * w.batch / 1e9
    return Prediction(float(clock[-1]), schedule, clock, a["sampled"], {k: terms[k] for k in BREAKDOWN_TERMS},
                      schedule.num_steps, max(sc.weight_bytes_total for sc in stages) / 1e9, kv_gb)


@lru_cache(maxsize=256)
def _step_columns(batch: int, isl: int, osl: int, budget: int, window: int | None) -> dict[str, np.ndarray]:
    """One entry per engine step of the schedule: tokens, sequences, sampled (output tokens), summed
    contexts kv_full / kv_slide (keys read; sliding layers capped at `window`) and attention pairs.

    They depend only on the schedule and the window, so every plan, hardware and fabric priced on
    the same workload shares them (as build_schedule's cache shares the schedule). Read-only arrays.
    """
    schedule = build_schedule(Workload(batch, isl, osl), budget)
    cols = {k: [] for k in ("tokens", "seqs", "kv_full", "kv_slide", "pairs_full", "pairs_slide", "sampled")}
    for g in schedule.groups:
        j = np.arange(g.count, dtype=float)
        keys = np.sort(g.decode_keys.astype(float))
        cumsum = np.cumsum(keys)
        n_dec = len(keys)
        kv_full = (cumsum[-1] if n_dec else 0.0) + n_dec * j  # sum of contexts, step j of the group
        kv_slide = _sum_min(keys, cumsum, j, window) if window else kv_full
        pairs_full, pairs_slide = kv_full, kv_slide
        for start, n in g.prefill_segments:
            kv_full = kv_full + (start + n)
            kv_slide = kv_slide + (min(start + n, window) if window else start + n)
            pairs_full = pairs_full + _prefill_pairs(start, n, None)
            pairs_slide = pairs_slide + _prefill_pairs(start, n, window)
        sampled = n_dec + sum(1 for start, n in g.prefill_segments if start + n == isl)  # tokens output
        for name, value in (("tokens", g.tokens), ("seqs", g.seqs), ("kv_full", kv_full), ("kv_slide", kv_slide),
                            ("pairs_full", pairs_full), ("pairs_slide", pairs_slide), ("sampled", sampled)):
            cols[name].append(np.full(g.count, value, dtype=float) if np.ndim(value) == 0 else value)
    out = {k: np.concatenate(v) for k, v in cols.items()}
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _kv_resident_bytes(sc: StageCost, context: int) -> float:
    """A sequence's resident cache: its KV and its mixers' recurrent state."""
    slide = min(context, sc.window) if sc.window else context
    return (sc.full_layers * context + sc.sliding_layers * slide) * sc.kv_bytes_per_token_layer + sc.state_bytes_per_seq


def _linear_percentiles(sorted_values: np.ndarray, qs) -> list[float]:
    """np.percentile(values, q) (method 'linear') of already sorted values, without its overhead."""
    n = len(sorted_values)
    out = []
    for q in qs:
        pos = q / 100 * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)))
    return out


def _weighted_percentiles(values: np.ndarray, weights: np.ndarray, qs) -> list[float]:
    """The q-th percentiles (0-100) of values repeated weights times (numpy's 'inverted_cdf'), one sort."""
    keep = weights > 0
    if not keep.any():
        return [0.0 for _ in qs]
    order = np.argsort(values[keep])
    v, cw = values[keep][order], np.cumsum(weights[keep][order])
    at = np.searchsorted(cw, np.asarray(qs, dtype=float) / 100 * cw[-1], side="left").clip(0, len(v) - 1)
    return [float(x) for x in v[at]]


def bench_metrics(p: Prediction, w: Workload) -> dict:
    """The metrics `vllm bench serve` reports, under its names (vllm/benchmarks/serve.py, calculate_metrics).

    All B requests start at t = 0. Per request: TTFT = end of the step that samples its first token;
    E2EL = end of the step that samples its last; TPOT = (E2EL - TTFT) / (OSL - 1). ITL: every gap
    between a request's consecutive tokens, i.e. each decode step's duration once per request it
    serves. Peak output tok/s: the most tokens sampled in one whole second since the start (the
    1-second buckets of calculate_metrics).
    """
    first, last = p.clock[p.schedule.prefill_done_step], p.clock[p.schedule.finish_step]
    tpot = (last - first) / (w.osl - 1) if w.osl > 1 else np.zeros_like(first)
    durations = np.diff(p.clock, prepend=0.0)
    decoding = np.maximum(p.sampled - _completions(p), 0.0)  # requests getting a 2nd..OSL-th token
    per_second = np.bincount(np.floor(p.clock).astype(np.int64), weights=p.sampled)
    row = {"output_throughput": w.batch * w.osl / p.wall_s, "total_token_throughput": w.batch * (w.isl + w.osl) / p.wall_s,
           "request_throughput": w.batch / p.wall_s, "max_output_tokens_per_s": float(per_second.max()),
           "duration": p.wall_s}
    for name, values, weights in (("ttft", first, None), ("tpot", tpot, None), ("itl", durations, decoding),
                                  ("e2el", last, None)):
        if weights is None:  # one value per request: np.percentile's linear rule, as vllm's calculate_metrics
            mean, (median, p99) = float(np.mean(values)), _linear_percentiles(np.sort(values), (50, 99))
        else:
            mean = float(np.average(values, weights=weights)) if weights.sum() else 0.0
            median, p99 = _weighted_percentiles(values, weights, (50, 99))
        row[f"mean_{name}_ms"], row[f"median_{name}_ms"], row[f"p99_{name}_ms"] = mean * 1e3, median * 1e3, p99 * 1e3
    return row


def _completions(p: Prediction) -> np.ndarray:
    """Requests whose first token each step samples."""
    return np.bincount(p.schedule.prefill_done_step, minlength=len(p.clock)).astype(float)


def predict_row(plan: ParallelPlan, w: Workload, hw: HardwareProfile, fabric: FabricModel,
                engine: Engine = Engine()) -> dict:
    """One tidy row: inputs, tok/s, TTFT, TPOT, vllm-bench metrics, the breakdown in ms per output token."""
    p = predict_run(plan, w, hw, fabric, engine)
    out_tokens = w.batch * w.osl
    memory_gb = p.weights_gb_per_rank + p.kv_gb_per_rank
    metrics = bench_metrics(p, w)
    row = {
        "model": plan.model.name, "mode": plan.mode, "tp": plan.tp, "pp": plan.pp, "batch": w.batch,
        "scenario": w.scenario, "isl": w.isl, "osl": w.osl, "hardware": hw.name, "fabric": fabric.name,
        "recipe": plan.model.recipe, "engine": engine.label,
        "output_tok_s": metrics["output_throughput"], "total_tok_s": metrics["total_token_throughput"],
        "ttft_ms": metrics["mean_ttft_ms"], "tpot_ms": metrics["mean_tpot_ms"], "run_s": p.wall_s, "steps": p.steps,
    }
    for name in BREAKDOWN_TERMS:
        row[name[:-2] + "_ms_per_token"] = p.breakdown[name] / out_tokens * 1e3
    row.update({k: v for k, v in metrics.items() if k not in ("output_throughput", "total_token_throughput")})
    row["memory_gb_per_rank"] = memory_gb
    row["fits_memory"] = bool(memory_gb <= hw.memory_gb)
    return row
