"""The cost of one engine step (TP) or schedule round (PP) of the serving model, per rank.

Each engine step costs, per rank (every term is in seconds and named in the breakdown):

    compute = max(bytes / BW_achieved,  FLOPs / (FLOP_peak * efficiency(tokens)))
        efficiency(tokens) = FLOP_EFFICIENCY, or a GEMM curve measured by `commbench compute`
        BW_achieved = the hardware profile's measured read bandwidth (commbench.predict.hardware)
        bytes = weights touched + KV cache read, at the formats the serving recipe gives them
                (commbench.predict.recipes: e.g. MXFP4 attention, an FP8 KV cache)
            weights: attention, dense MLP, router, LM head (last stage): all of the rank's shard;
                     MoE experts: the expected fraction touched, mean_i 1 - (1 - pi_i)^T for T
                     tokens, pi_i a Zipf law over experts (commbench.predict.routing), of the shard
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
from commbench.predict.recipes import Engine, moe_padding_factor
from commbench.predict.routing import expert_coverage
from commbench.traffic.model_card import ModelCard
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.trace import StepShape, step_ops


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
