"""How vLLM's model runner runs a step, as far as it shapes the traffic (RunnerOptions): the
engine generation (ENGINES), CUDA graphs or eager and the capture sizes a step is padded to, the
MoE kernel (its hidden-size padding, MOE_KERNEL_HIDDEN_ALIGN) and the expert-parallel all2all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from commbench.data import check_choices

#: Engine generations whose traffic differs (the PP sampled-token broadcast; capture sizes).
ENGINES = {
    "vllm-v1": "vLLM 0.11.0's V1 GPUModelRunner, the generation the review ran",
    "vllm-v2": "current vLLM's model runner v2 (vllm/v1/worker/gpu/model_runner.py)",
}
DEFAULT_ENGINE = "vllm-v1"

#: Hidden-size alignment of the MXFP4 MoE kernels before the MoE all-reduce
#: (vllm/model_executor/layers/quantization/mxfp4.py, Mxfp4MoEMethod.create_weights: Marlin and
#: FlashInfer TRT-LLM round_up(hidden_size, 256), FlashInfer CUTLASS / SM90 128, Triton none).
MOE_KERNEL_HIDDEN_ALIGN = {"triton": 1, "marlin": 256, "flashinfer-trtllm": 256, "flashinfer-cutlass": 128}

#: How expert-parallel MoE layers move tokens (VLLM_ALL2ALL_BACKEND; patterns/ep.toml).
ALL2ALL_BACKENDS = {"allgather_reducescatter": "all2all_allgather", "all_to_all": "all2all_kernels"}

#: vLLM's default ceiling on CUDA-graph capture sizes: min(2 x max_num_seqs, 512) with
#: max_num_seqs >= 256 (vllm/config/scheduler.py in 0.11.0; vllm/config/vllm.py now, 1024 on SM 10.x).
DEFAULT_MAX_CAPTURE_SIZE = 512


@dataclass(frozen=True)
class RunnerOptions:
    """How vLLM's model runner runs a step, as far as it shapes the traffic: the engine generation
    (ENGINES), CUDA graphs or eager (the padding), the MoE kernel and the EP all2all. The serving
    engine's host costs are a different object (commbench.predict.recipes.Engine)."""

    name: str = DEFAULT_ENGINE
    cuda_graphs: bool = True
    max_capture_size: int = DEFAULT_MAX_CAPTURE_SIZE
    moe_kernel: str = "triton"
    all2all: str = "allgather_reducescatter"  # VLLM_ALL2ALL_BACKEND family, for mode ep

    def __post_init__(self) -> None:
        from commbench import CommbenchError

        check_choices((("engine", self.name, ENGINES), ("MoE kernel", self.moe_kernel, MOE_KERNEL_HIDDEN_ALIGN),
                       ("all2all backend", self.all2all, ALL2ALL_BACKENDS)))
        if self.max_capture_size < 1:
            raise CommbenchError(f"max capture size must be >= 1, got {self.max_capture_size}")

    @property
    def all2all_kernels(self) -> bool:
        """The EP exchange runs through the DeepEP / pplx all2all kernels (ALL2ALL_BACKENDS)."""
        return ALL2ALL_BACKENDS[self.all2all] == "all2all_kernels"

    def capture_sizes(self, max_num_tokens: int) -> tuple[int, ...]:
        """The token counts vLLM captures graphs for (none when eager), at most max_num_tokens.

        vllm-v1 (0.11.0 vllm/config/__init__.py _set_cudagraph_sizes): [1, 2, 4] + range(8, max + 1, 8).
        vllm-v2 (vllm/config/vllm.py): [1, 2, 4] + range(8, min(max + 1, 256), 8) + range(256, max + 1, 16),
        plus max_num_tokens itself when it is within max.
        """
        if not self.cuda_graphs:
            return ()
        top = self.max_capture_size
        sizes = [s for s in (1, 2, 4) if s <= top]
        if self.name == "vllm-v1":
            sizes += range(8, top + 1, 8)
        else:
            sizes += list(range(8, min(top + 1, 256), 8)) + list(range(256, top + 1, 16))
            if max_num_tokens <= top:
                sizes.append(max_num_tokens)
        return tuple(sorted({s for s in sizes if s <= max_num_tokens}))

    def padded_tokens(self, tokens: float, max_num_tokens: int) -> float:
        """Tokens the forward runs: a step of up to the largest capture size is padded up to the
        next one (GPUModelRunner: num_input_tokens = pad_for_cudagraph(num_scheduled_tokens))."""
        sizes = _capture_sizes(self, max_num_tokens)  # cached: the whole-run walk pads every step
        if not sizes or tokens > sizes[-1] or tokens <= 0:
            return tokens
        whole = math.ceil(tokens)
        return next(s for s in sizes if s >= whole)


_DEFAULT_OPTIONS = RunnerOptions()


@lru_cache(maxsize=64)
def _capture_sizes(engine: RunnerOptions, max_num_tokens: int) -> tuple[int, ...]:
    return engine.capture_sizes(max_num_tokens)


def runner_or_default(engine: RunnerOptions | None) -> RunnerOptions:
    """The options given, or the defaults (the serving model's view passes None)."""
    return engine or _DEFAULT_OPTIONS
