"""Families of real configs that vLLM 0.11.0 serves, traced against its model code by hand (issue 20).

Each config is written here with the field names the published config.json files of the family use
(and their quirks: ChatGLM's padded_vocab_size, GPT-J's model_type "gptj" and n_inner null, Bamba's
attn_layer_indices, Falcon-Mamba's expand beside a different intermediate_size), with our own sizes.
Unless said otherwise: TP=2, a decode step of 8 requests (a CUDA-graph capture size: no padding),
bf16 activations (2 bytes). Every expected figure is worked out from the vLLM 0.11.0 file named.
"""

import pytest

from commbench import CommbenchError
from commbench.traffic.model_card import card_from_config
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload

BF16 = 2


def decode_ops(cfg, mode="tp", **plan):
    card = card_from_config(cfg, name=cfg["model_type"])
    trace = make_trace(ParallelPlan.for_mode(card, mode, **plan), Workload(8, 1024, 128))
    return {op.site: op for op in trace.ops if op.phase == "decode"}, card


def all_reduces(ops):
    return sum(op.calls for op in ops.values() if op.collective == "all_reduce")


def boundary_tensors(ops):
    return sorted(op.site.split(".")[-1] for op in ops.values() if op.group == "pp" and op.collective == "send_recv"
                  and not op.site.endswith("metadata") and not op.site.endswith("metadata_size"))


GPTJ = {"architectures": ["GPTJForCausalLM"], "model_type": "gptj", "n_embd": 1024, "n_head": 8, "n_layer": 6,
        "n_positions": 4096, "n_inner": None, "rotary_dim": 32, "vocab_size": 50400, "torch_dtype": "float16"}


def test_gptj_model_type_mlp_default_and_single_tensor_boundary():
    # gpt_j.py GPTJBlock: attn.out_proj and mlp.fc_out are RowParallelLinear (2 all-reduces per layer);
    # GPTJMLP inner_dim = 4 * n_embd when n_inner is None; GPTJModel.forward returns
    # IntermediateTensors({"hidden_states"}). The config says model_type "gptj" (not the file's name).
    ops, card = decode_ops(GPTJ)
    assert card.layer_mlp_width == (4 * 1024,) * 6
    assert all_reduces(ops) == 6 * 2 + 1
    # the logits all-gather: 50400 padded to a multiple of 64 = 50432, S = 8 x 50432 x 2 (float16)
    assert ops["lm_head"].msg_bytes == 8 * 50432 * 2
    pp, _ = decode_ops(GPTJ, mode="pp")
    assert boundary_tensors(pp) == ["hidden_states"]
    assert pp["stage0->stage1.hidden_states"].msg_bytes == 4 * 1024 * 2  # a micro-batch of 8 / 2


def test_stablelm_epoch_sends_hidden_states_only():
    # StableLM-3B-4E1T's remote-code config (model_type "stablelm_epoch", StableLMEpochForCausalLM)
    # runs vllm/model_executor/models/stablelm.py: StableLMEpochModel.forward returns
    # IntermediateTensors({"hidden_states"}).
    cfg = {"architectures": ["StableLMEpochForCausalLM"], "model_type": "stablelm_epoch", "hidden_size": 1024,
           "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 16, "num_hidden_layers": 4,
           "vocab_size": 50304, "torch_dtype": "bfloat16"}
    pp, _ = decode_ops(cfg, mode="pp")
    assert boundary_tensors(pp) == ["hidden_states"]


CHATGLM = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "num_layers": 4, "hidden_size": 1024,
           "num_attention_heads": 8, "multi_query_attention": True, "multi_query_group_num": 2, "kv_channels": 128,
           "ffn_hidden_size": 2730, "padded_vocab_size": 65024, "seq_length": 8192, "torch_dtype": "bfloat16"}


def test_chatglm_padded_vocab_size():
    # chatglm.py ChatGLMModel: VocabParallelEmbedding(config.padded_vocab_size) and ParallelLMHead of the
    # same size (the config has no vocab_size); GLMBlock: dense (attention) and dense_4h_to_h (MLP) are
    # RowParallelLinear: 2 all-reduces per layer + the embedding's; IntermediateTensors({"hidden_states"}).
    ops, card = decode_ops(CHATGLM)
    assert card.vocab_size == 65024 and card.num_key_value_heads == 2
    assert ops["lm_head"].msg_bytes == 8 * 65024 * BF16  # 65024 is a multiple of 64: no padding
    assert all_reduces(ops) == 4 * 2 + 1
    pp, _ = decode_ops(CHATGLM, mode="pp")
    assert boundary_tensors(pp) == ["hidden_states"]


BAMBA = {"architectures": ["BambaForCausalLM"], "model_type": "bamba", "attn_layer_indices": [2, 5], "hidden_size": 1024,
         "intermediate_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 8,
         "mamba_n_groups": 1, "mamba_n_heads": 32, "mamba_d_head": 64, "mamba_d_state": 64, "mamba_d_conv": 4,
         "mamba_expand": 2, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_bamba_attention_layers_from_attn_layer_indices():
    # bamba.py BambaModel: layer i is ALL_DECODER_LAYER_TYPES[config.layers_block_type[i]], which
    # transformers' BambaConfig derives from attn_layer_indices: attention at 2 and 5, Mamba-2 (MambaMixer2)
    # in the other 6; each layer then a BambaMLP (down_proj). mamba_n_groups = 1: Mixer2RMSNormGated
    # all-reduces the per-token sum of squares, [8, 1] float32, in each Mamba layer.
    ops, _ = decode_ops(BAMBA)
    assert ops["layer.attn.o_proj"].calls == 2
    assert ops["layer.mamba.out_proj"].calls == 6 and ops["layer.mamba.norm"].calls == 6
    assert ops["layer.mamba.norm"].msg_bytes == 8 * 1 * 4
    assert ops["layer.mlp.down_proj"].calls == 8
    assert all_reduces(ops) == 2 + 6 + 6 + 8 + 1
    pp, _ = decode_ops(BAMBA, mode="pp")  # BambaModel.forward: hidden_states and residual
    assert boundary_tensors(pp) == ["hidden_states", "residual"]


def test_bamba_attn_layer_index_out_of_range_is_named():
    with pytest.raises(CommbenchError, match="attn_layer_indices"):
        card_from_config({**BAMBA, "attn_layer_indices": [2, 8]}, name="bamba")


FALCON_MAMBA = {"architectures": ["FalconMambaForCausalLM"], "model_type": "falcon_mamba", "hidden_size": 1024,
                "intermediate_size": 2048, "expand": 16, "state_size": 32, "time_step_rank": 80, "conv_kernel": 4,
                "num_hidden_layers": 6, "vocab_size": 32000, "use_bias": False, "use_conv_bias": True,
                "mixer_rms_eps": 1e-6, "torch_dtype": "bfloat16"}


def test_pure_mamba_x_proj_and_out_proj():
    # mamba.py MambaDecoderLayer: a norm then MambaMixer(intermediate_size=config.intermediate_size,
    # time_step_rank=config.time_step_rank, ssm_state_size=config.state_size); no MLP, no attention.
    # layers/mamba/mamba_mixer.py: x_proj RowParallelLinear(intermediate, time_step_rank + 2 state_size)
    # all-reduces [8, 80 + 2 x 32 = 144]; out_proj another [8, 1024]. The config names no head count
    # (IsAttentionFree), so any TP dividing the mixer runs: tp 4 too.
    ops, card = decode_ops(FALCON_MAMBA)
    assert ops["layer.mamba.x_proj"].calls == 6 and ops["layer.mamba.x_proj"].msg_bytes == 8 * 144 * BF16
    assert ops["layer.mamba.out_proj"].calls == 6 and ops["layer.mamba.out_proj"].msg_bytes == 8 * 1024 * BF16
    assert all_reduces(ops) == 6 * 2 + 1 and "layer.attn.o_proj" not in ops and "layer.mlp.down_proj" not in ops
    # the mixer is intermediate_size = 2048 wide (not expand x hidden = 16384): conv state 2048 x (4 - 1)
    # and SSM state 2048 x 32 per layer, in bf16
    assert card.state_bytes_per_seq["mamba"] == (2048 * 3 + 2048 * 32) * BF16
    ops4, _ = decode_ops(FALCON_MAMBA, tp=4)
    assert ops4["layer.mamba.x_proj"].group_size == 4
    pp, _ = decode_ops(FALCON_MAMBA, mode="pp")  # MambaModel.forward: hidden_states and residual
    assert boundary_tensors(pp) == ["hidden_states", "residual"]


MAMBA2 = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": 1024, "expand": 2,
          "num_heads": 32, "head_dim": 64, "n_groups": 4, "state_size": 64, "conv_kernel": 4, "num_hidden_layers": 6,
          "vocab_size": 32768, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("groups, norms", [(4, 0), (1, 6)])
def test_pure_mamba2_gated_norm_by_groups(groups, norms):
    # mamba2.py Mamba2DecoderLayer: a norm then MambaMixer2(n_groups=config.n_groups), use_rms_norm on
    # by default; no MLP. out_proj all-reduces [8, 1024]; Mixer2RMSNormGated all-reduces only with one
    # group (4 groups over tp 2: each rank norms its own two).
    ops, _ = decode_ops({**MAMBA2, "n_groups": groups})
    assert ops["layer.mamba.out_proj"].calls == 6
    assert ops.get("layer.mamba.norm", None) is None if not norms else ops["layer.mamba.norm"].calls == norms
    assert all_reduces(ops) == 6 + norms + 1


GRANITE_SHARED = {"architectures": ["GraniteMoeSharedForCausalLM"], "model_type": "granitemoeshared",
                  "hidden_size": 1024, "intermediate_size": 512, "shared_intermediate_size": 768,
                  "num_attention_heads": 16, "num_key_value_heads": 8, "num_hidden_layers": 4, "num_local_experts": 8,
                  "num_experts_per_tok": 2, "vocab_size": 49155, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("shared, per_layer", [(768, 3), (0, 2)])
def test_granite_shared_mlp_reduces_beside_the_experts(shared, per_layer):
    # granitemoeshared.py GraniteMoeSharedDecoderLayer.forward: with shared_intermediate_size > 0,
    # block_sparse_moe (GraniteMoeMoE: FusedMoE reduce_results=True) and shared_mlp
    # (GraniteMoeSharedMLP.output_linear, RowParallelLinear) each all-reduce before their sum is added:
    # o_proj + 2 per layer; without it only the experts'. IntermediateTensors({"hidden_states"}).
    ops, card = decode_ops({**GRANITE_SHARED, "shared_intermediate_size": shared})
    assert all_reduces(ops) == 4 * per_layer + 1
    assert ops["layer.moe"].calls == 4
    if shared:
        assert ops["layer.mlp.down_proj"].calls == 4 and ops["layer.mlp.down_proj"].msg_bytes == 8 * 1024 * BF16
        assert set(card.layer_mlp_width) == {768}
    pp, _ = decode_ops({**GRANITE_SHARED, "shared_intermediate_size": shared}, mode="pp")
    assert boundary_tensors(pp) == ["hidden_states"]


def test_granite_hybrid_without_experts_runs_the_shared_mlp_alone():
    # granitemoehybrid.py: num_local_experts 0 -> block_sparse_moe None; shared_mlp is the layer's only
    # MLP (one all-reduce). Layers: Mamba-2 (one group: norm + out_proj) or attention, per layer_types.
    cfg = {"architectures": ["GraniteMoeHybridForCausalLM"], "model_type": "granitemoehybrid", "hidden_size": 1024,
           "intermediate_size": 2048, "shared_intermediate_size": 2048, "num_local_experts": 0,
           "num_experts_per_tok": 0, "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 4,
           "layer_types": ["mamba", "attention", "mamba", "mamba"], "mamba_n_groups": 1, "mamba_n_heads": 32,
           "mamba_d_head": 64, "mamba_d_state": 64, "vocab_size": 32000, "torch_dtype": "bfloat16"}
    ops, _ = decode_ops(cfg)
    assert ops["layer.mlp.down_proj"].calls == 4 and "layer.moe" not in ops
    assert all_reduces(ops) == 3 * 2 + 1 + 4 + 1


def test_falcon_refined_web_config():
    # falcon-7b's original config.json: model_type "RefinedWebModel", architectures RWForCausalLM (vLLM 0.11.0
    # registry -> falcon.py, config read as RWConfig). parallel_attn -> FalconDecoderLayer:
    # reduce_row_parallel_results False, one all-reduce of attention + MLP per layer;
    # FalconModel.forward: IntermediateTensors({"hidden_states"}).
    cfg = {"architectures": ["RWForCausalLM"], "model_type": "RefinedWebModel", "hidden_size": 1024, "n_head": 16,
           "n_layer": 6, "multi_query": True, "parallel_attn": True, "bias": False, "vocab_size": 65024,
           "torch_dtype": "bfloat16"}
    ops, card = decode_ops(cfg)
    assert card.num_key_value_heads == 1 and card.layer_mlp_width == (4 * 1024,) * 6
    assert ops["layer.parallel_block"].calls == 6 and all_reduces(ops) == 6 + 1
    pp, _ = decode_ops(cfg, mode="pp")
    assert boundary_tensors(pp) == ["hidden_states"]


# --- expert parallelism: which MoE blocks take part, and the DeepEP / pplx kernels with TP (vLLM 0.11.0) ---

def ep_ops(cfg, tp=1, all2all="allgather_reducescatter", engine="vllm-v1"):
    card = card_from_config(cfg, name=cfg["model_type"])
    from commbench.traffic.runner_options import RunnerOptions
    trace = make_trace(ParallelPlan.for_mode(card, "ep", tp=tp), Workload(8, 1024, 128),
                       RunnerOptions(name=engine, all2all=all2all))
    return {op.site: op for op in trace.ops if op.phase == "decode"}


DEEPSEEK_V1 = {"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "hidden_size": 1024,
               "intermediate_size": 2816, "moe_intermediate_size": 512, "num_attention_heads": 8,
               "num_key_value_heads": 8, "num_hidden_layers": 4, "first_k_dense_replace": 1, "moe_layer_freq": 1,
               "n_routed_experts": 16, "n_shared_experts": 2, "num_experts_per_tok": 4, "vocab_size": 32000,
               "torch_dtype": "bfloat16"}


def test_unfused_moe_has_no_expert_parallel_exchange():
    # deepseek.py DeepseekMoE (vLLM 0.11.0): experts are DeepseekMLPs packed and run by fused_experts() on
    # TP-sharded weights, not a FusedMoE layer: --enable-expert-parallel gives no dispatch / combine; each
    # DP replica (4 requests of the 8) runs its own MoE and reduces it over TP (tensor_model_parallel_all_reduce).
    ops = ep_ops(DEEPSEEK_V1)
    assert set(ops) == {"dp.num_tokens"}  # GPUModelRunner's DP token-count all-reduce only
    ops2 = ep_ops(DEEPSEEK_V1, tp=2)
    assert not any(site.startswith("layer.moe.") and op.group == "ep" for site, op in ops2.items())
    assert ops2["layer.moe"].calls == 3 and ops2["layer.moe"].msg_bytes == 4 * 1024 * BF16


MIXTRAL = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 1024,
           "intermediate_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4,
           "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_all2all_kernels_with_tp_span_the_ep_group_and_skip_the_moe_all_reduce():
    # --mode ep --tp 2 (dp 2, world 4), VLLM_ALL2ALL_BACKEND deepep: fused_moe/layer.py builds the DeepEP
    # prepare/finalize on get_ep_group()'s all2all_manager (world_size = dp x tp = 4), so every rank
    # exchanges with all 4, sending its replica's 4 tokens x top_k 2 x 1024 x 2 B = 16384 B each way;
    # FusedMoE.maybe_all_reduce_tensor_model_parallel returns the combined output unreduced (mixtral.py
    # reduce_results=True goes through it): no MoE all-reduce, attention's o_proj still reduces.
    ops = ep_ops(MIXTRAL, tp=2, all2all="all_to_all")
    assert ops["layer.moe.a2a_dispatch"].members == ((0, 1, 2, 3),) and ops["layer.moe.a2a_dispatch"].group_size == 4
    assert ops["layer.moe.a2a_dispatch"].msg_bytes == 4 * 2 * 1024 * BF16
    assert ops["layer.moe.a2a_combine"].calls == 4
    assert "layer.moe" not in ops and ops["layer.attn.o_proj"].calls == 4
    # the all-gather / reduce-scatter backend keeps its DP groups and the MoE all-reduce (naive dispatch)
    ag = ep_ops(MIXTRAL, tp=2)
    assert ag["layer.moe.dispatch"].group_size == 2 and ag["layer.moe"].calls == 4


def qwen2_moe(shared: int) -> dict:
    """A 4-layer Qwen2-MoE config (every layer MoE, 8 experts, top-2) with a shared expert `shared` wide."""
    return {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 1024,
            "intermediate_size": 2048, "moe_intermediate_size": 512, "shared_expert_intermediate_size": shared,
            "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4, "num_experts": 8,
            "num_experts_per_tok": 2, "decoder_sparse_step": 1, "vocab_size": 32000, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("shared, extra", [(1024, 4), (0, 0)])
def test_qwen2_moe_shared_expert_reduces_alone_under_all2all_kernels(shared, extra):
    # qwen2_moe.py Qwen2MoeSparseMoeBlock: shared_expert reduce_results = must_reduce_shared_expert_outputs(),
    # true with the DeepEP kernels: one all-reduce [4, 1024] of its own per MoE layer; the routed output
    # is not reduced (maybe_all_reduce_tensor_model_parallel). No shared expert (width 0): nothing.
    cfg = qwen2_moe(shared)
    ops = ep_ops(cfg, tp=2, all2all="all_to_all")
    assert "layer.moe" not in ops
    assert (ops["layer.moe.shared_experts"].calls if extra else 0) == extra
    if extra:
        assert ops["layer.moe.shared_experts"].msg_bytes == 4 * 1024 * BF16


def test_explicit_moe_all_reduce_stays_under_all2all_kernels():
    # dots1.py Dots1MoE.forward: FusedMoE(reduce_results=False), then tensor_model_parallel_all_reduce of
    # routed + shared itself when tp > 1: kept whatever the all2all backend.
    cfg = {"architectures": ["Dots1ForCausalLM"], "model_type": "dots1", "hidden_size": 1024, "intermediate_size": 2048,
           "moe_intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 8, "num_hidden_layers": 4,
           "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_routed_experts": 16, "n_shared_experts": 1,
           "num_experts_per_tok": 4, "vocab_size": 32000, "torch_dtype": "bfloat16"}
    ops = ep_ops(cfg, tp=2, all2all="all_to_all")
    assert ops["layer.moe"].calls == 3 and ops["layer.moe.a2a_dispatch"].group_size == 4


def test_glm45v_text_model_routes_in_float32():
    # glm4_1v.py Glm4vMoeForConditionalGeneration: the language model is Glm4MoeForCausalLM (glm4_moe.py),
    # whose Glm4MoE.forward runs the gate on hidden_states.to(torch.float32): under EP the all-gathered
    # router logits are float32, [4 tokens, 8 experts] x 4 B x 2 ranks = 256 B (AgRsAll2AllManager.dispatch).
    cfg = {"architectures": ["Glm4vMoeForConditionalGeneration"], "model_type": "glm4v_moe", "torch_dtype": "bfloat16",
           "text_config": {"model_type": "glm4v_moe_text", "hidden_size": 1024, "intermediate_size": 2048,
                           "moe_intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
                           "num_hidden_layers": 4, "first_k_dense_replace": 1, "n_routed_experts": 8,
                           "n_shared_experts": 1, "num_experts_per_tok": 2, "vocab_size": 32000}}
    ops = ep_ops(cfg)
    logits = ops["layer.moe.dispatch_router_logits"]
    assert logits.dtype == "float32" and logits.msg_bytes == 4 * 8 * 4 * 2 and logits.calls == 3


# --- the same kernels in the current release (vLLM 0.33.0, --engine vllm-v2) ---

def test_current_release_all2all_kernels_without_sequence_parallel_family():
    # mixtral.py never passes is_sequence_parallel: sp_size 1 (fused_moe/layer.py make_parallel_config), but
    # FusedMoEParallelConfig.use_all2all_kernels (use_ep, dp 2 > 1) -> all2all_utils.py maybe_make_prepare_finalize
    # builds DeepEP on get_ep_all2all_manager() (get_ep_group(): dp x tp = 4 ranks, num_dispatchers 4): each TP
    # rank sends its replica's 4 tokens x top_k 2 x 1024 x 2 B in all; the combine is output_is_reduced()
    # (prepare_finalize/deepep_ht.py), so runner/moe_runner.py _maybe_reduce_final_output issues no all-reduce.
    ops = ep_ops(MIXTRAL, tp=2, all2all="all_to_all", engine="vllm-v2")
    d = ops["layer.moe.a2a_dispatch"]
    assert d.members == ((0, 1, 2, 3),) and d.group_size == 4 and d.msg_bytes == 4 * 2 * 1024 * BF16
    assert ops["layer.moe.a2a_dispatch_topk_ids"].msg_bytes == 4 * 2 * 2 * 8  # 4 tokens x 2 ids, int64
    assert ops["layer.moe.a2a_dispatch_topk_weights"].msg_bytes == 4 * 2 * 2 * 4  # float32 weights
    assert "layer.moe" not in ops and ops["layer.attn.o_proj"].calls == 4
    assert ops["dp.batch_sync"].calls == 1  # v1/worker/gpu/dp_utils.py, not 0.11.0's dp.num_tokens


@pytest.mark.parametrize("shared, calls", [(1024, 4), (0, 0)])
def test_current_release_runner_reduces_the_shared_expert_alone(shared, calls):
    # current qwen2_moe.py: FusedMoEFactory(shared_experts=self.shared_expert) (reduce_results=False on the
    # expert itself); runner/moe_runner.py _maybe_reduce_shared_expert_output all-reduces the shared output
    # [4, 1024] when the DeepEP combine already reduced the routed one (not sequence parallel): one per MoE
    # layer, traced on the block's TP all-reduce site; no shared expert: nothing over TP.
    cfg = qwen2_moe(shared)
    ops = ep_ops(cfg, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert (ops["layer.moe"].calls if calls else 0) == calls and "layer.moe.shared_experts" not in ops
    if calls:
        assert ops["layer.moe"].msg_bytes == 4 * 1024 * BF16


def test_bailing_moe_explicit_reduce_is_0110_only():
    # vLLM 0.11.0 bailing_moe.py BailingMoE.forward: tensor_model_parallel_all_reduce itself (kept under the
    # kernels); the current one leaves it to the runner, which reduces only the shared output it holds.
    cfg = {"architectures": ["BailingMoeForCausalLM"], "model_type": "bailing_moe", "hidden_size": 1024,
           "intermediate_size": 2048, "moe_intermediate_size": 512, "num_attention_heads": 8,
           "num_key_value_heads": 8, "num_hidden_layers": 4, "num_experts": 8, "num_experts_per_tok": 2,
           "num_shared_experts": 0, "vocab_size": 32000, "torch_dtype": "bfloat16"}
    assert ep_ops(cfg, tp=2, all2all="all_to_all")["layer.moe"].calls == 4
    assert "layer.moe" not in ep_ops(cfg, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert ep_ops({**cfg, "num_shared_experts": 1}, tp=2, all2all="all_to_all", engine="vllm-v2")["layer.moe"].calls == 4


# --- the runner's shared-expert all-reduce in more 0.33.0 families (FusedMoEFactory(shared_experts=...)) ---
# Each: --mode ep --tp 2 (dp 2, world 4), DeepEP kernels, 8 decode requests -> 4 tokens per replica; the
# file passes no is_sequence_parallel, so moe_config.is_sequence_parallel is false and
# runner/moe_runner.py _maybe_reduce_shared_expert_output all-reduces the shared output [4, hidden] (the
# DeepEP combine being output_is_reduced) once per MoE layer; no shared expert -> no MoE TP all-reduce.

STEP3P5 = {"architectures": ["Step3p5ForCausalLM"], "model_type": "step3p5", "hidden_size": 1024,
           "intermediate_size": 2816, "num_attention_heads": 8, "num_attention_groups": 2, "num_hidden_layers": 4,
           "moe_layers_enum": "1,2,3", "moe_num_experts": 8, "moe_top_k": 2, "moe_intermediate_size": 512,
           "share_expert_dim": 1280, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_step3p5_runner_reduces_its_shared_expert():
    # step3p5.py FusedMoEBlock.__init__: share_expert = Step3p5MLP(share_expert_dim, reduce_results=False) in
    # every MoE layer (_is_moe_layer: moe_layers_enum "1,2,3" -> layers 1..3), FusedMoEFactory(shared_experts=
    # self.share_expert): 3 all-reduces of 4 tokens x 1024 x 2 B = 8192 B; layer 0's dense Step3p5MLP
    # (reduce_results=True) still reduces on its own (1 call).
    ops = ep_ops(STEP3P5, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert ops["layer.moe"].calls == 3 and ops["layer.moe"].msg_bytes == 8192
    assert ops["layer.mlp.down_proj"].calls == 1
    assert ops["layer.moe.a2a_dispatch"].calls == 3 and ops["layer.moe.a2a_dispatch"].group_size == 4
    # without moe_layers_enum (or mlp_layer_types) _is_moe_layer returns 0 < layer_idx < num_hidden_layers
    bare = card_from_config({k: v for k, v in STEP3P5.items() if k != "moe_layers_enum"}, name="step3p5")
    assert bare.moe_layer_mask == (False, True, True, True)


HY_V3 = {"architectures": ["HYV3ForCausalLM"], "model_type": "hy_v3", "hidden_size": 1536, "intermediate_size": 4096,
         "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 96, "num_hidden_layers": 6,
         "first_k_dense_replace": 2, "num_experts": 16, "num_experts_per_tok": 4, "expert_hidden_dim": 384,
         "num_shared_experts": 1, "vocab_size": 32000, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("shared, calls", [(1, 4), (0, 0)])
def test_hy_v3_runner_reduces_its_shared_expert(shared, calls):
    # hy_v3.py HYV3DecoderLayer: layer_idx < first_k_dense_replace (2) -> HYV3FeedForward, else HYV3MoEFused:
    # 4 MoE layers of 6. HYV3MoEFused.__init__: shared_mlp (expert_hidden_dim x num_shared_experts wide,
    # reduce_results=False) only when num_shared_experts > 0, FusedMoEFactory(shared_experts=self.shared_mlp):
    # 4 all-reduces of 4 tokens x 1536 x 2 B = 12288 B; num_shared_experts 0 -> shared_mlp None: none.
    ops = ep_ops({**HY_V3, "num_shared_experts": shared}, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert (ops["layer.moe"].calls if calls else 0) == calls
    if calls:
        assert ops["layer.moe"].msg_bytes == 4 * 1536 * BF16 == 12288


AFMOE = {"architectures": ["AfmoeForCausalLM"], "model_type": "afmoe", "hidden_size": 1024, "intermediate_size": 3072,
         "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4, "num_dense_layers": 1,
         "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 256, "num_shared_experts": 1,
         "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_afmoe_shared_expert_and_float32_gate_in_the_current_release():
    # afmoe.py AfmoeDecoderLayer: moe_enabled = layer_idx >= num_dense_layers (1): 3 MoE layers. AfmoeMoE:
    # shared_experts (num_shared_experts > 0, reduce_results=False) into FusedMoEFactory: 3 all-reduces of
    # 4 x 1024 x 2 B under the DeepEP kernels. Its gate is GateLinear(out_dtype=torch.float32): with the
    # all-gather backend (tp 1, world 2) the router logits gathered are 4 tokens x 8 experts x 4 B x 2 ranks.
    ops = ep_ops(AFMOE, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert ops["layer.moe"].calls == 3 and ops["layer.moe"].msg_bytes == 4 * 1024 * BF16
    assert "layer.moe" not in ep_ops({**AFMOE, "num_shared_experts": 0}, tp=2, all2all="all_to_all", engine="vllm-v2")
    logits = ep_ops(AFMOE, engine="vllm-v2")["layer.moe.dispatch_router_logits"]
    assert logits.dtype == "float32" and logits.msg_bytes == 4 * 8 * 4 * 2 and logits.calls == 3


ERNIE_VL = {"architectures": ["Ernie4_5_VLMoeForConditionalGeneration"], "model_type": "ernie4_5_moe_vl",
            "hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
            "intermediate_size": 2048, "vocab_size": 10240, "moe_num_experts": [16, 16], "moe_k": 4,
            "moe_intermediate_size": [256, 128], "moe_layer_start_index": [1, 2], "moe_layer_end_index": [4, 5],
            "moe_num_shared_experts": 2, "torch_dtype": "bfloat16"}


def test_ernie45_vl_shared_experts_under_all2all_kernels_both_generations():
    # ernie45_vl_moe.py Ernie4_5_VLMoeMoE (has_shared_experts: moe_num_shared_experts 2 > 0), MoE layers 1..5:
    # vLLM 0.11.0 shared_experts reduce_results=text_experts.must_reduce_shared_expert_outputs() -> an
    # all-reduce of its own per MoE layer (5 x [4, 512] x 2 B); the current release hands them to
    # FusedMoEFactory(shared_experts=...) for text_experts -> the runner's one all-reduce of the same size.
    v1 = ep_ops(ERNIE_VL, tp=2, all2all="all_to_all")
    assert v1["layer.moe.shared_experts"].calls == 5 and v1["layer.moe.shared_experts"].msg_bytes == 4 * 512 * BF16
    assert "layer.moe" not in v1
    v2 = ep_ops(ERNIE_VL, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert v2["layer.moe"].calls == 5 and v2["layer.moe"].msg_bytes == 4 * 512 * BF16
    assert "layer.moe.shared_experts" not in v2
    none = ep_ops({**ERNIE_VL, "moe_num_shared_experts": 0}, tp=2, all2all="all_to_all", engine="vllm-v2")
    assert "layer.moe" not in none
