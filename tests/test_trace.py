"""Trace byte counts, each derived by hand in the test from the published config numbers."""

import json

import pytest

from commbench import CommbenchError
from commbench.traffic.model_card import card_from_config, load_model_card
from commbench.traffic.plan import ParallelPlan, pp_layer_split
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload

BF16 = 2


def ops_of(trace, phase):
    return {op.site: op for op in trace.ops if op.phase == phase}


def test_gpt_oss_120b_tp2_decode_batch128_by_hand():
    # hidden 2880, 36 layers, vocab 201088 (already a multiple of 64), bf16 activations.
    trace = make_trace(ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "tp"), Workload(128, 1024, 1024))
    ops = ops_of(trace, "decode")
    assert set(ops) == {"embed", "layer.attn.o_proj", "layer.moe", "lm_head"}  # MoE: no dense down_proj
    assert ops["layer.attn.o_proj"].msg_bytes == 128 * 2880 * BF16 == 737_280
    assert ops["layer.attn.o_proj"].calls == 36 and ops["layer.moe"].calls == 36 and ops["embed"].calls == 1
    assert sum(o.calls for o in ops.values() if o.collective == "all_reduce") == 73
    # logits all-gather: each rank holds [128, 201088/2]; S is the gathered total.
    assert ops["lm_head"].collective == "all_gather"
    assert ops["lm_head"].msg_bytes == 128 * (201088 // 2) * BF16 * 2 == 51_478_528
    # 200 Gb/s = 25e9 B/s; a 2-rank ring all-reduce moves S * 2(2-1)/2 = S per rank.
    assert ops["layer.moe"].wire_time_s("200gbe") == pytest.approx(737_280 / 25e9)


def test_gpt_oss_120b_tp2_prefill_chunk_by_hand():
    trace = make_trace(ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "tp"), Workload(128, 1024, 1024))
    ops = ops_of(trace, "prefill")
    # token budget 8192 holds 8 whole 1024-token prompts: 8 logit rows.
    assert ops["layer.attn.o_proj"].msg_bytes == 8192 * 2880 * BF16
    assert ops["lm_head"].msg_bytes == 8 * 201088 * BF16


def test_gpt_oss_120b_pp2_by_hand():
    trace = make_trace(ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "pp"), Workload(128, 1024, 1024))
    decode = ops_of(trace, "decode")
    tensors = {"stage0->stage1.hidden_states", "stage0->stage1.residual"}
    assert set(decode) == tensors | {"stage0->stage1.metadata_size", "stage0->stage1.metadata"}
    for op in decode.values():
        assert op.collective == "send_recv" and op.peers == "0->1" and op.calls == 1
    for site in tensors:
        assert decode[site].msg_bytes == 64 * 2880 * BF16  # a micro-batch of 128/2 requests
    # send_object: an int64 byte count, then pickle.dumps([(key, TensorMetadata("cuda", torch.bfloat16,
    # torch.Size([64, 2880]))), ...]): 96 + len("bfloat16") + per tensor 24 + len(key) + 2 (BININT1 64)
    # + 3 (BININT2 2880) = 104 + 42 + 37
    assert decode["stage0->stage1.metadata_size"].msg_bytes == 8
    assert decode["stage0->stage1.metadata"].msg_bytes == 104 + (24 + 13 + 5) + (24 + 8 + 5) == 183
    prefill = ops_of(trace, "prefill")
    assert prefill["stage0->stage1.hidden_states"].msg_bytes == 8192 * 2880 * BF16
    assert trace.plan.layers_per_stage == (18, 18)


def test_llama_tp_has_dense_down_proj_and_pp_split():
    card = load_model_card("llama-3.1-8b-instruct")  # hidden 4096, 32 layers, vocab 128256
    trace = make_trace(ParallelPlan.for_mode(card, "tp"), Workload(1, 1024, 1024))
    dec = ops_of(trace, "decode")
    assert dec["layer.mlp.down_proj"].calls == 32 and "layer.moe" not in dec
    assert dec["layer.attn.o_proj"].msg_bytes == 1 * 4096 * BF16
    assert dec["lm_head"].msg_bytes == 1 * 128256 * BF16
    pre = ops_of(trace, "prefill")  # batch 1: one chunk of the whole 1024-token prompt
    assert pre["embed"].msg_bytes == 1024 * 4096 * BF16
    pp = make_trace(ParallelPlan.for_mode(card, "pp"), Workload(8, 1024, 1024))
    assert ops_of(pp, "decode")["stage0->stage1.residual"].msg_bytes == 4 * 4096 * BF16


def test_qwen3_coder_tp4_and_pp4():
    card = load_model_card("qwen3-coder-30b-a3b")  # hidden 2048, 48 layers, 32 heads, 4 KV heads
    tp = make_trace(ParallelPlan.for_mode(card, "tp", tp=4), Workload(16, 8192, 1024))
    dec = ops_of(tp, "decode")
    assert dec["layer.moe"].calls == 48 and dec["layer.moe"].msg_bytes == 16 * 2048 * BF16
    assert dec["lm_head"].msg_bytes == 16 * (151936 // 4) * BF16 * 4
    pre = ops_of(tp, "prefill")  # a chunk of 8192 tokens covers exactly one 8192-token prompt
    assert pre["lm_head"].msg_bytes == 1 * 151936 * BF16
    pp = make_trace(ParallelPlan.for_mode(card, "pp", pp=4), Workload(16, 8192, 1024))
    sends = [op for op in pp.ops if op.phase == "decode" and op.group == "pp"]
    assert [op.site for op in sends] == [f"stage{s}->stage{s + 1}.{t}" for s in range(3) for t in ("hidden_states", "residual")]
    assert all(op.msg_bytes == 4 * 2048 * BF16 for op in sends)  # 16 / 4 requests
    assert all(op.msg_bytes == 8192 * 2048 * BF16 for op in pp.ops if op.phase == "prefill" and op.group == "pp")
    assert pp.plan.layers_per_stage == (12, 12, 12, 12)


def test_tp_and_pp_together_split_boundary_send():
    card = load_model_card("llama-3.1-8b-instruct")
    trace = make_trace(ParallelPlan(card, tp=2, pp=2), Workload(4, 128, 16))
    dec = ops_of(trace, "decode")
    assert dec["layer.attn.o_proj"].calls == 32  # 16 layers in each of 2 stages
    assert dec["embed"].calls == 1 and dec["lm_head"].calls == 1
    # V1 splits the boundary tensor across the 2 TP ranks; stage 1 all-gathers it back.
    assert dec["stage0->stage1.hidden_states"].msg_bytes == 2 * 4096 * BF16 / 2
    assert dec["stage0->stage1.hidden_states"].peers == "0->2,1->3"
    assert dec["stage0->stage1.hidden_states.all_gather"].msg_bytes == 2 * 4096 * BF16


def test_user_config_json(tmp_path):
    config = {"num_hidden_layers": 6, "hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
              "intermediate_size": 1024, "vocab_size": 1000, "torch_dtype": "float16"}
    path = tmp_path / "my-model" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    card = load_model_card(str(path.parent))
    assert card.name == "my-model" and card.head_dim == 64
    trace = make_trace(ParallelPlan.for_mode(card, "tp"), Workload(3, 100, 10))
    dec = ops_of(trace, "decode")
    # CUDA graphs (the default) pad the 3-token decode step to the capture size 4 for the all-reduces
    assert dec["layer.mlp.down_proj"].msg_bytes == 4 * 512 * 2
    # ... but not the logits: vocab 1000 pads to 1024 (multiple of 64); each of 2 ranks holds 512 columns.
    assert dec["lm_head"].msg_bytes == 3 * 512 * 2 * 2
    assert trace.inputs["model"] == "my-model"


def test_run_totals_by_hand():
    # llama TP=2, 2 requests of 100 in / 3 out: one prefill step (200 tokens, 2 sampled), then 2 decode
    # steps of 2 tokens. Per step 65 all-reduces of [tokens, 4096] and one all-gather of [seqs, 128256].
    card = load_model_card("llama-3.1-8b-instruct")
    trace = make_trace(ParallelPlan.for_mode(card, "tp"), Workload(2, 100, 3))
    tokens = 200 + 2 + 2
    seqs = 2 + 2 + 2
    expected = 65 * tokens * 4096 * BF16 + seqs * 128256 * BF16
    assert trace.run_totals["steps"] == 3
    assert trace.run_totals["calls"] == 3 * 66
    assert trace.run_totals["msg_bytes"] == pytest.approx(expected)


def test_pp_layer_split_matches_vllm():
    assert pp_layer_split(36, 2) == (18, 18)
    assert pp_layer_split(10, 4) == (2, 3, 3, 2)  # remainder to the stages before the last
    assert pp_layer_split(32, 3) == (11, 11, 10)  # 32 % 3 = 2 extra: stages -2 and -3


def test_plan_validation_messages():
    card = load_model_card("gpt-oss-120b")
    with pytest.raises(CommbenchError, match=r"tp=3 does not divide num_attention_heads=64"):
        ParallelPlan(card, tp=3)
    with pytest.raises(CommbenchError, match=r"pp=37 exceeds num_hidden_layers=36"):
        ParallelPlan(card, pp=37)
    # tp 16 > 8 KV heads: replicated 2x, allowed.
    assert ParallelPlan(card, tp=16).kv_replication == 2


def test_missing_field_named():
    with pytest.raises(CommbenchError, match="'hidden_size'"):
        card_from_config({"num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10}, name="x")


def test_params_match_published_totals():
    # docs/sources.md#model-sizes: gpt-oss-120b 116.8B total / 5.1B active; Qwen3-Coder expert params 28.99B.
    gpt = load_model_card("gpt-oss-120b")
    assert gpt.total_params / 1e9 == pytest.approx(116.8, rel=0.01)
    qwen = load_model_card("qwen3-coder-30b-a3b")
    assert qwen.num_moe_layers * qwen.num_experts * qwen.params_per_expert == 48 * 128 * 3 * 2048 * 768
    assert qwen.total_params / 1e9 == pytest.approx(30.5, rel=0.01)


def test_schedule_mixes_decode_into_prefill_chunks():
    # 3 requests of 6 in / 3 out, budget 8: step 0 takes 8 prompt tokens (req 0 done, req 1 at 2/6);
    # step 1: 1 decode (req 0) + 7 prompt tokens (req 1's last 4, req 2's first 3), and so on.
    from commbench.traffic.workload import build_schedule

    s = build_schedule(Workload(3, 6, 3, token_budget=8))
    g = s.groups
    assert g[0].prefill_segments == ((0, 6), (0, 2)) and g[0].decode_tokens == 0
    assert g[1].prefill_segments == ((2, 4), (0, 3)) and g[1].decode_tokens == 1
    assert list(g[1].decode_keys) == [7]  # req 0's first decode token attends to 6 prompt + 1
    assert list(s.prefill_done_step) == [0, 1, 2] and list(s.finish_step) == [2, 3, 4]
    # every request processes ISL + OSL - 1 tokens over the run
    assert sum(grp.count * grp.tokens for grp in g) == 3 * (6 + 3 - 1)
