"""Sequence-parallel MoE under expert parallelism with TP, as vLLM runs it.

vLLM's ParallelConfig.use_sequence_parallel_moe (vllm/config/parallel.py, 0.11.0 and current) is
on with --enable-expert-parallel, tp > 1, dp > 1 and the allgather_reducescatter (or DeepEP)
all2all backend. A family whose MoE block reads it (model_traces/architectures.toml
`sequence_parallel_moe`, per engine generation) then, per MoE block:
    sequence_parallel_chunk: each TP rank keeps ceil(T / tp) of the T tokens (padded),
    dispatch / combine over the whole EP group (dp x tp ranks, get_ep_group()),
    tensor_model_parallel_all_gather(out, 0) over TP instead of the all-reduce.
The current release goes further in some families (`sequence_parallel_residual`: deepseek_v2.py
DeepseekV2DecoderLayer, qwen3_next.py Qwen3NextDecoderLayer): in those layers attention does not
reduce (reduce_results=False) but reduce-scatters its output over TP, the residual stream stays
chunked, the next such layer all-gathers its normed input before attention, and the MoE block
needs no chunk and no all-gather (already_sequence_parallel). Leaving the chunked stream (a later
layer without it, or the end of the forward) all-gathers the exit tensors (DeepSeek: hidden_states
and residual concatenated; Qwen3-Next: the normed hidden_states).
Engine names are passed as strings (commbench.traffic.runner_options.ENGINES).
"""

from __future__ import annotations

from commbench.traffic.plan import ParallelPlan


def sequence_parallel_moe(plan: ParallelPlan, engine: str) -> bool:
    """Whether the plan's MoE blocks run sequence-parallel in this engine generation."""
    return plan.dp > 1 and plan.tp > 1 and engine in plan.model.sequence_parallel_moe


#: Engine generations whose DeepEP / pplx all2all kernels were read for the rules below: vLLM 0.11.0
#: and the current release (0.33.0), which run them alike on the EP group.
KERNEL_RULE_ENGINES = ("vllm-v1", "vllm-v2")


def kernel_exchange(plan: ParallelPlan, engine: str, kernels: bool) -> bool:
    """Whether the MoE blocks exchange tokens through the DeepEP / pplx all2all kernels
    (FusedMoEParallelConfig.use_all2all_kernels: dp > 1 with expert parallelism; a FusedMoE layer only).
    The kernels' buffers live on the EP group (vLLM 0.11.0 fused_moe/layer.py; current
    fused_moe/all2all_utils.py get_ep_all2all_manager: get_ep_group().device_communicator.all2all_manager,
    num_dispatchers = its world_size), so each rank exchanges with all dp x tp ranks, and the combine
    returns the routed output already summed: 0.11.0's FusedMoE.maybe_all_reduce_tensor_model_parallel
    skips its all-reduce; the current release's prepare/finalize says output_is_reduced() (deepep_ht.py,
    deepep_ll.py, deepep_v2.py) and runner/moe_runner.py _maybe_reduce_final_output skips it, all-reducing
    only a shared expert's output the runner holds (_maybe_reduce_shared_expert_output; not under
    sequence-parallel MoE, where the model all-gathers)."""
    return kernels and plan.dp > 1 and engine in KERNEL_RULE_ENGINES and plan.model.moe_expert_parallel


def ep_group_size(plan: ParallelPlan, engine: str, kernels: bool = False) -> int:
    """Ranks an MoE block's dispatch and combine span: the whole EP group (dp x tp) when sequence
    parallel (AgRsAll2AllManager: get_ep_group()) or through the all2all kernels (kernel_exchange),
    else the DP group of its TP rank (get_dp_group())."""
    return plan.dp * plan.tp if sequence_parallel_moe(plan, engine) or kernel_exchange(plan, engine, kernels) \
        else plan.dp


def sp_residual(plan: ParallelPlan, engine: str, layer: int | None) -> bool:
    """Whether `layer` runs with the chunked residual stream (reduce-scattered attention)."""
    m = plan.model
    return layer is not None and 0 <= layer < m.num_hidden_layers and engine in m.sp_residual_engines \
        and sequence_parallel_moe(plan, engine) and plan.pp == 1 and m.sp_residual_layers[layer]


def chunked_before(plan: ParallelPlan, engine: str, layer: int) -> bool:
    """Whether the hidden states entering `layer` (num_hidden_layers: the end of the forward) are
    chunked over TP: the previous layer ran chunked, or the model chunks right after the embedding
    (Qwen3NextModel.forward) and the first layer runs chunked."""
    if layer == 0:
        return plan.model.sp_residual_from_embedding and sp_residual(plan, engine, 0)
    return sp_residual(plan, engine, layer - 1)


#: Named rules of patterns/*.toml `when` (commbench.traffic.slots._WHEN) for these sites; each
#: takes (plan, engine name, layer: None before the layers, -1 after them).
RULES = {
    "sequence_parallel_moe": lambda plan, engine, layer: sequence_parallel_moe(plan, engine),
    "sp_moe_output_gather": lambda plan, engine, layer: sequence_parallel_moe(plan, engine)
    and not sp_residual(plan, engine, layer),
    "not_sequence_parallel_moe": lambda plan, engine, layer: not sequence_parallel_moe(plan, engine),
    "sp_residual": sp_residual,
    "not_sp_residual": lambda plan, engine, layer: not sp_residual(plan, engine, layer),
    "sp_residual_input": lambda plan, engine, layer: sp_residual(plan, engine, layer)
    and chunked_before(plan, engine, layer),
    "sp_residual_rejoin": lambda plan, engine, layer: layer is not None and layer >= 0
    and not sp_residual(plan, engine, layer) and chunked_before(plan, engine, layer),
    "sp_residual_exit": lambda plan, engine, layer: chunked_before(plan, engine, plan.model.num_hidden_layers),
}
