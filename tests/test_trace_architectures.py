"""Trace of every architecture family in tests/configs/ against vLLM's model code, by hand.

Each test names the vLLM file (current release; 0.11.0 where it differs) whose forward pass makes
the calls, and works the expected call counts and bytes out from the config's own numbers.
Unless said otherwise: TP=2, a decode step of 8 requests (8 is a CUDA-graph capture size, so the
default graph padding leaves it alone), bf16 activations (2 bytes).
"""

import json
import os
import pickle
import re
import sys
import types
from collections import namedtuple
from pathlib import Path

import pytest

from commbench import CommbenchError
from commbench.traffic.model_card import card_from_config, load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.boundary import metadata_pickle_bytes
from commbench.traffic.runner_options import RunnerOptions
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload
from tests.conftest import mpiexec_path

CONFIGS = Path(__file__).parent / "configs"
BF16 = 2


def decode_ops(config, mode="tp", batch=8, engine=None, **plan):
    if isinstance(config, str):  # a corpus file, or a shipped model card by name
        path = CONFIGS / f"{config}.json"
        config = load_model_card(str(path) if path.exists() else config)
    card = config
    trace = make_trace(ParallelPlan.for_mode(card, mode, **plan), Workload(batch, 1024, 128), engine)
    return {op.site: op for op in trace.ops if op.phase == "decode"}, trace


def all_reduces(ops):
    return sum(op.calls for op in ops.values() if op.collective == "all_reduce")


@pytest.mark.parametrize("config", ["nemotron_h_legacy", "nemotron_h"])
def test_nemotron_h_one_all_reduce_per_layer(config):
    # vllm/model_executor/models/nemotron_h.py: each of the 52 layers is ONE block, chosen by
    # hybrid_override_pattern "M-M-M-M*-M-M-M-M-M*-..." (transformers 5: layers_block_type):
    # 24 "M" Mamba-2 (out_proj RowParallelLinear), 24 "-" MLP (down_proj), 4 "*" attention (o_proj).
    # n_groups = 8 is divisible by tp = 2, so Mixer2RMSNormGated reduces within its own groups: no collective.
    ops, trace = decode_ops(config)
    assert ops["layer.mamba.out_proj"].calls == 24
    assert ops["layer.mlp.down_proj"].calls == 24
    assert ops["layer.attn.o_proj"].calls == 4
    assert "layer.mamba.norm" not in ops and "layer.moe" not in ops
    assert all_reduces(ops) == 52 + 1  # one per layer and the embedding; "two per layer" would say 105
    assert ops["layer.mamba.out_proj"].msg_bytes == 8 * 4096 * BF16


def test_granite_hybrid_mamba2_single_group_norm_all_reduce():
    # vllm/model_executor/layers/mamba/mamba_mixer2.py Mixer2RMSNormGated.forward_native: n_groups == 1
    # and tp > 1 -> all-reduce of the per-token sum of squares, [tokens, 1] float32.
    # granitemoehybrid.py: every layer is a mixer (6 Mamba-2, 2 attention) plus the MoE FFN and, with
    # shared_intermediate_size = 1024, the shared_mlp whose output_linear reduces on its own (8 more).
    ops, _ = decode_ops("granitemoehybrid")
    assert ops["layer.mamba.norm"].calls == 6 and ops["layer.mamba.norm"].msg_bytes == 8 * 1 * 4
    assert ops["layer.mamba.norm"].dtype == "float32"
    assert ops["layer.mamba.out_proj"].calls == 6 and ops["layer.attn.o_proj"].calls == 2
    assert ops["layer.moe"].calls == 8 and ops["layer.mlp.down_proj"].calls == 8
    assert all_reduces(ops) == 6 + 6 + 2 + 8 + 8 + 1


def test_jamba_mamba1_x_proj_and_periodic_experts():
    # vllm/model_executor/layers/mamba/mamba_mixer.py: x_proj is a RowParallelLinear from the
    # sharded intermediate size to dt_rank + 2 * d_state = 256 + 2 * 16 = 288 -> an all-reduce of
    # [tokens, 288]; out_proj another. jamba.py: attention where i % 8 == 4 (4 layers), Mamba
    # elsewhere (28); MoE where i % 2 == 1 (16 layers), a dense MLP elsewhere (16).
    ops, _ = decode_ops("jamba")
    assert ops["layer.mamba.x_proj"].calls == 28 and ops["layer.mamba.x_proj"].msg_bytes == 8 * 288 * BF16
    assert ops["layer.mamba.out_proj"].calls == 28 and ops["layer.attn.o_proj"].calls == 4
    assert ops["layer.moe"].calls == 16 and ops["layer.mlp.down_proj"].calls == 16
    assert all_reduces(ops) == 28 * 2 + 4 + 16 + 16 + 1


def test_qwen3_next_gated_deltanet_layers():
    # qwen3_next.py: layer_types 3 x linear_attention then full_attention, 48 layers -> 36 Gated
    # DeltaNet (out_proj RowParallelLinear; RMSNormGated per head: no collective) and 12 attention;
    # every layer's sparse MoE block (shared expert included) reduces once.
    ops, _ = decode_ops("qwen3_next")
    assert ops["layer.linear_attn.out_proj"].calls == 36 and ops["layer.attn.o_proj"].calls == 12
    assert ops["layer.moe"].calls == 48 and all_reduces(ops) == 36 + 12 + 48 + 1
    assert ops["layer.moe"].msg_bytes == 8 * 2048 * BF16


def test_cohere_parallel_block_one_all_reduce():
    # commandr.py CohereDecoderLayer: attention and MLP read the same normed input, o_proj and
    # down_proj have reduce_results=False, one tensor_model_parallel_all_reduce of their sum.
    ops, _ = decode_ops("cohere")
    assert set(ops) == {"embed", "layer.parallel_block", "lm_head"}
    assert ops["layer.parallel_block"].calls == 40 and ops["layer.parallel_block"].msg_bytes == 8 * 8192 * BF16


def test_falcon_parallel_block_and_single_tensor_boundary():
    # falcon.py: new_decoder_architecture -> reduce_row_parallel_results False: one all-reduce per
    # layer; its IntermediateTensors hold hidden_states only (no residual).
    ops, _ = decode_ops("falcon")
    assert ops["layer.parallel_block"].calls == 60 and all_reduces(ops) == 61
    pp, _ = decode_ops("falcon", mode="pp")
    sends = [op for op in pp.values() if op.group == "pp"]
    assert [op.site for op in sends] == ["stage0->stage1.hidden_states"]
    assert sends[0].msg_bytes == 4 * 8192 * BF16  # a micro-batch of 8 / 2 requests
    # the metadata pickle names one tensor: 96 + len("bfloat16") + 24 + len("hidden_states") + 2 + 3
    assert pp["stage0->stage1.metadata"].msg_bytes == 96 + 8 + 24 + 13 + 2 + 3


def test_minimax_m2_qk_norm_spans_tp():
    # minimax_m2.py: MiniMaxText01RMSNormTP.forward_qkv -> rms_norm_tp.py _all_reduce_variance of the
    # q and k variances, [tokens, 2] float32, before attention in every layer.
    ops, _ = decode_ops("minimax_m2")
    assert ops["layer.attn.qk_norm"].calls == 62 and ops["layer.attn.qk_norm"].msg_bytes == 8 * 2 * 4
    assert ops["layer.attn.o_proj"].calls == 62 and ops["layer.moe"].calls == 62
    assert all_reduces(ops) == 3 * 62 + 1


def test_longcat_flash_dense_mlps_beside_the_moe_reduce_separately():
    # longcat_flash.py FlashDecoderLayer: self_attn[0], the MoE, mlps[0], self_attn[1], mlps[1]: each a
    # RowParallel output reduced on its own: 2 + 1 + 2 all-reduces in each of num_layers = 28 layers.
    card = load_model_card(str(CONFIGS / "longcat_flash.json"))
    assert card.blocks_of(0) == ("attention", "moe", "mlp", "attention", "mlp")
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].calls == 56 and ops["layer.mlp.down_proj"].calls == 56
    assert ops["layer.moe"].calls == 28 and all_reduces(ops) == 5 * 28 + 1


def test_gemma4_per_layer_inputs_cross_the_boundary_as_a_third_dimension():
    # gemma4.py (Gemma4Config defaults: hidden 2304, 30 layers, hidden_size_per_layer_input 256):
    # the first stage also embeds per-layer inputs (embed_tokens_per_layer, a VocabParallelEmbedding:
    # all-reduce of [tokens, 30 x 256]) and projects hidden states to them (per_layer_model_projection,
    # ColumnParallelLinear(gather_output=True): all-gather, S = tokens x 7680 x 2 B).
    ops, _ = decode_ops("gemma4")
    assert ops["embed_per_layer"].msg_bytes == 8 * 30 * 256 * BF16 == 122_880
    assert ops["per_layer_projection"].collective == "all_gather" and ops["per_layer_projection"].msg_bytes == 122_880
    assert ops["layer.attn.o_proj"].calls == 30 and ops["layer.mlp.down_proj"].calls == 30
    assert all_reduces(ops) == 1 + 1 + 2 * 30
    # PP: IntermediateTensors {hidden_states [tokens, 2304], per_layer_inputs [tokens, 30, 256]}; no residual
    pp, _ = decode_ops("gemma4", mode="pp")
    sends = {op.site: op for op in pp.values() if op.group == "pp"}
    assert set(sends) == {"stage0->stage1.hidden_states", "stage0->stage1.per_layer_inputs"}
    assert sends["stage0->stage1.per_layer_inputs"].msg_bytes == 4 * 30 * 256 * BF16
    assert sends["stage0->stage1.per_layer_inputs"].shape == "[4, 30, 256]"
    # metadata pickle: 96 + len("bfloat16") + (24 + 13 + 2 + 3) + (24 + len("per_layer_inputs") + 2 + 2 + 3)
    assert pp["stage0->stage1.metadata"].msg_bytes == 104 + 42 + 47


def test_gemma4_moe_runs_beside_the_dense_mlp():
    # gemma4.py Gemma4DecoderLayer: the MLP runs unconditionally and the MoE block beside it, each
    # output normed before their sum, so each reduces: 3 all-reduces per layer; `top_k_experts` is
    # the config's name for the experts per token.
    card = load_model_card(str(CONFIGS / "gemma4_moe.json"))
    assert card.experts_per_token == 8 and card.blocks_of(0) == ("attention", "mlp", "moe")
    ops, _ = decode_ops(card)
    assert ops["layer.mlp.down_proj"].calls == 30 and ops["layer.moe"].calls == 30
    assert all_reduces(ops) == 3 * 30 + 1 and "embed_per_layer" not in ops


def test_nemotron_nas_block_configs():
    # nemotron_nas.py DeciLMDecoderLayer: attention.no_op / ffn.no_op layers have no such block (and
    # no all-reduce); each FFN's width is _ffn_mult_to_intermediate_size(ffn_mult, hidden) =
    # round_up(int(2 * ffn_mult * hidden / 3), 256).
    card = load_model_card(str(CONFIGS / "nemotron_nas.json"))
    assert card.layer_mlp_width[0] == 28672  # 2 * 5.25 * 8192 / 3 = 28672
    assert card.layer_mlp_width[6] == 2816  # 2 * 0.5 * 8192 / 3 = 2730.67 -> 2730 -> 2816
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].calls == 5  # layers 2, 3 and 6 have no attention
    assert ops["layer.mlp.down_proj"].calls == 7  # layer 4 has no FFN
    assert all_reduces(ops) == 5 + 7 + 1


def test_gpt2_aliases_float32_and_single_tensor_boundary():
    # gpt2.py: n_embd / n_layer / n_head are HF attribute_map aliases; no dtype in the config -> float32
    # -> vLLM's auto dtype serves bfloat16 (vllm/config/model.py _resolve_auto_dtype); the MLP width
    # defaults to 4 x n_embd; IntermediateTensors(['hidden_states']).
    card = load_model_card(str(CONFIGS / "gpt2.json"))
    assert (card.hidden_size, card.num_hidden_layers, card.num_attention_heads) == (768, 12, 12)
    assert card.activation_dtype == "bfloat16" and card.intermediate_size == 4 * 768
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].msg_bytes == 8 * 768 * BF16 and all_reduces(ops) == 2 * 12 + 1
    # vocab 50257 -> padded to 50304 (a multiple of 64), half per rank, gathered: S = 8 x 50304 x 2 B
    assert ops["lm_head"].msg_bytes == 8 * 50304 * BF16


@pytest.mark.parametrize("config, field", [("zamba2", "zamba2"), ])
def test_unmodelled_family_fails_naming_it(config, field):
    with pytest.raises(CommbenchError, match=rf"model_type '{field}' cannot be traced: its 'hybrid' layers"):
        load_model_card(str(CONFIGS / f"{config}.json"))


BASE = {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "vocab_size": 1000,
        "intermediate_size": 512}


def test_unknown_layer_kind_and_pattern_char_name_the_field():
    with pytest.raises(CommbenchError, match=r"layer_types\[2\] = 'retention' is a layer kind commbench cannot model; valid:"):
        card_from_config({**BASE, "layer_types": ["full_attention"] * 2 + ["retention", "full_attention"]}, "x")
    with pytest.raises(CommbenchError, match=r"hybrid_override_pattern has 'X'; valid: M, \*, -, E"):
        card_from_config({**BASE, "model_type": "nemotron_h", "hybrid_override_pattern": "M*X-"}, "x")
    with pytest.raises(CommbenchError, match=r"has ssm_state_size .* but no per-layer list"):
        card_from_config({**BASE, "ssm_state_size": 128}, "x")


def test_llama4_interleaved_moe_layers():
    # llama4.py Llama4DecoderLayer: is_moe_layer = (layer_idx + 1) % interleave_moe_layer_step == 0 (Maverick: 2);
    # the other layers' dense MLP is intermediate_size_mlp wide, the experts intermediate_size
    cfg = {**BASE, "model_type": "llama4_text", "intermediate_size": 128, "intermediate_size_mlp": 512,
           "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2}
    card = card_from_config(cfg, "maverick-like")
    assert card.moe_layer_mask == (False, True, False, True)
    assert (card.intermediate_size, card.moe_intermediate_size) == (512, 128)
    ops, _ = decode_ops(card)
    assert ops["layer.moe"].calls == 2 and ops["layer.mlp.down_proj"].calls == 2 and all_reduces(ops) == 4 + 2 + 2 + 1


@pytest.mark.parametrize("config, total_b, active_b", [
    ("jamba", 51.6, 12.0),  # AI21: Jamba-v0.1, 52B total (51.6B), 12B active
    ("nemotron_h_legacy", 8.1, None),  # NVIDIA: Nemotron-H-8B-Base-8K, 8B
    ("qwen3_next", 80.0, 3.0),  # Qwen3-Next-80B-A3B
    ("longcat_flash", 560.0, 31.3),  # Meituan: LongCat-Flash, 560B total, 18.6-31.3B active (top-12 of 512
                                      # incl. zero experts: commbench counts every routed expert, the upper end)
])
def test_parameter_counts_per_layer_match_the_published_sizes(config, total_b, active_b):
    """The per-layer accounting (ModelCard.layer_params: attention, dense MLP of each width, experts,
    Mamba / Gated DeltaNet mixers from the config's fields) against each model's published size."""
    card = load_model_card(str(CONFIGS / f"{config}.json"))
    assert card.total_params / 1e9 == pytest.approx(total_b, rel=0.05)
    if active_b is not None:
        assert card.active_params / 1e9 == pytest.approx(active_b, rel=0.12)


def test_predict_prices_hybrid_layers_from_their_blocks():
    """Nemotron-H TP=2: the stage reads its 4 attention layers' KV and its 24 Mamba-2 layers' state
    (per sequence: ((d + 2 g N)(K - 1) + d N) x 4 B, float32 cache), not 52 layers of KV."""
    from commbench.predict.hardware import load_hardware
    from commbench.predict.serving import stage_cost

    card = load_model_card(str(CONFIGS / "nemotron_h_legacy.json"))
    sc = stage_cost(ParallelPlan.for_mode(card, "tp"), 0, load_hardware("dgx-spark"))
    assert (sc.full_layers, sc.sliding_layers) == (4, 0)
    d, g, n, k = 128 * 64, 8, 128, 4
    per_layer = ((d + 2 * g * n) * (k - 1) + d * n) * 4  # the config's mamba_ssm_cache_dtype: float32
    assert card.state_bytes_per_seq["mamba2"] == per_layer
    assert sc.state_bytes_per_seq == pytest.approx(24 * per_layer / 2)
    # every parameter of the stage is priced once: weights on the rank = (all layer params + embedding + head) / 2
    layer_params = sum(sum(card.layer_params(i).values()) for i in range(52))
    assert sc.weight_bytes_total == pytest.approx((layer_params + 2 * card.embedding_params) / 2 * 2)


def test_dtype_rules():
    # transformers 5 writes `dtype`, older files `torch_dtype`; float32 (or none) is served in bf16.
    assert card_from_config({**BASE, "torch_dtype": "float32"}, "x").activation_dtype == "bfloat16"
    assert card_from_config({**BASE, "dtype": "float16"}, "x").activation_dtype == "float16"
    assert card_from_config(BASE, "x").activation_dtype == "bfloat16"


def test_config_aliases_and_text_config_library_default():
    for key in ("top_k_experts", "num_experts_per_token"):
        card = card_from_config({**BASE, "num_local_experts": 8, key: 2, "moe_intermediate_size": 128}, "x")
        assert card.experts_per_token == 2 and card.num_experts == 8
    # a Mistral3 wrapper whose text_config names no vocab_size: MistralConfig's default 32000
    wrapped = {"model_type": "mistral3", "text_config": {k: v for k, v in BASE.items() if k != "vocab_size"}}
    assert card_from_config(wrapped, "x").vocab_size == 32000


@pytest.mark.parametrize("engine, batch, padded", [
    ("vllm-v1", 260, 264),  # 0.11.0: [1, 2, 4] + range(8, 513, 8)
    ("vllm-v2", 260, 272),  # current: ... range(8, 256, 8) + range(256, 513, 16)
    ("vllm-v1", 3, 4), ("vllm-v2", 600, 600),  # above the largest capture size (512): no graph, no padding
])
def test_cuda_graph_padding(engine, batch, padded):
    ops, _ = decode_ops("llama-3.1-8b-instruct", batch=batch, engine=RunnerOptions(engine))
    card = load_model_card("llama-3.1-8b-instruct")
    assert ops["layer.attn.o_proj"].msg_bytes == padded * 4096 * BF16
    # the logits gather carries the sampled rows, never padded: 128256 / 2 per rank, gathered
    assert ops["lm_head"].msg_bytes == batch * (card.vocab_size // 2) * 2 * BF16
    eager, _ = decode_ops("llama-3.1-8b-instruct", batch=batch, engine=RunnerOptions(engine, cuda_graphs=False))
    assert eager["layer.attn.o_proj"].msg_bytes == batch * 4096 * BF16


@pytest.mark.parametrize("kernel, hidden", [("triton", 2880), ("marlin", 3072), ("flashinfer-cutlass", 2944)])
def test_mxfp4_moe_kernel_pads_the_moe_all_reduce(kernel, hidden):
    # mxfp4.py Mxfp4MoEMethod.create_weights: Marlin round_up(2880, 256) = 3072; CUTLASS 128 -> 2944;
    # FusedMoE.forward_native pads the input, the all-reduce inside moe_forward carries the padded
    # width, and the output is sliced back: attention's o_proj is untouched.
    ops, _ = decode_ops("gpt-oss-120b", batch=64, engine=RunnerOptions(moe_kernel=kernel))
    assert ops["layer.moe"].msg_bytes == 64 * hidden * BF16
    assert ops["layer.attn.o_proj"].msg_bytes == 64 * 2880 * BF16


def test_vllm_v2_broadcasts_sampled_tokens_across_pp():
    # vllm/v1/worker/gpu/pp_utils.py: every step the last PP rank broadcasts sampled_tokens
    # [num_reqs, 1] int64 and (num_sampled, num_rejected) [2, num_reqs] int32; 0.11.0 does not.
    v2, _ = decode_ops("llama-3.1-8b-instruct", mode="pp", engine=RunnerOptions("vllm-v2"))
    assert v2["sampled_tokens"].collective == "broadcast" and v2["sampled_tokens"].msg_bytes == 4 * 8
    assert v2["sampled_counts"].msg_bytes == 2 * 4 * 4 and v2["sampled_tokens"].peers == "[0,1]"
    v1, _ = decode_ops("llama-3.1-8b-instruct", mode="pp", engine=RunnerOptions("vllm-v1"))
    assert "sampled_tokens" not in v1


def test_expert_parallel_allgather_reducescatter_by_hand():
    # gpt-oss-120b, --data-parallel-size 2 --enable-expert-parallel, batch 128: each replica decodes
    # 64 requests. all2all.py AgRsAll2AllManager: dispatch all_gatherv of hidden_states [64, 2880] and
    # router_logits [64, 128 experts] over the DP group, combine reduce_scatterv; per MoE layer (36).
    ops, trace = decode_ops("gpt-oss-120b", mode="ep", batch=128)
    assert trace.plan.world_size == 2 and trace.plan.mode == "ep"
    assert ops["layer.moe.dispatch"].msg_bytes == 2 * 64 * 2880 * BF16 == 737_280  # S = gathered total
    assert ops["layer.moe.dispatch_router_logits"].msg_bytes == 2 * 64 * 128 * BF16
    assert ops["layer.moe.combine"].collective == "reduce_scatter" and ops["layer.moe.combine"].msg_bytes == 737_280
    assert all(ops[s].calls == 36 for s in ("layer.moe.dispatch", "layer.moe.combine"))
    assert "layer.attn.o_proj" not in ops  # tp = 1: attention runs whole in each replica
    # 0.11.0 forward_context.py DPMetadata.num_tokens_across_dp: all-reduce of int32 [dp]
    assert ops["dp.num_tokens"].msg_bytes == 2 * 4 and ops["dp.num_tokens"].calls == 1


def test_expert_parallel_all_to_all_and_tp_inside():
    # DeepEP / pplx: each of 64 tokens goes to its top-4 experts: S = 64 x 4 x 2880 x 2 B each way
    ops, _ = decode_ops("gpt-oss-120b", mode="ep", batch=128, engine=RunnerOptions(all2all="all_to_all"))
    assert ops["layer.moe.a2a_dispatch"].msg_bytes == 64 * 4 * 2880 * BF16
    assert ops["layer.moe.a2a_combine"].collective == "all_to_all" and "layer.moe.dispatch" not in ops
    # TP 2 inside 2 replicas: ranks [0,1] and [2,3] all-reduce attention; gpt-oss's MoE runs
    # sequence-parallel (test_sequence_parallel_moe_*): the DeepEP exchange spans all 4 ranks with
    # each rank's 32-token chunk, top-4 over 4 ranks: S = 4 x 32 x (4 / 4) x 2880 x 2 B = 32 x 4 x 2880 x 2 B
    tpep, trace = decode_ops("gpt-oss-120b", mode="ep", batch=128, tp=2, engine=RunnerOptions(all2all="all_to_all"))
    assert trace.plan.world_size == 4
    assert tpep["layer.attn.o_proj"].peers == "[0,1] [2,3]" and tpep["layer.attn.o_proj"].calls == 36
    assert tpep["layer.moe.a2a_dispatch"].peers == "[0,1,2,3]" and tpep["layer.moe.a2a_dispatch"].calls == 36
    assert tpep["layer.moe.a2a_dispatch"].msg_bytes == 32 * 4 * 2880 * BF16
    assert "layer.moe" not in tpep and tpep["layer.moe.sp_all_gather"].calls == 36


@pytest.fixture
def tensor_metadata(monkeypatch):
    """vLLM's TensorMetadata namedtuple (vllm/distributed/parallel_state.py), pickled under its module's
    name: stand-in vllm modules in sys.modules for the test (monkeypatch restores them)."""
    module = types.ModuleType("vllm.distributed.parallel_state")
    for name, mod in (("vllm", types.ModuleType("vllm")), ("vllm.distributed", types.ModuleType("vllm.distributed")),
                      (module.__name__, module)):
        monkeypatch.setitem(sys.modules, name, mod)
    meta = namedtuple("TensorMetadata", ["device", "dtype", "size"])
    meta.__module__ = module.__name__
    module.TensorMetadata = meta
    return meta


def test_metadata_pickle_size_matches_pickle(tensor_metadata):
    # send_object pickles [(key, TensorMetadata("cuda", dtype, torch.Size([T, H]))), ...]
    torch = pytest.importorskip("torch")
    meta = tensor_metadata
    for keys in (("hidden_states",), ("hidden_states", "residual"), ("hidden_states", "per_layer_inputs")):
        for tokens in (1, 255, 256, 8192, 70000):
            for dtype in ("bfloat16", "float16"):
                # Gemma 4's per-layer inputs are [tokens, layers, per-layer width]: a 3-dimension Size
                shapes = {"hidden_states": (tokens, 2880), "residual": (tokens, 2880),
                          "per_layer_inputs": (tokens, 30, 256)}
                real = pickle.dumps([(k, meta("cuda", getattr(torch, dtype), torch.Size(shapes[k]))) for k in keys],
                                    protocol=4)
                ours = metadata_pickle_bytes(tuple((k, shapes[k]) for k in keys), dtype)
                assert ours == len(real), (keys, tokens, dtype)


def test_trace_json_carries_engine_and_warnings(cli):
    result = cli("trace", str(CONFIGS / "nemotron_h.json"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("model", "mode", "tp", "pp", "batch", "ops", "totals", "steps"):  # the schema so far stays
        assert key in data
    assert data["engine"] == "vllm-v1" and data["cuda_graphs"] is True
    # the corpus config names no `architectures` (transformers' config class writes none): said, not guessed
    assert data["warnings"] == ["the config names no `architectures`: which engine generation can serve it is not checked"]
    assert data["family"] == "nemotron_h" and data["served_by"] is None


def test_unmodelled_model_exits_2_with_one_line(cli, tmp_path):
    out = tmp_path / "t.csv"
    result = cli("trace", str(CONFIGS / "zamba2.json"), "--csv", out)
    assert result.exit_code == 2
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "model_type 'zamba2' cannot be traced" in lines[0] and not out.exists()


def _hub_cache(root: Path, repo: str, config: dict) -> None:
    """The layout huggingface_hub's cache keeps: models--Org--Name/{refs/main, snapshots/<rev>/config.json}."""
    folder = root / ("models--" + repo.replace("/", "--"))
    rev = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    (folder / "snapshots" / rev).mkdir(parents=True)
    (folder / "snapshots" / rev / "config.json").write_text(json.dumps(config))


def test_hub_id_reads_config_from_the_cache_offline(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import subprocess

    _hub_cache(tmp_path / "hub", "Org/Tiny-Llama", {**BASE, "model_type": "llama", "torch_dtype": "bfloat16"})
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "commbench", "trace", "Org/Tiny-Llama", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["model"] == "Org/Tiny-Llama"
    ops = {op["site"]: op for op in data["ops"] if op["phase"] == "decode"}
    assert ops["layer.attn.o_proj"]["msg_bytes"] == 1 * 256 * BF16 and ops["layer.attn.o_proj"]["calls"] == 4
    missing = subprocess.run([sys.executable, "-m", "commbench", "trace", "Org/Not-Cached"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2
    assert re.fullmatch(r"commbench: error: cannot fetch config.json of hub model 'Org/Not-Cached'.*\n", missing.stderr)


# ---- issue 20: config shapes, extra collectives and EP x TP, each derived from vLLM's code -------------


def test_hunyuan_per_layer_lists():
    # vllm 0.11.0 hunyuan_v1.py HunYuanSparseMoeBlock.__init__: moe_topk, moe_intermediate_size and
    # num_shared_expert may be lists indexed by layer_id; head_dim from attention_head_dim
    # (HunYuanAttention). forward: shared_mlp and experts both reduce_results=False, summed, then ONE
    # tensor_model_parallel_all_reduce: per layer o_proj + that one = 2 all-reduces of [8, 2048] bf16.
    card = load_model_card(str(CONFIGS / "hunyuan_moe.json"))
    assert (card.experts_per_token, card.moe_intermediate_size, card.head_dim) == (4, 1024, 64)
    assert card.is_moe and card.num_moe_layers == 6 and card.warnings == ()
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].calls == 6 and ops["layer.moe"].calls == 6 and all_reduces(ops) == 2 * 6 + 1
    assert ops["layer.moe"].msg_bytes == 8 * 2048 * BF16
    assert ops["lm_head"].msg_bytes == 8 * 50048 * BF16  # vocab 50000 padded to a multiple of 64


def test_per_layer_lists_that_vary_or_do_not_fit():
    raw = json.loads((CONFIGS / "hunyuan_moe.json").read_text())
    varying = card_from_config({**raw, "moe_topk": [2, 2, 4, 4, 4, 4]}, "x")
    assert varying.experts_per_token == 4
    assert any("moe_topk varies per layer (2..4)" in w for w in varying.warnings)
    # a dense model's per-layer MLP widths are kept per layer (HunYuanDecoderLayer: intermediate_size[layer_id])
    dense = {k: v for k, v in raw.items() if k not in ("num_experts", "moe_topk", "moe_intermediate_size")}
    widths = [1024, 2048, 2048, 4096, 4096, 4096]
    card = card_from_config({**dense, "intermediate_size": widths}, "x")
    assert card.layer_mlp_width == tuple(widths) and card.warnings == ()
    with pytest.raises(CommbenchError, match=r"moe_topk must be one whole number or a list of num_hidden_layers = 6"):
        card_from_config({**raw, "moe_topk": [4] * 5}, "x")


def test_qwen3_next_layer_pattern_from_the_interval():
    # transformers Qwen3NextConfig (vLLM 0.11.0's vllm/transformers_utils/configs/qwen3_next.py with 4):
    # without layer_types, layer i is linear_attention unless (i + 1) % full_attention_interval == 0.
    # 8 layers, interval 4: layers 3 and 7 attention, 6 Gated DeltaNet; every layer MoE.
    card = load_model_card(str(CONFIGS / "qwen3_next_interval.json"))
    assert [i for i in range(8) if "attention" in card.blocks_of(i)] == [3, 7]
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].calls == 2 and ops["layer.linear_attn.out_proj"].calls == 6
    assert ops["layer.moe"].calls == 8 and all_reduces(ops) == 2 + 6 + 8 + 1
    raw = json.loads((CONFIGS / "qwen3_next_interval.json").read_text())
    default = card_from_config({k: v for k, v in raw.items() if k != "full_attention_interval"}, "x")
    assert default.layer_blocks == card.layer_blocks  # the config class's default interval is 4
    every_other = card_from_config({**raw, "full_attention_interval": 2}, "x")
    assert [i for i in range(8) if "attention" in every_other.blocks_of(i)] == [1, 3, 5, 7]


def test_step3_shared_expert_reduces_beside_the_routed_experts():
    # step3_text.py Step3TextDecoderLayer: MoE layers from moe_layers_enum "2,3,4,5,6"; in them
    # share_expert (Step3TextMLP, share_expert_dim wide, RowParallelLinear down_proj: reduces) and
    # FusedMoEBlock (its own tensor_model_parallel_all_reduce): two all-reduces; other layers one
    # MLP (intermediate_size wide). moe_top_k / moe_num_experts name the routing; attention num_kv_heads=1.
    card = load_model_card(str(CONFIGS / "step3_text.json"))
    assert card.blocks_of(2) == ("attention", "mlp", "moe") and card.blocks_of(7) == ("attention", "mlp")
    assert card.layer_mlp_width == (4096, 4096, 768, 768, 768, 768, 768, 4096)
    assert (card.num_experts, card.experts_per_token, card.num_key_value_heads) == (16, 2, 1)
    ops, _ = decode_ops(card)
    assert ops["layer.attn.o_proj"].calls == 8 and ops["layer.mlp.down_proj"].calls == 3 + 5
    assert ops["layer.moe"].calls == 5 and all_reduces(ops) == 8 + 8 + 5 + 1
    assert ops["layer.moe"].msg_bytes == ops["layer.mlp.down_proj"].msg_bytes == 8 * 1536 * BF16
    # without moe_layers_enum every layer but the first is MoE (step3_text.py: range(1, num_hidden_layers))
    raw = json.loads((CONFIGS / "step3_text.json").read_text())
    raw["text_config"] = {k: v for k, v in raw["text_config"].items() if k != "moe_layers_enum"}
    assert card_from_config(raw, "x").moe_layer_mask == (False,) + (True,) * 7
    # PP: Step3TextModel.forward sends IntermediateTensors hidden_states and residual
    pp, _ = decode_ops(card, mode="pp")
    assert {op.site for op in pp.values() if op.group == "pp"} == {"stage0->stage1.hidden_states",
                                                                  "stage0->stage1.residual"}


def test_falcon_h1_parallel_hybrid_three_all_reduces():
    # falcon_h1.py FalconH1ParallelHybrid.forward: attention (o_proj) and the Mamba-2 mixer
    # (out_proj) on the same input, each RowParallelLinear reducing, then the MLP (down_proj):
    # 3 all-reduces per layer. MambaMixer2(use_rms_norm=mamba_rms_norm): false -> Mixer2RMSNormGated
    # returns before its n_groups == 1 all-reduce.
    ops, _ = decode_ops("falcon_h1")
    assert ops["layer.attn.o_proj"].calls == ops["layer.mamba.out_proj"].calls == ops["layer.mlp.down_proj"].calls == 6
    assert "layer.mamba.norm" not in ops and all_reduces(ops) == 3 * 6 + 1
    raw = json.loads((CONFIGS / "falcon_h1.json").read_text())
    normed, _ = decode_ops(card_from_config({**raw, "mamba_rms_norm": True}, "x"))
    # n_groups 1 and tp 2: the per-token sum of squares, [8, 1] float32, once per mixer
    assert normed["layer.mamba.norm"].calls == 6 and normed["layer.mamba.norm"].msg_bytes == 8 * 1 * 4
    # transformers' FalconH1Config leaves the norm out by default (mamba_rms_norm=False)
    unnamed, _ = decode_ops(card_from_config({k: v for k, v in raw.items() if k != "mamba_rms_norm"}, "x"))
    assert "layer.mamba.norm" not in unnamed
    # FalconH1Model.forward: IntermediateTensors({"hidden_states"}) only, [4, 1024] per micro-batch
    pp, _ = decode_ops("falcon_h1", mode="pp")
    sends = [op for op in pp.values() if op.group == "pp"]
    assert [op.site for op in sends] == ["stage0->stage1.hidden_states"] and sends[0].msg_bytes == 4 * 1024 * BF16
    assert pp["stage0->stage1.metadata"].msg_bytes == 96 + 8 + 24 + len("hidden_states") + 2 + 3


@pytest.mark.parametrize("tp, k_heads_gathered", [(2, 4), (8, 8)])
def test_olmo3_q_and_k_all_gathered_for_their_norm(tp, k_heads_gathered):
    # vllm 0.11.0 olmo2.py Olmo2Attention._apply_qk_norm (Olmo3ForCausalLM -> olmo2.py): tp > 1 ->
    # tensor_model_parallel_all_gather of q ([8, 16 x 128 / tp] per rank) and of k ([8, kv heads per
    # rank x 128]) before the RMSNorms over all heads. 4 KV heads: tp 2 holds 2 each (gathered 4);
    # tp 8 replicates one per rank (gathered 8).
    ops, _ = decode_ops("olmo3", tp=tp)
    q, k = ops["layer.attn.q_all_gather"], ops["layer.attn.k_all_gather"]
    assert q.collective == k.collective == "all_gather" and q.calls == k.calls == 8
    assert q.msg_bytes == 8 * 16 * 128 * BF16 and k.msg_bytes == 8 * k_heads_gathered * 128 * BF16
    assert all_reduces(ops) == 2 * 8 + 1
    # Olmo2Model.forward: IntermediateTensors({"hidden_states"}) only
    pp, _ = decode_ops("olmo3", mode="pp")
    assert [op.site for op in pp.values() if op.group == "pp"] == ["stage0->stage1.hidden_states"]


def test_olmoe_q_k_gathers_and_two_tensor_boundary():
    # olmoe.py OlmoeAttention._apply_qk_norm: the same q and k all-gathers (16 heads x 64 = 1024 each);
    # the MoE reduces once; OlmoeModel.forward sends hidden_states and residual.
    ops, _ = decode_ops("olmoe")
    assert ops["layer.attn.q_all_gather"].msg_bytes == ops["layer.attn.k_all_gather"].msg_bytes == 8 * 1024 * BF16
    assert ops["layer.moe"].calls == 6 and all_reduces(ops) == 2 * 6 + 1
    pp, _ = decode_ops("olmoe", mode="pp")
    assert {op.site for op in pp.values() if op.group == "pp"} == {"stage0->stage1.hidden_states",
                                                                  "stage0->stage1.residual"}


def test_internlm2_fused_qkv_all_gather():
    # internlm2.py InternLM2Attention.split_qkv: tp > 1 -> tensor_model_parallel_all_gather(qkv) of each
    # rank's [8, (16 / 2 + 2 x 8 / 2) x 128]: S = 8 x (16 + 2 x 8) x 128 x 2 B, once per layer.
    ops, _ = decode_ops("internlm2")
    assert ops["layer.attn.qkv_all_gather"].calls == 6
    assert ops["layer.attn.qkv_all_gather"].msg_bytes == 8 * (16 + 2 * 8) * 128 * BF16
    assert all_reduces(ops) == 2 * 6 + 1


@pytest.mark.parametrize("engine", ["vllm-v1", "vllm-v2"])
def test_sequence_parallel_moe_gpt_oss_ep_tp(engine):
    # vllm 0.11.0 vllm/config/parallel.py ParallelConfig.use_sequence_parallel_moe: allgather_reducescatter,
    # expert parallel, tp 2 > 1, dp 2 > 1 -> gpt_oss.py MLPBlock.forward (the current release's alike):
    # sequence_parallel_chunk: each TP rank keeps ceil(64 / 2) = 32 of its replica's 64 tokens;
    # FusedMoE.forward_impl -> AgRsAll2AllManager.dispatch/combine over get_ep_group() (all 4 ranks);
    # no MoE all-reduce (`not self.is_sequence_parallel`); tensor_model_parallel_all_gather(x, 0) after.
    ops, trace = decode_ops("gpt-oss-120b", mode="ep", batch=128, tp=2, engine=RunnerOptions(engine))
    hidden, experts, layers, chunk = 2880, 128, 36, 32
    assert ops["layer.moe.dispatch"].peers == "[0,1,2,3]" and ops["layer.moe.dispatch"].group_size == 4
    assert ops["layer.moe.dispatch"].msg_bytes == 4 * chunk * hidden * BF16
    assert ops["layer.moe.dispatch_router_logits"].msg_bytes == 4 * chunk * experts * BF16  # nn.Linear gate: bf16
    assert ops["layer.moe.combine"].msg_bytes == 4 * chunk * hidden * BF16
    gather = ops["layer.moe.sp_all_gather"]
    assert gather.peers == "[0,1] [2,3]" and gather.msg_bytes == 2 * chunk * hidden * BF16 and gather.calls == layers
    assert "layer.moe" not in ops
    if engine == "vllm-v1":
        # 36 o_proj + the embedding + DPMetadata's int32 [dp] token-count all-reduce
        assert all_reduces(ops) == layers + 2 == 38
        per_layer = 4 * chunk * hidden * BF16 * 2 + 4 * chunk * experts * BF16 + 2 * chunk * hidden * BF16
        o_proj = 64 * hidden * BF16
        logits = 64 * 201088 * BF16  # 201088 / 2 per rank, gathered
        total = layers * (per_layer + o_proj) + o_proj + logits + 2 * 4
        assert sum(op.calls * op.msg_bytes for op in ops.values()) == total == 106_913_800


def test_sequence_parallel_chunk_pads_an_odd_token_count():
    # utils.py sequence_parallel_chunk_impl: 63 tokens over tp 2 -> padded to 64, 32 per rank (eager: no graph padding)
    ops, _ = decode_ops("gpt-oss-120b", mode="ep", batch=126, tp=2, engine=RunnerOptions(cuda_graphs=False))
    assert ops["layer.attn.o_proj"].msg_bytes == 63 * 2880 * BF16
    assert ops["layer.moe.dispatch"].msg_bytes == 4 * 32 * 2880 * BF16


MIXTRAL_LIKE = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 512,
                "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 1024,
                "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_ep_tp_without_sequence_parallel_family():
    # mixtral.py MixtralMoE never passes is_sequence_parallel: FusedMoE dispatches over get_dp_group()
    # (the same TP rank of each replica: [0,2] and [1,3]) with the replica's whole 64 tokens, then
    # maybe_all_reduce_tensor_model_parallel over TP as without EP.
    ops, _ = decode_ops(card_from_config(MIXTRAL_LIKE, "mixtral-like"), mode="ep", batch=128, tp=2)
    assert ops["layer.moe.dispatch"].peers == "[0,2] [1,3]" and ops["layer.moe.dispatch"].msg_bytes == 2 * 64 * 512 * BF16
    assert ops["layer.moe"].calls == 4 and "layer.moe.sp_all_gather" not in ops


def test_router_dtype_sets_the_router_logits_bytes():
    # glm4_moe.py Glm4MoE.forward: router_logits = self.gate(hidden_states.to(torch.float32)): float32
    # logits all-gathered beside the bf16 hidden states: S = 2 x 64 x 8 experts x 4 B.
    glm = card_from_config({**MIXTRAL_LIKE, "architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe"}, "glm")
    ops, _ = decode_ops(glm, mode="ep", batch=128)
    assert ops["layer.moe.dispatch_router_logits"].dtype == "float32"
    assert ops["layer.moe.dispatch_router_logits"].msg_bytes == 2 * 64 * 8 * 4
    assert ops["layer.moe.dispatch"].msg_bytes == 2 * 64 * 512 * BF16
    # bailing_moe.py BailingMoE: router_dtype "fp32" -> float32, anything else bfloat16
    bailing = dict(MIXTRAL_LIKE, model_type="bailing_moe", router_dtype="fp32")
    assert card_from_config(bailing, "b").router_dtype == "float32"
    with pytest.raises(CommbenchError, match=r"router_dtype = 'fp8'; valid: float32, fp32"):
        card_from_config({**bailing, "router_dtype": "fp8"}, "b")


@pytest.mark.parametrize("cfg, mask", [
    # ernie45_moe.py: (i + 1) % moe_layer_interval == 0 and moe_layer_start_index <= i <= moe_layer_end_index
    ({"moe_layer_start_index": 1, "moe_layer_end_index": 2, "moe_layer_interval": 1, "moe_k": 2}, (0, 1, 1, 0)),
    # ernie45_vl_moe.py: [text, vision] start/end lists -> the smallest start, the largest end
    ({"moe_layer_start_index": [2, 1], "moe_layer_end_index": [2, 3], "moe_k": 2}, (0, 1, 1, 1)),
    # deepseek_v2.py: i >= first_k_dense_replace and i % moe_layer_freq == 0
    ({"first_k_dense_replace": 1, "moe_layer_freq": 2, "moe_top_k": 2}, (0, 0, 1, 0)),
    # afmoe.py / lfm2_moe.py: i >= num_dense_layers; moondream3.py moe_experts_per_token
    ({"num_dense_layers": 3, "moe_experts_per_token": 2}, (0, 0, 0, 1)),
])
def test_moe_layer_field_aliases(cfg, mask):
    base = {k: v for k, v in MIXTRAL_LIKE.items() if k not in ("num_experts_per_tok", "architectures", "model_type")}
    card = card_from_config({**base, **cfg}, "x")
    assert card.moe_layer_mask == tuple(bool(m) for m in mask) and card.experts_per_token == 2


@pytest.mark.mpi
@pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")
def test_replay_ep_tp_sequence_parallel_on_four_mpi_ranks(tmp_path):
    # a tiny Qwen3-MoE (qwen3_moe.py reads use_sequence_parallel_moe): 2 replicas x tp 2 on 4 MPI ranks;
    # decode batch 6 -> 3 per replica, padded to the capture size 4, 2 per rank after the chunk
    pytest.importorskip("mpi4py")
    import subprocess

    tiny = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
            "vocab_size": 512, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(tiny))
    proc = subprocess.run([sys.executable, "-m", "commbench", "trace", str(tmp_path), "--mode", "ep", "--tp", "2",
                           "--batch", "6", "--isl", "32", "--osl", "4", "--replay", "--backend", "mpi", "--iters", "2",
                           "--phase", "decode", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["site"]: r for r in json.loads(proc.stdout)["rows"] if r["phase"] == "decode"}
    assert rows["layer.moe.dispatch"]["group_size"] == 4 and rows["layer.moe.dispatch"]["msg_bytes"] == 4 * 2 * 64 * BF16
    assert rows["layer.moe.sp_all_gather"]["msg_bytes"] == 2 * 2 * 64 * BF16 and "layer.moe" not in rows
    assert all(r["measured_us_per_step"] > 0 for r in rows.values())


def test_current_release_qwen3_next_keeps_the_residual_stream_chunked():
    # current vLLM qwen3_next.py: _should_use_sequence_parallel (use_sequence_parallel_moe, pp 1, every layer
    # MoE) -> Qwen3NextModel.forward chunks after the embedding; each Qwen3NextDecoderLayer all-gathers its
    # normed chunk ([4, 1024] per rank: 8 tokens of a replica over tp 2), runs attention with
    # reduce_results=False, reduce-scatters it, and the MoE block needs no chunk or all-gather
    # (already_sequence_parallel); the normed output is all-gathered once at the end.
    card = load_model_card(str(CONFIGS / "qwen3_next_interval.json"))
    v2, trace = decode_ops(card, mode="ep", batch=16, tp=2, engine=RunnerOptions("vllm-v2"))
    chunk, hidden = 4, 1024
    assert v2["layer.sp_all_gather"].calls == v2["layer.attn.sp_reduce_scatter"].calls == 8
    assert v2["layer.sp_all_gather"].msg_bytes == v2["layer.attn.sp_reduce_scatter"].msg_bytes == 2 * chunk * hidden * BF16
    assert v2["layer.attn.sp_reduce_scatter"].collective == "reduce_scatter"
    assert v2["sp_exit"].calls == 1 and v2["sp_exit"].msg_bytes == 2 * chunk * hidden * BF16
    assert v2["layer.moe.dispatch"].msg_bytes == 4 * chunk * hidden * BF16
    assert not {"layer.attn.o_proj", "layer.linear_attn.out_proj", "layer.moe", "layer.moe.sp_all_gather"} & set(v2)
    assert all_reduces(v2) == 1 + 1  # the embedding and the DP batch sync
    # 0.11.0's qwen3_next.py: attention still all-reduces; the MoE block chunks and all-gathers itself
    v1, _ = decode_ops(card, mode="ep", batch=16, tp=2, engine=RunnerOptions("vllm-v1"))
    assert v1["layer.attn.o_proj"].calls + v1["layer.linear_attn.out_proj"].calls == 8
    assert v1["layer.moe.sp_all_gather"].calls == 8 and "layer.sp_all_gather" not in v1
    # a dense layer anywhere turns it off (_should_use_sequence_parallel: no mlp_only_layers)
    raw = json.loads((CONFIGS / "qwen3_next_interval.json").read_text())
    dense0, _ = decode_ops(card_from_config({**raw, "mlp_only_layers": [0]}, "x"), mode="ep", batch=16, tp=2,
                           engine=RunnerOptions("vllm-v2"))
    assert "layer.sp_all_gather" not in dense0 and dense0["layer.moe.sp_all_gather"].calls == 7


DEEPSEEK_LIKE = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 512,
                 "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 1024,
                 "moe_intermediate_size": 128, "n_routed_experts": 16, "num_experts_per_tok": 2,
                 "first_k_dense_replace": 1, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def test_current_release_deepseek_chunked_residual_per_moe_layer():
    # current vLLM deepseek_v2.py DeepseekV2DecoderLayer: use_sequence_parallel_moe and pp 1 and an MoE layer ->
    # attention reduce_results=False then tensor_model_parallel_reduce_scatter; the first MoE layer's input
    # arrives whole (after the dense layer 0: o_proj and down_proj all-reduce as usual), the next ones
    # all-gather it; DeepseekV2Model.forward all-gathers cat([hidden_states, residual]) ([4, 2 x 512]) at the end.
    from commbench.traffic.trace import engine_calls

    ops, trace = decode_ops(card_from_config(DEEPSEEK_LIKE, "ds"), mode="ep", batch=16, tp=2,
                            engine=RunnerOptions("vllm-v2"))
    order = [c.site for c in engine_calls(trace.plan, trace.steps["decode"], trace.engine) if c.replica == 0]
    moe = ["layer.moe.dispatch", "layer.moe.dispatch_router_logits", "layer.moe.combine"]
    assert order == ["dp.batch_sync", "embed", "layer.attn.o_proj", "layer.mlp.down_proj",
                     "layer.attn.sp_reduce_scatter", *moe,
                     *(["layer.sp_all_gather", "layer.attn.sp_reduce_scatter", *moe] * 2), "sp_exit", "lm_head"]
    assert ops["sp_exit"].msg_bytes == 2 * 4 * (2 * 512) * BF16
    # MoE every other layer (moe_layer_freq 2, 6 layers: MoE 2 and 4): a layer without the chunked stream
    # after one with it all-gathers hidden_states and residual first; the forward then ends whole
    alternate, _ = decode_ops(card_from_config({**DEEPSEEK_LIKE, "num_hidden_layers": 6, "moe_layer_freq": 2}, "ds"),
                              mode="ep", batch=16, tp=2, engine=RunnerOptions("vllm-v2"))
    assert alternate["layer.sp_rejoin"].calls == 2 and alternate["layer.sp_rejoin"].msg_bytes == 2 * 4 * 1024 * BF16
    assert "sp_exit" not in alternate and "layer.sp_all_gather" not in alternate


def test_lfm2_short_convolution_layers():
    # lfm2.py: layer_types "conv" -> ShortConv (layers/mamba/short_conv.py: in_proj column-parallel, out_proj
    # RowParallelLinear: one all-reduce [8, 1024]), "full_attention" -> o_proj; every layer's Lfm2MLP reduces.
    # Its width: block_ff_dim 6144 auto-adjusted: int(2 x 6144 / 3) = 4096, x 1.0, a multiple of 256 -> 4096.
    card = load_model_card(str(CONFIGS / "lfm2.json"))
    assert card.layer_mlp_width == (4096,) * 6 and card.blocks_of(0) == ("short_conv", "mlp")
    ops, _ = decode_ops(card)
    assert ops["layer.short_conv.out_proj"].calls == 4 and ops["layer.attn.o_proj"].calls == 2
    assert ops["layer.short_conv.out_proj"].msg_bytes == 8 * 1024 * BF16
    assert all_reduces(ops) == 4 + 2 + 6 + 1


def test_molmo_q_k_gathers_only_with_attention_layer_norm():
    # molmo.py MolmoAttention: q_norm / k_norm exist only with config.attention_layer_norm; then
    # _apply_qk_norm all-gathers q ([8, 8 x 32 / 2] per rank) and k (4 KV heads: [8, 2 x 32] per rank)
    base = {"architectures": ["MolmoForCausalLM"], "model_type": "molmo", "hidden_size": 256, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1024}
    plain, _ = decode_ops(card_from_config(base, "m"))
    assert "layer.attn.q_all_gather" not in plain
    normed, _ = decode_ops(card_from_config({**base, "attention_layer_norm": True}, "m"))
    assert normed["layer.attn.q_all_gather"].calls == 4 and normed["layer.attn.q_all_gather"].msg_bytes == 8 * 256 * BF16
    assert normed["layer.attn.k_all_gather"].msg_bytes == 8 * 4 * 32 * BF16


def test_olmo_hybrid_gathers_q_k_in_attention_layers_only():
    # current vLLM olmo_hybrid.py: OlmoHybridAttention._apply_qk_norm gathers q and k; its Gated DeltaNet
    # layers reduce o_proj only; OlmoHybridModel.forward sends hidden_states alone
    cfg = {"architectures": ["OlmoHybridForCausalLM"], "model_type": "olmo_hybrid", "hidden_size": 256,
           "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 1024,
           "vocab_size": 1024, "layer_types": ["linear_attention"] * 3 + ["full_attention"]}
    card = card_from_config(cfg, "h")
    assert card.blocks_of(0) == ("gated_deltanet", "mlp") and card.blocks_of(3) == ("qk_all_gather", "attention", "mlp")
    ops, _ = decode_ops(card, engine=RunnerOptions("vllm-v2"))
    assert ops["layer.attn.q_all_gather"].calls == 1 and ops["layer.linear_attn.out_proj"].calls == 3
    assert card.boundary_tensors == ("hidden_states",)


def test_current_release_ep_dispatch_payload_is_said():
    # current vLLM fused_moe/prepare_finalize/naive_dp_ep.py: a monolithic kernel gathers the router logits,
    # a modular one top-k weights and ids: which one runs depends on the GPU, so the trace says which it shows
    _, v2 = decode_ops("gpt-oss-120b", mode="ep", batch=16, engine=RunnerOptions("vllm-v2"))
    assert any("router logits (monolithic MoE kernels)" in w for w in v2.warnings)
    _, v1 = decode_ops("gpt-oss-120b", mode="ep", batch=16, engine=RunnerOptions("vllm-v1"))
    assert not any("monolithic" in w for w in v1.warnings)


def test_qwen3_next_interval_other_than_four_is_said():
    # vLLM 0.11.0 vllm/transformers_utils/configs/qwen3_next.py: layer_types default "(i + 1) % 4" whatever
    # full_attention_interval says; the current release reads it (transformers Qwen3NextConfig)
    raw = json.loads((CONFIGS / "qwen3_next_interval.json").read_text())
    assert load_model_card(str(CONFIGS / "qwen3_next_interval.json")).warnings == ()
    card = card_from_config({**raw, "full_attention_interval": 2}, "x")
    assert any("full_attention_interval = 2" in w and "every 4 layers" in w for w in card.warnings)


def test_ernie45_vl_text_experts_from_the_modality_pairs():
    # ernie45_vl_moe.py Ernie4_5_VLMoeMoE: text tokens go through text_experts (moe_num_experts[0] experts of
    # moe_intermediate_size[0]), summed with the shared experts, one all-reduce; MoE layers from the smallest
    # moe_layer_start_index to the largest moe_layer_end_index (Ernie4_5_VLMoeDecoderLayer)
    cfg = {"architectures": ["Ernie4_5_VLMoeForConditionalGeneration"], "model_type": "ernie4_5_moe_vl",
           "hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
           "intermediate_size": 2048, "vocab_size": 10240, "moe_num_experts": [16, 16], "moe_k": 4,
           "moe_intermediate_size": [256, 128], "moe_layer_start_index": [1, 2], "moe_layer_end_index": [4, 5]}
    card = card_from_config(cfg, "ernie-vl")
    assert (card.num_experts, card.moe_intermediate_size, card.experts_per_token) == (16, 256, 4)
    assert card.moe_layer_mask == (False, True, True, True, True, True)
    ops, _ = decode_ops(card)
    assert ops["layer.moe"].calls == 5 and ops["layer.mlp.down_proj"].calls == 1 and all_reduces(ops) == 6 + 6 + 1


def test_gemma3n_laurel_altup_and_per_layer_inputs():
    # gemma3n.py Gemma3nDecoderLayer: LAuReL linear_right (RowParallelLinear), o_proj and down_proj: 3 all-reduces
    # per layer of [8, 2048]. Gemma3nSelfDecoder: per_layer_model_projection (gather_output=True) of
    # [8, 6 x 256] and altup_num_inputs - 1 = 3 altup_projections gathered ([8, 2048] each); Gemma3nTextModel
    # altup_unembed gathers 3 more; gemma3n_mm.py get_input_embeddings embeds the per-layer inputs each step
    # (embed_tokens_per_layer, vocab-parallel: all-reduce of [8, 6 x 256]).
    card = load_model_card(str(CONFIGS / "gemma3n.json"))
    assert card.blocks_of(0) == ("laurel", "attention", "mlp") and card.layer_mlp_width == (8192,) * 6
    ops, _ = decode_ops(card)
    assert ops["layer.laurel.linear_right"].calls == ops["layer.attn.o_proj"].calls == ops["layer.mlp.down_proj"].calls == 6
    assert ops["altup_projections"].calls == ops["altup_unembed_projections"].calls == 3
    assert ops["altup_projections"].msg_bytes == 8 * 2048 * BF16
    assert ops["embed_per_layer"].msg_bytes == ops["per_layer_projection"].msg_bytes == 8 * 6 * 256 * BF16
    assert all_reduces(ops) == 3 * 6 + 1 + 1
    # the text-only Gemma3nForCausalLM gets no per-layer embedding in its forward
    raw = json.loads((CONFIGS / "gemma3n.json").read_text())
    text_only, _ = decode_ops(card_from_config({**raw, "architectures": ["Gemma3nForCausalLM"]}, "g"))
    assert "embed_per_layer" not in text_only and text_only["per_layer_projection"].calls == 1
    # no SupportsPP in vLLM's Gemma 3n classes: refused in one line
    with pytest.raises(CommbenchError, match=r"pp=2: gemma3n cannot be pipelined: vLLM's Gemma3nForCausalLM"):
        ParallelPlan.for_mode(card, "pp")


def test_router_dtype_by_engine_generation():
    # ernie45_moe.py: 0.11.0's gate is a ReplicatedLinear in the activation dtype; the current release's
    # GateLinear(out_dtype=torch.float32): the dispatched router logits are [64, 16] bf16, then float32
    cfg = {"architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe", "hidden_size": 512,
           "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 1024,
           "moe_num_experts": 16, "moe_k": 2, "moe_intermediate_size": 128, "vocab_size": 10240}
    card = card_from_config(cfg, "ernie")
    v1, _ = decode_ops(card, mode="ep", batch=128, engine=RunnerOptions("vllm-v1"))
    v2, _ = decode_ops(card, mode="ep", batch=128, engine=RunnerOptions("vllm-v2"))
    assert v1["layer.moe.dispatch_router_logits"].dtype == "bfloat16"
    assert v1["layer.moe.dispatch_router_logits"].msg_bytes == 2 * 64 * 16 * BF16
    assert v2["layer.moe.dispatch_router_logits"].dtype == "float32"
    assert v2["layer.moe.dispatch_router_logits"].msg_bytes == 2 * 64 * 16 * 4


@pytest.mark.parametrize("arch, why", [("IQuestLoopCoderForCausalLM", "loop_num times"),
                                       ("Cohere2MoeForCausalLM", "cohere2_moe.py")])
def test_unmodelled_architecture_fails_naming_it(arch, why):
    # a model whose vLLM class loops its layers (iquest_loopcoder.py) or runs attention beside the MoE with
    # its own reductions (cohere2_moe.py) is refused in one line naming the architecture, not traced as a Llama
    with pytest.raises(CommbenchError, match=rf"architectures '{arch}' cannot be traced: .*{re.escape(why)}"):
        card_from_config({**BASE, "architectures": [arch], "model_type": "x"}, "x")


def test_dbrx_nested_attention_and_ffn_configs():
    # dbrx.py: d_model / n_heads / n_layers at the top, attn_config.kv_n_heads, ffn_config.ffn_hidden_size,
    # moe_num_experts, moe_top_k below; every layer's DbrxExperts (FusedMoE) reduces once; the forward sends
    # IntermediateTensors({"hidden_states"}) only
    cfg = {"architectures": ["DbrxForCausalLM"], "model_type": "dbrx", "d_model": 768, "n_heads": 12, "n_layers": 4,
           "vocab_size": 32000, "attn_config": {"kv_n_heads": 4, "clip_qkv": 8},
           "ffn_config": {"ffn_hidden_size": 1536, "moe_num_experts": 8, "moe_top_k": 2}}
    card = card_from_config(cfg, "dbrx")
    assert (card.num_key_value_heads, card.num_experts, card.experts_per_token, card.moe_intermediate_size) == (4, 8, 2, 1536)
    assert card.num_moe_layers == 4 and card.boundary_tensors == ("hidden_states",)
    ops, _ = decode_ops(card)
    assert ops["layer.moe"].calls == 4 and all_reduces(ops) == 2 * 4 + 1


MINIMAX_TEXT_01_LIKE = {"architectures": ["MiniMaxText01ForCausalLM"], "model_type": "minimax_text_01",
                        "hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
                        "head_dim": 64, "intermediate_size": 2048, "num_local_experts": 8, "num_experts_per_tok": 2,
                        "attn_type_list": [0, 0, 0, 1, 0, 0, 0, 1], "shared_intermediate_size": 0, "vocab_size": 20000}


def test_minimax_text_01_lightning_attention_layers():
    # vllm 0.11.0 minimax_text_01.py: attn_type_list 0 -> MiniMaxText01LinearAttention (layers/mamba/linear_attn.py:
    # MiniMaxText01RMSNormTP all-reduces the per-token variance, [8, 1] float32, then out_proj reduces),
    # 1 -> attention (o_proj); every layer's MiniMaxText01MoE (FusedMoE reduce_results=True) reduces once.
    card = card_from_config(MINIMAX_TEXT_01_LIKE, "mm")
    assert card.blocks_of(0) == ("lightning_attention", "moe") and card.blocks_of(3) == ("attention", "moe")
    ops, _ = decode_ops(card)
    assert ops["layer.lightning_attn.norm"].calls == 6 and ops["layer.lightning_attn.norm"].msg_bytes == 8 * 1 * 4
    assert ops["layer.lightning_attn.out_proj"].calls == 6 and ops["layer.attn.o_proj"].calls == 2
    assert ops["layer.moe"].calls == 8 and all_reduces(ops) == 6 * 2 + 2 + 8 + 1
    # with shared_intermediate_size > 0 a shared MiniMaxText01MLP beside the MoE reduces on its own
    shared, _ = decode_ops(card_from_config({**MINIMAX_TEXT_01_LIKE, "shared_intermediate_size": 512}, "mm"))
    assert shared["layer.mlp.down_proj"].calls == 8
    # the layer returns residual None: IntermediateTensors {"hidden_states": [4, 1024], "residual": None}; the
    # metadata pickle names both: 96 + len("bfloat16") + (24 + 13 + 2 + 3) + (7 + len("residual"))
    pp, _ = decode_ops(card, mode="pp")
    assert [op.site for op in pp.values() if op.group == "pp"] == ["stage0->stage1.hidden_states"]
    assert pp["stage0->stage1.metadata"].msg_bytes == 104 + 42 + 15


def test_metadata_pickle_size_of_a_none_entry(tensor_metadata):
    # send_tensor_dict (_split_tensor_dict) puts a non-tensor value in the metadata as is: ("residual", None)
    torch = pytest.importorskip("torch")
    meta = tensor_metadata
    for tokens in (1, 300, 70000):
        for key in ("residual", "r"):
            real = pickle.dumps([("hidden_states", meta("cuda", torch.bfloat16, torch.Size((tokens, 6144)))),
                                 (key, None)], protocol=4)
            assert metadata_pickle_bytes((("hidden_states", (tokens, 6144)),), "bfloat16", (key,)) == len(real)


def test_plamo2_mamba_layers_by_step():
    # vllm 0.11.0 plamo2.py is_mamba: attention where i % mamba_step == mamba_step // 2 (step 2: the odd
    # layers), Plamo2MambaMixer elsewhere: bcdt_proj RowParallelLinear to time_step_rank + 2 d_state =
    # max(64, 2048 // 16) + 2 x 64 = 256 wide, then out_proj; DenseMLP's down_proj in every layer
    cfg = {"architectures": ["Plamo2ForCausalLM"], "model_type": "plamo2", "hidden_size": 2048, "num_hidden_layers": 6,
           "num_attention_heads": 16, "num_key_value_heads": 4, "hidden_size_per_head": 128, "mamba_step": 2,
           "mamba_d_state": 64, "mamba_num_heads": 32, "mamba_d_conv": 4, "intermediate_size": 8192, "vocab_size": 100000}
    card = card_from_config(cfg, "plamo")
    assert [b[0] for b in card.layer_blocks] == ["mamba", "attention"] * 3
    ops, _ = decode_ops(card)
    assert ops["layer.mamba.x_proj"].calls == 3 and ops["layer.mamba.x_proj"].msg_bytes == 8 * 256 * BF16
    assert ops["layer.mamba.out_proj"].calls == 3 and ops["layer.attn.o_proj"].calls == 3
    assert all_reduces(ops) == 3 * 2 + 3 + 6 + 1


# --- EP x TP through the DeepEP all2all kernels (--all2all all_to_all), current release vs 0.11.0 ---

def _a2a(card, engine, batch=16):
    return decode_ops(card, mode="ep", batch=batch, tp=2, engine=RunnerOptions(engine, all2all="all_to_all"))


def test_current_release_gpt_oss_ep_tp_all2all_kernels():
    # vLLM 0.33.0 vllm/config/parallel.py ParallelConfig.use_sequence_parallel_moe: deepep_* backends, EP,
    # tp 2 > 1, dp 2 > 1 -> true; gpt_oss.py MLPBlock.forward: sequence_parallel_chunk (8 tokens of a replica
    # -> 4 per TP rank), router on the chunk, FusedMoEFactory(is_sequence_parallel) -> DeepEP on
    # get_ep_group()'s all2all manager (fused_moe/all2all_utils.py get_ep_all2all_manager: 4 dispatchers),
    # combine output_is_reduced() (prepare_finalize/deepep_ht.py) and moe_runner.py _maybe_reduce_final_output
    # skipped under SP, then tensor_model_parallel_all_gather(x, 0): [4, 2880] per rank gathered to [8, 2880].
    ops, trace = _a2a("gpt-oss-120b", "vllm-v2")
    chunk, hidden, top_k, ep, layers = 4, 2880, 4, 4, 36
    d = ops["layer.moe.a2a_dispatch"]
    assert d.members == ((0, 1, 2, 3),) and d.group_size == ep and d.calls == layers
    # all_to_all S: every peer's share, each rank sending chunk x top_k tokens' rows over the 4 ranks
    assert d.msg_bytes == ep * chunk * (top_k / ep) * hidden * BF16 == 92_160
    assert ops["layer.moe.a2a_combine"].msg_bytes == 92_160
    # DeepEP's buffer.dispatch(x, topk_idx, topk_weights): int64 ids and float32 weights ride with each token
    assert ops["layer.moe.a2a_dispatch_topk_ids"].dtype == "int64"
    assert ops["layer.moe.a2a_dispatch_topk_ids"].msg_bytes == ep * chunk * (top_k / ep) * top_k * 8 == 512
    assert ops["layer.moe.a2a_dispatch_topk_weights"].msg_bytes == ep * chunk * (top_k / ep) * top_k * 4 == 256
    assert "layer.moe.dispatch_router_logits" not in ops  # the router logits never leave the rank
    gather = ops["layer.moe.sp_all_gather"]
    assert gather.members == ((0, 1), (2, 3)) and gather.msg_bytes == 2 * chunk * hidden * BF16 == 46_080
    assert "layer.moe" not in ops and "layer.moe.shared_experts" not in ops
    # per decode step: embedding + 36 o_proj + the DP batch sync all-reduce; 4 x 36 all_to_all; 36 + lm_head gathers
    assert all_reduces(ops) == 1 + layers + 1 == 38
    assert sum(op.calls for op in ops.values() if op.collective == "all_to_all") == 4 * layers == 144
    assert sum(op.calls for op in ops.values() if op.collective == "all_gather") == layers + 1
    assert any("DeepEP high-throughput" in w and "int64" in w for w in trace.warnings)
    # vLLM 0.11.0 runs the same path (its use_sequence_parallel_moe lists deepep, gpt_oss.py the same)
    v1, _ = _a2a("gpt-oss-120b", "vllm-v1")
    assert {s: (o.msg_bytes, o.calls) for s, o in v1.items() if s != "dp.num_tokens"} == \
        {s: (o.msg_bytes, o.calls) for s, o in ops.items() if s != "dp.batch_sync"}


def test_current_release_deepseek_ep_tp_all2all_kernels_order():
    # vLLM 0.33.0 deepseek_v2.py: DeepseekV2DecoderLayer with use_sequence_parallel_moe (deepep), pp 1, MoE
    # layers 1-3 (first_k_dense_replace 1): attention reduce_results=False + tensor_model_parallel_reduce_scatter,
    # DeepseekV2MoE(already_sequence_parallel): no chunk, no all-gather; its shared_experts DeepseekV2MLP
    # disable_tp (is_sequence_parallel): no reduce; moe_runner.py _maybe_reduce_shared_expert_output skips
    # under SP. DeepEP dispatch over the 4 EP ranks: 4 tokens x top_k 2 x 512 x 2 B in all per rank.
    from commbench.traffic.trace import engine_calls

    card = card_from_config({**DEEPSEEK_LIKE, "n_shared_experts": 1}, "ds")
    ops, trace = _a2a(card, "vllm-v2")
    order = [c.site for c in engine_calls(trace.plan, trace.steps["decode"], trace.engine) if c.replica == 0]
    moe = ["layer.moe.a2a_dispatch", "layer.moe.a2a_dispatch_topk_ids", "layer.moe.a2a_dispatch_topk_weights",
           "layer.moe.a2a_combine"]
    assert order == ["dp.batch_sync", "embed", "layer.attn.o_proj", "layer.mlp.down_proj",
                     "layer.attn.sp_reduce_scatter", *moe,
                     *(["layer.sp_all_gather", "layer.attn.sp_reduce_scatter", *moe] * 2), "sp_exit", "lm_head"]
    chunk, hidden, top_k, ep = 4, 512, 2, 4
    assert ops["layer.moe.a2a_dispatch"].msg_bytes == ep * chunk * (top_k / ep) * hidden * BF16 == 8192
    assert ops["layer.moe.a2a_dispatch_topk_ids"].msg_bytes == ep * chunk * (top_k / ep) * top_k * 8 == 128
    assert ops["layer.moe.a2a_dispatch"].members == ((0, 1, 2, 3),) and ops["layer.moe.a2a_dispatch"].calls == 3
    assert ops["sp_exit"].msg_bytes == 2 * chunk * 2 * hidden * BF16  # cat([hidden_states, residual])
    assert all_reduces(ops) == 4  # batch sync, embedding, layer 0's o_proj and down_proj


def test_replay_ep_tp_all2all_kernels_on_four_gloo_ranks(tmp_path):
    # the same path replayed on the embedded gloo world of dp x tp = 4 ranks: decode batch 6 -> 3 per
    # replica, padded to the capture size 4, 2 per TP rank after sequence_parallel_chunk (qwen3_moe.py)
    import subprocess

    tiny = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
            "vocab_size": 512, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(tiny))
    proc = subprocess.run([sys.executable, "-m", "commbench", "trace", str(tmp_path), "--mode", "ep", "--tp", "2",
                           "--all2all", "all_to_all", "--engine", "vllm-v2", "--batch", "6", "--isl", "32",
                           "--osl", "4", "--replay", "--iters", "2", "--phase", "decode", "--json"],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    rows = {r["site"]: r for r in json.loads(proc.stdout)["rows"] if r["phase"] == "decode"}
    d = rows["layer.moe.a2a_dispatch"]
    assert d["group_size"] == 4 and d["msg_bytes"] == 4 * 2 * (2 / 4) * 64 * BF16 and d["wrong"] == 0
    assert rows["layer.moe.a2a_dispatch_topk_ids"]["type"] == "int64"
    assert rows["layer.moe.a2a_dispatch_topk_ids"]["msg_bytes"] == 4 * 2 * (2 / 4) * 2 * 8
    assert "layer.moe" not in rows and all(r["measured_us_per_step"] > 0 for r in rows.values())
