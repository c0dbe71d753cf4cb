"""Per-stage compute, measured on the local device at the model's own layer shapes.

For one rank of a plan (a TP shard of every layer, or a PP stage's layer range) this builds real
decoder layers with random weights on the local device (CPU here, CUDA where present):
attention (q/k/v/o at heads/tp, a KV cache of the asked context, sliding window where the model
has one), the dense MLP (gate/up/down at intermediate/tp) or the MoE (router, every expert at
moe_intermediate/tp, top-k routing). It times a prefill chunk and a decode step on a few sampled
layers (one of each kind the stage holds) and scales by the number of layers of that kind.

Weights are held in the activation dtype: quantised formats (MXFP4, FP8, NVFP4) are not emulated,
so the measured time is that of BF16 weights; the table reports the bytes each step touched so a
measured effective bandwidth (bytes / time) and FLOP rate (FLOPs / time) come out of it, which is
what `predict --hardware compute.csv` uses in place of a profile's peak x efficiency
(commbench.predict.hardware.profile_from_measurement).

The bytes a MoE layer's step touches depend on how many experts its tokens reach: that is the
serving model's routing assumption, passed in by the caller (`expert_coverage`, e.g.
commbench.predict.serving.expert_coverage), so this measuring module imports nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from commbench import CommbenchError, require
from commbench.measure.timing import time_calls
from commbench.results import host_memory_bytes
from commbench.traffic.plan import ParallelPlan


class LocalDevice:
    """The timing loop's backend protocol for one process on one device (no ranks to wait for)."""

    def __init__(self, device: str):
        import torch

        self.device = device
        self.needs_sync = device.startswith("cuda")
        self.events = False  # the host clock around device synchronisations
        self._torch = torch

    def barrier(self):
        pass

    def new_event(self):
        raise NotImplementedError("LocalDevice times with the host clock")

    def elapsed_s(self, start, end) -> float:
        raise NotImplementedError("LocalDevice times with the host clock")

    def synchronize(self):
        if self.needs_sync:
            self._torch.cuda.synchronize()

    @staticmethod
    def max_over_ranks(samples: np.ndarray) -> np.ndarray:
        return samples

    @staticmethod
    def sum_over_ranks(value: int) -> int:
        return int(value)


def default_device() -> str:
    torch = require("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_memory_bytes(device: str) -> float:
    if device.startswith("cuda"):
        torch = require("torch")
        free, _ = torch.cuda.mem_get_info()
        return float(free)
    return host_memory_bytes()


@dataclass(frozen=True)
class LayerKind:
    moe: bool
    sliding: bool

    @property
    def label(self) -> str:
        return f"{'moe' if self.moe else 'dense'}/{'sliding' if self.sliding else 'full'}"


class LayerShard:
    """One decoder layer as one TP rank holds it, with random weights. Shapes in comments per rank."""

    def __init__(self, plan: ParallelPlan, kind: LayerKind, device: str, dtype):
        import torch

        m = plan.model
        self.plan, self.kind, self.device, self.dtype = plan, kind, device, dtype
        self.heads = m.num_attention_heads // plan.tp
        self.kv_heads = plan.kv_heads_per_rank
        self.head_dim = m.head_dim
        self.window = m.sliding_window if kind.sliding else None
        H = m.hidden_size
        gen = torch.Generator(device="cpu").manual_seed(0)

        def rand(*shape):
            return (torch.randn(*shape, generator=gen, dtype=torch.float32) * 0.02).to(device=device, dtype=dtype)

        self.w_qkv = rand(H, (self.heads + 2 * self.kv_heads) * self.head_dim)  # [hidden, (q+k+v)/tp]
        self.w_o = rand(self.heads * self.head_dim, H)  # [q/tp, hidden]
        if kind.moe:
            inter = max(1, m.moe_intermediate_size // plan.tp)
            self.k, self.num_experts = m.experts_per_token, m.num_experts
            self.w_router = rand(H, m.num_experts)  # [hidden, experts], replicated
            self.w_13 = rand(m.num_experts, H, 2 * inter)  # [experts, hidden, 2*inter/tp]
            self.w_2 = rand(m.num_experts, inter, H)  # [experts, inter/tp, hidden]
        else:
            inter = max(1, m.intermediate_size // plan.tp)
            self.w_13 = rand(H, 2 * inter)  # [hidden, 2*inter/tp]
            self.w_2 = rand(inter, H)  # [inter/tp, hidden]

    @staticmethod
    def weight_bytes(plan: ParallelPlan, kind: LayerKind, typesize: int) -> float:
        m = plan.model
        mlp = (m.num_experts * m.params_per_expert / plan.tp + m.router_params_per_layer) if kind.moe \
            else m.dense_mlp_params_per_layer / plan.tp
        return (m.attention_params_per_layer / plan.tp + mlp) * typesize

    def _attention(self, x, kv_len: int, batch: int, causal_start: int | None):
        """x [batch*q_len, hidden]; a KV cache of kv_len keys per sequence."""
        import torch
        import torch.nn.functional as F

        q_len = x.shape[0] // batch
        qkv = x @ self.w_qkv
        q, k_new, _ = qkv.split([self.heads * self.head_dim, self.kv_heads * self.head_dim,
                                 self.kv_heads * self.head_dim], dim=-1)
        q = q.view(batch, q_len, self.heads, self.head_dim).transpose(1, 2)  # [b, heads, q, d]
        k = self._cache_k[:batch, :, :kv_len]  # [b, kv_heads, keys, d]
        v = self._cache_v[:batch, :, :kv_len]
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        mask = None
        if causal_start is not None and q_len > 1:  # prefill chunk at positions [start, start+q_len)
            pos_q = torch.arange(causal_start, causal_start + q_len, device=x.device)[:, None]
            pos_k = torch.arange(kv_len, device=x.device)[None, :] + (causal_start + q_len - kv_len)
            mask = pos_k <= pos_q
            if self.window:
                mask &= pos_k > pos_q - self.window
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch * q_len, self.heads * self.head_dim)
        del k_new
        return out @ self.w_o

    def _mlp(self, x):
        import torch
        import torch.nn.functional as F

        if not self.kind.moe:
            gate, up = (x @ self.w_13).chunk(2, dim=-1)
            return (F.silu(gate) * up) @ self.w_2
        logits = x @ self.w_router  # [tokens, experts]
        weights, experts = torch.topk(logits.float().softmax(-1), self.k, dim=-1)
        out = torch.zeros_like(x)
        flat = experts.flatten()
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        token_of = order // self.k
        start = 0
        for e, n in enumerate(counts):  # one GEMM per touched expert (grouped MoE, unfused)
            if n == 0:
                continue
            idx = token_of[start:start + n]
            gate, up = (x[idx] @ self.w_13[e]).chunk(2, dim=-1)
            y = (F.silu(gate) * up) @ self.w_2[e]
            out.index_add_(0, idx, y * weights.flatten()[order[start:start + n]].unsqueeze(1).to(y.dtype))
            start += n
        return out

    def prepare(self, batch: int, keys: int):
        import torch

        keys = min(keys, self.window) if self.window else keys
        self._cache_k = torch.randn(batch, self.kv_heads, keys, self.head_dim, device=self.device).to(self.dtype)
        self._cache_v = torch.randn_like(self._cache_k)
        return keys

    def forward(self, x, kv_len: int, batch: int, causal_start: int | None):
        h = x + self._attention(x, kv_len, batch, causal_start)
        return h + self._mlp(h)


def _stage_kinds(plan: ParallelPlan, stage: int) -> dict[LayerKind, int]:
    m = plan.model
    counts: dict[LayerKind, int] = {}
    for i in plan.stage_layer_range(stage):
        kind = LayerKind(bool(m.moe_layer_mask[i]), bool(m.sliding_layer_mask[i]) and bool(m.sliding_window))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def measure_stage(plan: ParallelPlan, stage: int, prefill_tokens: int, decode_batch: int, context: int,
                  iters: int = 3, warmup: int = 1, device: str | None = None, progress=None, *,
                  expert_coverage) -> pd.DataFrame:
    """Time a prefill chunk and a decode step of one rank of `stage`, per layer kind, scaled to the stage.

    prefill: `prefill_tokens` new tokens of one sequence after `context` cached ones;
    decode: `decode_batch` sequences, one token each, attending to `context` cached keys.
    Rows: phase, layer_kind, layers, tokens, context, time_ms_per_layer (p50), stage_ms (x layers),
    weight_bytes_touched, flops (of the timed layer), and the derived effective GB/s and TFLOP/s.
    expert_coverage(tokens, k, experts): the fraction of a MoE layer's experts `tokens` tokens touch.
    """
    require("torch")
    import torch

    device = device or default_device()
    if stage < 0 or stage >= plan.pp:
        raise CommbenchError(f"stage {stage} is not in this plan; valid: 0..{plan.pp - 1}")
    m = plan.model
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(m.activation_dtype)
    if dtype is None:
        raise CommbenchError(f"activation dtype {m.activation_dtype} has no torch type here; valid: bfloat16, float16, float32")
    typesize = torch.finfo(dtype).bits // 8
    kinds = _stage_kinds(plan, stage)
    need = max(LayerShard.weight_bytes(plan, k, typesize) for k in kinds) * 1.2 \
        + 2 * max(decode_batch, 1) * (context + prefill_tokens) * plan.kv_heads_per_rank * m.head_dim * typesize
    have = available_memory_bytes(device)
    if need > have:
        raise CommbenchError(f"one layer of {m.name} at {plan.describe()} needs {need / 1e9:.1f} GB on {device} "
                             f"but {have / 1e9:.1f} GB is free; use a smaller --batch/--context or a bigger device")
    backend = LocalDevice(device)
    rows = []
    for kind, layers in kinds.items():
        layer = LayerShard(plan, kind, device, dtype)
        H = m.hidden_size
        for phase, batch, q_len in (("prefill", 1, prefill_tokens), ("decode", decode_batch, 1)):
            if progress:
                progress(f"{kind.label} {phase}")
            keys = layer.prepare(batch, context + (q_len if phase == "prefill" else 1))
            x = torch.randn(batch * q_len, H, device=device).to(dtype)
            start = context if phase == "prefill" else None
            with torch.inference_mode():
                samples = time_calls(lambda: layer.forward(x, keys, batch, start), backend, iters, warmup)
            t = float(np.median(samples))
            tokens = batch * q_len
            wbytes = _touched_weight_bytes(plan, kind, tokens, typesize, expert_coverage)
            kv_bytes = 2 * batch * keys * plan.kv_heads_per_rank * m.head_dim * typesize
            flops = _layer_flops(plan, kind, tokens, batch, q_len, keys)
            rows.append({
                "model": m.name, "mode": plan.mode, "tp": plan.tp, "pp": plan.pp, "stage": stage, "phase": phase,
                "layer_kind": kind.label, "layers": layers, "tokens": tokens, "context": context,
                "time_ms_per_layer": t * 1e3, "stage_ms": t * 1e3 * layers,
                "bytes_per_layer": wbytes + kv_bytes, "flops_per_layer": flops,
                "effective_gbps": (wbytes + kv_bytes) / t / 1e9, "effective_tflops": flops / t / 1e12,
                "device": device, "samples_ms": [round(float(s) * 1e3, 4) for s in samples],
            })
        layer = None  # free this kind's weights before building the next
    return pd.DataFrame(rows)


GEMM_TOKENS = (1, 4, 16, 64, 256, 1024)
"""Rows (tokens) of the GEMM-efficiency curve `measure_gemm_curve` times by default."""


def measure_gemm_curve(plan: ParallelPlan, tokens=GEMM_TOKENS, iters: int = 3, warmup: int = 1,
                       device: str | None = None) -> pd.DataFrame:
    """FLOP/s of the model's MLP up-projection GEMM, [tokens, hidden] x [hidden, 2 x width / tp], per token count.

    width is the dense intermediate size (or the per-expert one for an all-MoE model). Rows: phase
    "gemm", tokens, flops_per_layer (2 x tokens x hidden x 2 x width / tp), time_ms_per_layer (p50)
    and effective_tflops; the serving model's FLOP efficiency as a function of tokens per step
    (commbench.predict.hardware.HardwareProfile.flop_efficiency_at) is this curve over its best point.
    """
    require("torch")
    import torch

    device = device or default_device()
    m = plan.model
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(m.activation_dtype, torch.float32)
    width = 2 * (m.intermediate_size or m.moe_intermediate_size) // plan.tp
    weight = torch.randn(m.hidden_size, width, device=device).to(dtype)
    backend = LocalDevice(device)
    rows = []
    for n in tokens:
        x = torch.randn(int(n), m.hidden_size, device=device).to(dtype)
        with torch.inference_mode():
            samples = time_calls(lambda: x @ weight, backend, iters, warmup)
        t = float(np.median(samples))
        flops = 2.0 * n * m.hidden_size * width
        rows.append({"model": m.name, "mode": plan.mode, "tp": plan.tp, "pp": plan.pp, "phase": "gemm",
                     "layer_kind": f"gemm {m.hidden_size}x{width}", "layers": 1, "tokens": int(n),
                     "time_ms_per_layer": t * 1e3, "flops_per_layer": flops, "effective_tflops": flops / t / 1e12,
                     "device": device, "samples_ms": [round(float(v) * 1e3, 4) for v in samples]})
    return pd.DataFrame(rows)


def launch_row(plan: ParallelPlan, seconds: float, device: str) -> dict:
    """The table row that carries measure_launch_cost's figure (phase "launch", time per op)."""
    return {"model": plan.model.name, "mode": plan.mode, "tp": plan.tp, "pp": plan.pp, "phase": "launch",
            "layer_kind": "eager op (tiny add)", "layers": 1, "tokens": 1, "time_ms_per_layer": seconds * 1e3,
            "flops_per_layer": 0.0, "device": device}


def measure_launch_cost(iters: int = 2000, device: str | None = None) -> float:
    """Host seconds per eager PyTorch op on `device`: a tiny in-place add, dispatch and launch, no work.

    This is the per-kernel cost that eager serving (no CUDA graphs) pays (commbench.predict.recipes)."""
    require("torch")
    import torch

    device = device or default_device()
    a = torch.zeros(16, device=device)
    backend = LocalDevice(device)

    def many():
        for _ in range(iters):
            a.add_(1.0)

    return float(np.median(time_calls(many, backend, 5, 1))) / iters


def _touched_weight_bytes(plan: ParallelPlan, kind: LayerKind, tokens: int, typesize: int, expert_coverage) -> float:
    m = plan.model
    cover = float(expert_coverage(tokens, m.experts_per_token, m.num_experts)) if kind.moe else 1.0
    return plan.layer_shard(kind.moe).touched_params(cover) * typesize


def _layer_flops(plan: ParallelPlan, kind: LayerKind, tokens: int, batch: int, q_len: int, keys: int) -> float:
    shard = plan.layer_shard(kind.moe)
    return shard.matmul_flops(tokens) + shard.attention_flops(batch * q_len * keys)
