"""Serving recipes: weights and KV cache as the engine serves them, and the engine's host mode.

A checkpoint's format is not what runs: recipes quantize attention and lm_head (MXFP4, Q8_0) where
the checkpoint has BF16, store the KV cache in FP8, run with or without CUDA graphs. A recipe
(recipes/*.toml) names those choices; `apply_recipe` returns the model card priced that way, and
`Engine` carries the per-step host cost the serving model adds:

    host work per scheduled (micro-)batch of R requests = host_step_s + host_per_request_s x R   [s]
    + kernel launches when the step is not replayed from a CUDA graph
                                               = layers on the rank x kernels_per_layer x launch_s

With CUDA graphs a step's kernels replay from one launch, so only the host step remains; engines
capture graphs only up to a step size (ENGINE_COSTS), and --enforce-eager turns them off.
The host work overlaps the GPU only with async scheduling on an executor that has it (`mp`):
a TP step then costs max(GPU, host); on Ray, or without async scheduling, GPU + host. PP overlaps
it through the engine's batch queue whatever the executor (commbench.predict.step_cost.round_cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from commbench import CommbenchError
from commbench.data import data_dir, names_in, read_toml, unknown_name_error
from commbench.traffic.model_card import ModelCard
from commbench.traffic.weight_formats import DTYPE_BYTES, WEIGHT_GROUPS

@dataclass(frozen=True)
class EngineCosts:
    """Host-side costs of one serving engine (each figure's source is in ENGINE_COSTS below)."""

    host_step_s: float  # host time per scheduled (micro-)batch the GPU waits on, seconds
    kernels_per_layer: int  # kernels one decoder layer launches when not replayed from a CUDA graph
    launch_s: float  # host seconds per kernel launch outside a graph
    graph_max_tokens: int  # largest step (tokens) replayed from a captured CUDA graph
    host_per_request_s: float = 0.0  # host seconds per scheduled request per step (scheduler, outputs)


VLLM_HOST_PER_REQUEST_S = 7.4e-6
"""Host seconds per scheduled request per engine step, vLLM V1: the slope of vLLM 0.11.0's own
Scheduler.schedule() + update_from_output() over 1-256 running decode requests (median of 60 steps
each: 18 us at 1, 913 us at 128, 1910 us at 256; least squares 7.4 us per request), timed on this
project's CPU host (AMD EPYC, shared) by scripts/time_vllm_scheduler.py, data in
reports/vllm-host/scheduler-cpu.csv. Input preparation in the model runner and the sampler's
host sync are not in it (they need the GPU worker); detokenising runs in the API-server process,
beside the engine core, so it is not on the step's path. A Grace core is not this host: the
figure stands until `scripts/time_vllm_scheduler.py` runs on the Spark."""

#: Executors that can overlap a step's host work with the GPU (async scheduling). vLLM's Ray
#: executor does not: "Async scheduling will be disabled because it is not supported with the ray
#: distributed executor backend" (vLLM PR 25887, https://github.com/vllm-project/vllm/pull/25887;
#: vllm-project/recipes issue 479). The multi-node playbook runs TP=2 on Ray (docs/sources-gb10.md).
EXECUTORS = {"mp": "multiprocessing executor (one node, or --nnodes)", "ray": "Ray distributed executor (the multi-node playbook)"}
ASYNC_EXECUTORS = ("mp",)

#: MXFP4 MoE kernels' padding of the expert weights (vllm/model_executor/layers/quantization/mxfp4.py,
#: Mxfp4MoEMethod.create_weights in 0.11.0): intermediate size per TP rank rounded up to the first
#: figure, hidden size to the second. Marlin, the working MXFP4 path on SM 12.1 (vLLM issue 41477,
#: https://github.com/vllm-project/vllm/issues/41477): 128 and 256, so TP=2 gpt-oss 1440 -> 1536.
MOE_KERNEL_PADDING = {"triton": (64, 1), "marlin": (128, 256), "flashinfer-trtllm": (256, 256),
                      "flashinfer-cutlass": (128, 128)}

ENGINE_COSTS = {
    # vLLM V1. host_step_s: 2 ms, the V1 engine's per-step CPU cost on server cores as its developers
    # report it (2-5 ms; a Spark's Grace cores are server-class); not measured on GB10 here.
    # kernels_per_layer: 14, counted from vllm/model_executor/models/gpt_oss.py and llama.py forward:
    # fused add+RMSNorm, qkv GEMM, rotary, KV-cache write, attention, o_proj, fused add+RMSNorm,
    # router GEMM, top-k softmax, MoE align, two grouped GEMMs, activation, expert sum (a dense MLP
    # launches 3 GEMM/activation kernels where the MoE launches 7: 10 per layer, within the error).
    # launch_s: 7 us = cudaLaunchKernel (~3-4 us in NVIDIA's "Getting Started with CUDA Graphs")
    # plus PyTorch's per-op dispatch (1.5 us for a tiny torch.add on this project's CI host).
    # graph_max_tokens: 512, the largest CUDA-graph capture size vLLM 0.11 captures by default.
    # host_per_request_s: VLLM_HOST_PER_REQUEST_S below (measured: vLLM 0.11.0's scheduler on CPU).
    "vllm": EngineCosts(host_step_s=2e-3, kernels_per_layer=14, launch_s=7e-6, graph_max_tokens=512,
                        host_per_request_s=VLLM_HOST_PER_REQUEST_S),
    # llama.cpp. host_step_s: 1 ms, an estimate for its C++ graph build and scheduling (no Python).
    # kernels_per_layer: 30, ggml's unfused gpt-oss layer graph (separate q/k/v matmuls and bias adds,
    # rope x2, cache copies x2, flash attention, o matmul, norms, router, top-k, three mul_mat_id,
    # SwiGLU, weighting and the residual adds). launch_s: 4 us, cudaLaunchKernel alone (C++, no
    # dispatcher). graph_max_tokens: 1, ggml-cuda uses CUDA graphs only for single-token decode steps.
    "llama.cpp": EngineCosts(host_step_s=1e-3, kernels_per_layer=30, launch_s=4e-6, graph_max_tokens=1),
}
ENGINE_KINDS = tuple(ENGINE_COSTS)  # the serving engines priced here (not runner_options.ENGINES, vLLM's generations)


@dataclass(frozen=True)
class Engine:
    """The serving engine and whether it replays CUDA graphs (enforce_eager turns them off)."""

    name: str = "vllm"
    cuda_graphs: bool = True
    measured_launch_s: float | None = None  # a launch cost measured on the device, in place of the engine's
    executor: str = "mp"  # EXECUTORS
    async_scheduling: bool = False  # vLLM 0.11.0's default (SchedulerConfig.async_scheduling = False)
    moe_kernel: str = "triton"  # MOE_KERNEL_PADDING: the MXFP4 MoE kernel and its padding

    def __post_init__(self) -> None:
        if self.name not in ENGINE_COSTS:
            raise CommbenchError(f"unknown engine {self.name!r}; valid: {', '.join(ENGINE_KINDS)}")
        if self.executor not in EXECUTORS:
            raise CommbenchError(f"unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if self.moe_kernel not in MOE_KERNEL_PADDING:
            raise CommbenchError(f"unknown MoE kernel {self.moe_kernel!r}; valid: {', '.join(MOE_KERNEL_PADDING)}")

    @property
    def overlaps_host(self) -> bool:
        """Whether a step's host work runs while the GPU computes the previous step (async scheduling
        on an executor that supports it): then a TP step costs max(GPU, host), else GPU + host."""
        return self.async_scheduling and self.executor in ASYNC_EXECUTORS

    def host_s(self, requests):
        """Host seconds of one scheduled (micro-)batch of `requests` requests (may be an array):
        host_step_s + host_per_request_s x requests."""
        return self.costs.host_step_s + self.costs.host_per_request_s * np.asarray(requests, dtype=float)

    @property
    def costs(self) -> EngineCosts:
        return ENGINE_COSTS[self.name]

    @property
    def host_step_s(self) -> float:
        return self.costs.host_step_s

    def launch_s(self, layers: int, tokens):
        """Kernel-launch seconds of one forward through `layers` decoder layers over `tokens` tokens:
        0 where the step replays a CUDA graph (tokens <= graph_max_tokens), else
        layers x kernels_per_layer x launch_s. `tokens` may be an array (one entry per step)."""
        eager = layers * self.costs.kernels_per_layer * (self.measured_launch_s or self.costs.launch_s)
        if not self.cuda_graphs:
            return np.full_like(np.asarray(tokens, dtype=float), eager)
        return np.where(np.asarray(tokens) > self.costs.graph_max_tokens, eager, 0.0)

    @property
    def label(self) -> str:
        label = f"{self.name} {'CUDA graphs' if self.cuda_graphs else 'eager'}"
        if self.name == "vllm":
            label += f", {self.executor}{', async' if self.overlaps_host else ''}"
        return label + (f", {self.moe_kernel} MoE" if self.moe_kernel != "triton" else "")


def moe_padding_factor(intermediate: int, hidden: int, tp: int, kernel: str) -> float:
    """Padded / true expert parameters on one rank: round_up(I/tp, a_i) x round_up(H, a_h) / (I/tp x H),
    (a_i, a_h) = MOE_KERNEL_PADDING[kernel]. gpt-oss (I = H = 2880) on Marlin: TP=2 1536/1440 x
    3072/2880 = 1.138; TP=1 2944/2880 x 3072/2880 = 1.090."""
    a_i, a_h = MOE_KERNEL_PADDING[kernel]
    per_rank = intermediate / tp
    return (math.ceil(per_rank / a_i) * a_i / per_rank) * (math.ceil(hidden / a_h) * a_h / hidden)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    engine: Engine
    kv_cache_dtype: str = ""
    weight_bytes_per_param: tuple[tuple[str, float], ...] = ()
    source: str = ""


def shipped_recipes() -> list[str]:
    return names_in("recipes", ".toml")


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe name (recipes/*.toml) or a .toml file of the same form."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if name_or_path not in shipped_recipes():
            raise unknown_name_error("recipe", name_or_path, shipped_recipes())
        path = data_dir("recipes") / f"{name_or_path}.toml"
    raw = read_toml(path, "recipe")
    weights = raw.get("weight_bytes_per_param", {})
    if not isinstance(weights, dict):
        raise CommbenchError(f"recipe {path}: [weight_bytes_per_param] must be a table of group = bytes")
    for group, value in weights.items():
        if group not in WEIGHT_GROUPS:
            raise CommbenchError(f"recipe {path}: unknown weight group {group!r}; valid: {', '.join(WEIGHT_GROUPS)}")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CommbenchError(f"recipe {path}: {group} = {value!r} must be a positive number of bytes per parameter")
    kv = raw.get("kv_cache_dtype", "")
    if kv and kv not in DTYPE_BYTES:
        raise CommbenchError(f"recipe {path}: unknown kv_cache_dtype {kv!r}; valid: {', '.join(DTYPE_BYTES)}")
    flags = {}
    for key, default in (("cuda_graphs", True), ("async_scheduling", False)):
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            raise CommbenchError(f"recipe {path}: {key} must be true or false, got {flags[key]!r}")
    executor, kernel = str(raw.get("executor", "mp")), str(raw.get("moe_kernel", "triton"))
    for key, value, valid in (("executor", executor, EXECUTORS), ("moe_kernel", kernel, MOE_KERNEL_PADDING)):
        if value not in valid:
            raise CommbenchError(f"recipe {path}: unknown {key} {value!r}; valid: {', '.join(valid)}")
    return Recipe(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
                  engine=Engine(str(raw.get("engine", "vllm")), flags["cuda_graphs"], executor=executor,
                                async_scheduling=flags["async_scheduling"], moe_kernel=kernel), kv_cache_dtype=kv,
                  weight_bytes_per_param=tuple(sorted((g, float(v)) for g, v in weights.items())),
                  source=str(raw.get("source", "")))


def apply_recipe(card: ModelCard, recipe: Recipe) -> ModelCard:
    """The card with the recipe's weight formats and KV-cache dtype; groups it does not name keep the card's."""
    if not recipe.weight_bytes_per_param and not recipe.kv_cache_dtype:
        return replace(card, recipe=recipe.name)
    weights = {**card.weight_bytes_per_param, **dict(recipe.weight_bytes_per_param)}
    return replace(card, weight_bytes_per_param=weights, kv_cache_dtype=recipe.kv_cache_dtype or card.kv_cache_dtype,
                   recipe=recipe.name)
