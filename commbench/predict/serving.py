"""Serving model: per-stage compute + communication -> tok/s, TTFT, TPOT and a time breakdown.

A full run is B concurrent requests of ISL input and OSL output tokens served with chunked prefill
(commbench.traffic.workload.build_schedule: decode first, then prompt chunks up to the token budget).
Each engine step costs, per rank (every term is in seconds and named in the breakdown):

    compute = max(bytes / BW_achieved,  FLOPs / (FLOP_peak * efficiency(tokens)))
        efficiency(tokens) = FLOP_EFFICIENCY, or a GEMM curve measured by `commbench compute`
        BW_achieved = the hardware profile's measured read bandwidth (commbench.predict.hardware)
        bytes = weights touched + KV cache read, at the formats the serving recipe gives them
                (commbench.predict.recipes: e.g. MXFP4 attention, an FP8 KV cache)
            weights: attention, dense MLP, router, LM head (last stage): all of the rank's shard;
                     MoE experts: the expected fraction touched, mean_i 1 - (1 - pi_i)^T for T
                     tokens, pi_i a Zipf law over experts (ROUTING_ZIPF_EXPONENT), of the shard
            KV: per sequence, context x kv_bytes_per_token_per_layer over the stage's layers, a
                sliding-window layer reading at most `window` tokens; a rank holds kv_heads/tp heads
        FLOPs = 2 x matmul params x tokens (+ LM head for sampled rows) + attention 4 x q_size x
                (query, key) pairs per layer; each weight group at its own dtype's peak
    TP comm = sum over the step's collectives (commbench.traffic.trace.step_ops) of
              alpha + S x busbw_factor / busbw  (commbench.fabric), serialised with compute
              -> reported as count x latency (tp_latency_s) and bytes / bandwidth (tp_bandwidth_s)
    overhead = the engine's host work per scheduled (micro-)batch, host_step_s + host_per_request_s
               x requests, plus kernel launches on steps that are not CUDA-graph replays
               (commbench.predict.recipes.Engine)

TP: step = compute + launches + TP comm + host work; with async scheduling on an executor that has
it (mp, not Ray) the host work overlaps: step = max(compute + launches + TP comm, host work).
PP: the scheduler keeps pp micro-batches in flight (vLLM max_concurrent_batches = pp), so a round
of the schedule (pp x token budget) is split into m = min(pp, sequences) micro-batches; with
stage times s_k per micro-batch and boundary sends c,

    round = max(m x max_k s_k,  sum_k s_k + sum c + overhead,  m x overhead)

the first term is the busiest stage working through all m micro-batches, the second one
micro-batch's trip through every stage (its next decode step needs its sampled token), the third
the host scheduling every micro-batch. The engine core schedules one micro-batch while another
runs (vLLM V1's batch queue), so host overhead is hidden except on that dependency path; TP
steps (no batch queue) pay it serially. Per-rank terms are averaged over stages; the rest of
the round, where a rank waits, is the bubble.
"""

from __future__ import annotations

from dataclasses import dataclass
import dataclasses
import functools
from functools import lru_cache

import numpy as np

from commbench.fabric import FabricModel
from commbench.predict.hardware import HardwareProfile
from commbench.traffic.model_card import ModelCard
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.trace import StepShape, step_ops
from commbench.predict.recipes import Engine, moe_padding_factor
from commbench.traffic.workload import Schedule, Workload, build_schedule

ROUTING_ZIPF_EXPONENT = 1.0
"""How concentrated MoE routing is within one engine step, as the exponent s of a Zipf law over
experts: expert i (by popularity) is picked by a token with probability pi_i proportional to i^-s,
scaled so the k picks per token add up (sum pi_i = k, each <= 1). s = 0 is uniform routing.
It stands for both load imbalance and the correlation between the concurrent sequences of a step
(benchmark clients often send near-identical prompts). Unitless. No measurement below the
end-to-end level exists in this project (expert-load histograms of a served model would be one),
so it is chosen on one dev source - the kubis.ai vLLM gpt-oss-120b single-Spark decode curve
(published/figures.csv, marked `tuned`), minimum error at s = 1.0 - and the error is reported on the
others (`commbench accuracy`), the kubis.ai TP=2 curve among them."""

BREAKDOWN_TERMS = ("weights_s", "kv_s", "flops_s", "tp_latency_s", "tp_bandwidth_s", "pp_send_s",
                   "bubble_s", "overhead_s")


@lru_cache(maxsize=64)
def expert_pick_probabilities(k: int, num_experts: int, skew: float) -> np.ndarray:
    """pi_i, the probability that one token picks expert i: proportional to i^-skew, sum k, each <= 1.

    Where the power law would give an expert more than certainty, it is capped at 1 and the excess
    spread over the others in proportion (water filling), so the k picks stay k distinct experts.
    """
    weights = np.arange(1, num_experts + 1, dtype=float) ** -skew
    pi = np.empty(num_experts)
    capped = np.zeros(num_experts, dtype=bool)
    for _ in range(num_experts):
        free = ~capped
        pi[free] = weights[free] * (k - capped.sum()) / weights[free].sum()
        new = free & (pi > 1.0)
        if not new.any():
            break
        capped |= new
        pi[capped] = 1.0
    pi.setflags(write=False)
    return pi


def expert_coverage(tokens, k: int, num_experts: int, skew: float = ROUTING_ZIPF_EXPONENT):
    """Expected fraction of E experts that T independent tokens touch: mean_i 1 - (1 - pi_i)^T.

    Uniform routing (skew 0, pi_i = k/E) gives 1 - (1 - k/E)^T. tokens may be an array; it is
    computed once per run of equal values (a schedule's steps come in long runs of one token count).
    """
    if skew == 0:
        return 1.0 - (1.0 - k / num_experts) ** np.asarray(tokens, dtype=float)
    miss = 1.0 - expert_pick_probabilities(k, num_experts, skew)
    t = np.asarray(tokens, dtype=float)
    if t.ndim == 0:
        return float(1.0 - np.mean(miss ** t))
    flat = t.ravel()
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    cover = 1.0 - np.mean(miss[:, None] ** flat[starts][None, :], axis=0)
    return np.repeat(cover, np.diff(np.r_[starts, flat.size])).reshape(t.shape)


@dataclass(frozen=True)
class StageCost:
    """Per-rank cost coefficients of one pipeline stage (its layers, its TP shard)."""

    fixed_weight_bytes: float  # attention, dense MLP, router, LM head: read every step
    expert_bytes_all: float  # all experts of the stage's MoE layers, this rank's shard
    moe_k: int
    moe_e: int
    kv_bytes_per_token_layer: float  # this rank's share
    full_layers: int
    sliding_layers: int
    window: int
    s_per_token: float  # matmul seconds per token at peak FLOP/s (2 x params / peak, summed over weight groups)
    s_per_sampled: float  # LM head seconds per sampled row, at peak
    s_per_pair: float  # attention seconds per (query, key) pair per layer, at peak
    weight_bytes_total: float  # resident weights on the rank (memory check)
    layers: int  # decoder layers on the stage (kernel launches scale with them)
    state_bytes_per_seq: float = 0.0  # Mamba / Gated DeltaNet recurrent state of a sequence, this rank's share


def stage_cost(plan: ParallelPlan, stage: int, hw: HardwareProfile, moe_kernel: str = "triton") -> StageCost:
    """One stage's per-rank costs, summed over its layers' blocks (ModelCard.layer_params):
    attention and parallel blocks, dense MLPs of each layer's width, MoE blocks (router whole,
    experts / tp), Mamba / Gated DeltaNet mixers (/ tp, priced as attention weights); KV for the
    attention blocks only (sliding ones capped by the window), and the mixers' recurrent state.
    MXFP4 experts are padded as `moe_kernel` pads them (recipes.moe_padding_factor): bytes and FLOPs."""
    # long: one sum per weight group, then the StageCost fields in the order the dataclass lists them
    m: ModelCard = plan.model
    tp = plan.tp
    layers = list(plan.stage_layer_range(stage))
    groups = [m.layer_params(i) for i in layers]
    attn = sum(g["attention"] for g in groups) / tp
    dense = sum(g["dense_mlp"] for g in groups) / tp
    mixer = sum(g["mixer"] for g in groups) / tp
    n_moe = sum(m.blocks_of(i).count("moe") for i in layers)
    n_attn = sum(m.attention_blocks(i) for i in layers)
    n_sliding = sum(m.attention_blocks(i) for i in layers if m.sliding_layer_mask[i]) if m.sliding_window else 0
    act = m.activation_dtype

    def rate(group: str) -> float:  # peak: the efficiency is applied per step (HardwareProfile.flop_efficiency_at)
        return hw.flops_for(act, m.weight_bytes(group))

    moe_layer, dense_layer = plan.layer_shard(True), plan.layer_shard(False)
    router = n_moe * moe_layer.router
    pad = 1.0
    if n_moe and moe_kernel != "triton" and m.weight_bytes("experts") < 1.0:  # the MXFP4 kernels' padding
        pad = moe_padding_factor(m.moe_intermediate_size, m.hidden_size, tp, moe_kernel)
    experts_all = n_moe * moe_layer.mlp * pad if n_moe else 0.0
    last = stage == plan.pp - 1
    lm_head = plan.padded_vocab * m.hidden_size / tp if last else 0.0
    embed = plan.padded_vocab * m.hidden_size / tp if stage == 0 else 0.0
    fixed = ((attn + mixer) * m.weight_bytes("attention") + dense * m.weight_bytes("dense_mlp")
             + router * m.weight_bytes("router") + lm_head * m.weight_bytes("lm_head"))
    expert_bytes = experts_all * m.weight_bytes("experts")
    active_experts = n_moe * moe_layer.active_mlp * pad if n_moe else 0.0
    s_per_token = 2 * ((attn + mixer) / rate("attention") + dense / rate("dense_mlp") + router / rate("router")
                       + (active_experts / rate("experts") if n_moe else 0.0))
    kv_share = plan.kv_heads_per_rank / m.num_key_value_heads
    state = sum(m.state_bytes_per_seq.get(b, 0.0) for i in layers for b in m.blocks_of(i)) / tp
    return StageCost(
        fixed_weight_bytes=fixed, expert_bytes_all=expert_bytes, moe_k=m.experts_per_token, moe_e=m.num_experts,
        kv_bytes_per_token_layer=m.kv_bytes_per_token_per_layer * kv_share,
        full_layers=n_attn - n_sliding, sliding_layers=n_sliding, window=m.sliding_window or 0,
        s_per_token=s_per_token,
        s_per_sampled=2 * lm_head / rate("lm_head") if last else 0.0,
        s_per_pair=dense_layer.attention_flops(1.0) / hw.peak_flops.get(act, hw.flops_for(act, 2.0)),
        weight_bytes_total=fixed + expert_bytes + embed * m.weight_bytes("embedding"),
        layers=len(layers),
        state_bytes_per_seq=state,
    )


@dataclass(frozen=True)
class CommCoefficients:
    """Each op of a step is S = a x tokens + b x sampled bytes, called `calls` times (trace.step_ops)."""

    collective: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    calls: np.ndarray
    group_size: np.ndarray
    is_pp_send: np.ndarray


@lru_cache(maxsize=512)
def _comm_coefficients(plan: ParallelPlan) -> CommCoefficients:
    per_token = step_ops(plan, StepShape(1, 0), "decode")
    per_sampled = step_ops(plan, StepShape(0, 1), "decode")
    return CommCoefficients(
        tuple(o.collective for o in per_token),
        np.array([o.msg_bytes for o in per_token], float), np.array([o.msg_bytes for o in per_sampled], float),
        np.array([o.calls for o in per_token], float), np.array([o.group_size for o in per_token], float),
        np.array([o.group == "pp" for o in per_token]),  # stage-boundary traffic (sends and their all-gather)
    )


def comm_times(plan: ParallelPlan, fabric: FabricModel, tokens, sampled):
    """(TP latency s, TP bandwidth s, PP send s) of one (micro-batch) step through all stages.

    tokens and sampled may be arrays (one entry per step); the results then are too.
    """
    cc = _comm_coefficients(plan)
    lat = bw = send = 0.0
    for i, coll in enumerate(cc.collective):
        msg = cc.a[i] * tokens + cc.b[i] * sampled
        alpha, stream = fabric.latency_and_bandwidth_s(coll, msg, int(cc.group_size[i]))
        if cc.is_pp_send[i]:
            send = send + cc.calls[i] * (alpha + stream)
        else:
            lat = lat + cc.calls[i] * alpha
            bw = bw + cc.calls[i] * stream
    return lat, bw, send


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


def _step_compute(sc: StageCost, tokens, sampled, kv_full, kv_slide, pairs_full, pairs_slide, bw_Bps, flop_eff,
                  seqs=0.0):
    """Per-rank (weights_s, kv_s, flops_s) of a micro-batch step; arrays broadcast over steps.
    kv_s includes the recurrent state of non-attention mixers: read and written once per sequence.

    flop_eff: the fraction of peak FLOP/s reached at the step's token count. Only the binding roof
    counts: memory-bound steps charge weights and KV, compute-bound ones FLOPs.
    """
    cover = expert_coverage(tokens, sc.moe_k, sc.moe_e) if sc.moe_e else 0.0
    weight_s = (sc.fixed_weight_bytes + sc.expert_bytes_all * cover) / bw_Bps
    kv_s = ((sc.full_layers * kv_full + sc.sliding_layers * kv_slide) * sc.kv_bytes_per_token_layer
            + 2 * seqs * sc.state_bytes_per_seq) / bw_Bps
    flop_s = (tokens * sc.s_per_token + sampled * sc.s_per_sampled
              + (sc.full_layers * pairs_full + sc.sliding_layers * pairs_slide) * sc.s_per_pair) / flop_eff
    mem_bound = weight_s + kv_s >= flop_s
    return np.where(mem_bound, weight_s, 0.0), np.where(mem_bound, kv_s, 0.0), np.where(mem_bound, 0.0, flop_s)


def round_cost(plan: ParallelPlan, stages: list[StageCost], fabric: FabricModel, hw: HardwareProfile, m: int,
               tokens: float, seqs: float, kv_full, kv_slide, pairs_full, pairs_slide, engine: Engine = Engine()):
    """Wall time of one engine step (TP) or schedule round of m micro-batches (PP), and its terms.

    kv_* are summed contexts (keys read) over the round's sequences, pairs_* the attention
    (query, key) pairs; a PP round splits tokens, sequences and both sums evenly over m.
    A stage's time includes its kernel launches where the step is not a CUDA-graph replay
    (commbench.predict.recipes.Engine.launch_s); the engine's host work, host_s(requests), is paid
    once per micro-batch. TP: step = GPU + host, or max(GPU, host) where the engine overlaps it
    (async scheduling on an executor that has it).
    Returns (wall_s, {weights_s, kv_s, flops_s, launch_s, host_s (the host time on the critical
    path)} per rank, tp_latency_s and tp_bandwidth_s per micro-batch step, pp_send_s on the
    critical path, bubble_s).
    """
    pp = plan.pp
    host = engine.host_s(seqs / m)
    if hw.eager_launch_s:  # measured on the device by commbench compute
        engine = dataclasses.replace(engine, measured_launch_s=hw.eager_launch_s)
    tokens, sampled = tokens / m, seqs / m
    lat, stream, send = comm_times(plan, fabric, tokens, sampled)
    tp_lat, tp_bw = lat / pp, stream / pp  # step_ops sums the TP calls of every stage
    bw_Bps, flop_eff = hw.effective_bandwidth_Bps, hw.flop_efficiency_at(tokens)
    per_stage = [(*_step_compute(sc, tokens, sampled, kv_full / m, kv_slide / m, pairs_full / m,
                                 pairs_slide / m, bw_Bps, flop_eff, seqs / m), engine.launch_s(sc.layers, tokens))
                 for sc in stages]
    stage_time = [ws + ks + fs + ls + tp_lat + tp_bw for ws, ks, fs, ls in per_stage]
    names = ("weights_s", "kv_s", "flops_s", "launch_s")
    if pp == 1:
        gpu = stage_time[0]
        step = np.maximum(gpu, host) if engine.overlaps_host else gpu + host
        return step, {**dict(zip(names, per_stage[0])), "host_s": step - gpu}, tp_lat, tp_bw, 0.0, 0.0
    slowest = functools.reduce(np.maximum, stage_time) * m
    path = sum(stage_time) + send + host
    step = np.maximum(np.maximum(slowest, path), m * host)
    core = step - host  # one host step per round is on the critical path
    busy = {name: m * sum(ps[i] for ps in per_stage) / pp for i, name in enumerate(names)}
    send_s = np.where(path >= slowest, send, 0.0)
    bubble = core - send_s - sum(busy.values()) - m * (tp_lat + tp_bw)
    busy["host_s"] = host
    return step, busy, tp_lat, tp_bw, send_s, bubble


def decode_step(plan: ParallelPlan, hw: HardwareProfile, fabric: FabricModel, batch: int, context: int,
                engine: Engine = Engine()) -> dict:
    """One steady decode step (TP) or round (PP) of `batch` sequences that each attend to `context` keys.

    Returns seconds: wall_s and the terms of round_cost (launches counted in overhead_s), each a float.
    """
    stages = [stage_cost(plan, s, hw, engine.moe_kernel) for s in range(plan.pp)]
    window = stages[0].window
    kv_full = float(batch * context)
    kv_slide = float(batch * min(context, window)) if window else kv_full
    m = plan.micro_batches(batch)
    step, busy, tp_lat, tp_bw, send_s, bubble = round_cost(
        plan, stages, fabric, hw, m, batch, batch, kv_full, kv_slide, kv_full, kv_slide,
        engine)
    launch, host = float(busy.pop("launch_s")), float(busy.pop("host_s"))
    return {"wall_s": float(step), **{k: float(v) for k, v in busy.items()}, "tp_latency_s": m * tp_lat,
            "tp_bandwidth_s": m * tp_bw, "pp_send_s": float(send_s), "bubble_s": float(bubble),
            "overhead_s": host + launch, "micro_batches": m}


def predict_run(plan: ParallelPlan, w: Workload, hw: HardwareProfile, fabric: FabricModel,
                engine: Engine = Engine()) -> Prediction:
    """Walk the schedule and price every step (see the module docstring for the formulas).

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
