"""Serving recipes: weights and KV cache as the engine serves them, and the engine's host mode.

A checkpoint's format is not what runs: recipes quantize attention and lm_head (MXFP4, Q8_0) where
the checkpoint has BF16, store the KV cache in FP8, run with or without CUDA graphs. A recipe
(recipes/*.toml) names those choices; `apply_recipe` returns the model card priced that way, and
`Engine` carries the per-step host cost the serving model adds:

    host overhead per scheduled (micro-)batch  = host_step_s                                  [s]
    + kernel launches when the step is not replayed from a CUDA graph
                                               = layers on the rank x kernels_per_layer x launch_s

With CUDA graphs a step's kernels replay from one launch, so only the host step remains; engines
capture graphs only up to a step size (ENGINE_COSTS), and --enforce-eager turns them off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from commbench import CommbenchError
from commbench.data import data_dir, names_in, read_toml, unknown_name_error
from commbench.traffic.model_card import DTYPE_BYTES, WEIGHT_GROUPS, ModelCard

@dataclass(frozen=True)
class EngineCosts:
    """Host-side costs of one serving engine (each figure's source is in ENGINE_COSTS below)."""

    host_step_s: float  # host time per scheduled (micro-)batch the GPU waits on, seconds
    kernels_per_layer: int  # kernels one decoder layer launches when not replayed from a CUDA graph
    launch_s: float  # host seconds per kernel launch outside a graph
    graph_max_tokens: int  # largest step (tokens) replayed from a captured CUDA graph


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
    "vllm": EngineCosts(host_step_s=2e-3, kernels_per_layer=14, launch_s=7e-6, graph_max_tokens=512),
    # llama.cpp. host_step_s: 1 ms, an estimate for its C++ graph build and scheduling (no Python).
    # kernels_per_layer: 30, ggml's unfused gpt-oss layer graph (separate q/k/v matmuls and bias adds,
    # rope x2, cache copies x2, flash attention, o matmul, norms, router, top-k, three mul_mat_id,
    # SwiGLU, weighting and the residual adds). launch_s: 4 us, cudaLaunchKernel alone (C++, no
    # dispatcher). graph_max_tokens: 1, ggml-cuda uses CUDA graphs only for single-token decode steps.
    "llama.cpp": EngineCosts(host_step_s=1e-3, kernels_per_layer=30, launch_s=4e-6, graph_max_tokens=1),
}
ENGINES = tuple(ENGINE_COSTS)


@dataclass(frozen=True)
class Engine:
    """The serving engine and whether it replays CUDA graphs (enforce_eager turns them off)."""

    name: str = "vllm"
    cuda_graphs: bool = True
    measured_launch_s: float | None = None  # a launch cost measured on the device, in place of the engine's

    def __post_init__(self) -> None:
        if self.name not in ENGINE_COSTS:
            raise CommbenchError(f"unknown engine {self.name!r}; valid: {', '.join(ENGINES)}")

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
        return f"{self.name} {'CUDA graphs' if self.cuda_graphs else 'eager'}"


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
    graphs = raw.get("cuda_graphs", True)
    if not isinstance(graphs, bool):
        raise CommbenchError(f"recipe {path}: cuda_graphs must be true or false, got {graphs!r}")
    return Recipe(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
                  engine=Engine(str(raw.get("engine", "vllm")), graphs), kv_cache_dtype=kv,
                  weight_bytes_per_param=tuple(sorted((g, float(v)) for g, v in weights.items())),
                  source=str(raw.get("source", "")))


def apply_recipe(card: ModelCard, recipe: Recipe) -> ModelCard:
    """The card with the recipe's weight formats and KV-cache dtype; groups it does not name keep the card's."""
    if not recipe.weight_bytes_per_param and not recipe.kv_cache_dtype:
        return replace(card, recipe=recipe.name)
    weights = {**card.weight_bytes_per_param, **dict(recipe.weight_bytes_per_param)}
    return replace(card, weight_bytes_per_param=weights, kv_cache_dtype=recipe.kv_cache_dtype or card.kv_cache_dtype,
                   recipe=recipe.name)
