"""Measured per-stage compute on this machine's CPU: debug model and one sampled layer of a real model."""

import json

import pytest

from commbench import CommbenchError
from commbench.measure import compute
from commbench.measure.compute import measure_stage
from commbench.predict.hardware import profile_from_measurement
from commbench.predict.serving import expert_coverage
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan


def test_debug_model_every_layer_kind_timed_and_scaled():
    plan = ParallelPlan.for_mode(load_model_card("debug-tiny"), "pp")
    frame = measure_stage(plan, stage=0, prefill_tokens=32, decode_batch=4, context=40, iters=2, warmup=1,
                          expert_coverage=expert_coverage)
    # debug-tiny: 4 layers, sliding/full alternating; PP=2 stage 0 holds layers 0 (sliding) and 1 (full)
    assert sorted(frame.layer_kind.unique()) == ["moe/full", "moe/sliding"]
    assert set(frame.layers) == {1}
    assert set(frame.phase) == {"prefill", "decode"}
    assert (frame.time_ms_per_layer > 0).all()
    assert (frame.stage_ms == frame.time_ms_per_layer * frame.layers).all()
    # a sliding layer reads at most its window (16) of keys: K and V x 2 kv heads x 16 dims x 2 B
    slide_decode = frame[(frame.layer_kind == "moe/sliding") & (frame.phase == "decode")].iloc[0]
    full_decode = frame[(frame.layer_kind == "moe/full") & (frame.phase == "decode")].iloc[0]
    kv_per_key = 2 * 2 * 16 * 2
    assert full_decode.bytes_per_layer - slide_decode.bytes_per_layer == 4 * (41 - 16) * kv_per_key


def test_one_sampled_layer_of_a_real_model():
    plan = ParallelPlan.for_mode(load_model_card("llama-3.1-8b-instruct"), "tp")
    frame = measure_stage(plan, 0, prefill_tokens=16, decode_batch=2, context=64, iters=1, warmup=0,
                          expert_coverage=expert_coverage)
    assert list(frame.layers.unique()) == [32]
    decode = frame[frame.phase == "decode"].iloc[0]
    weights = (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) / 2 * 2  # one layer, TP=2 shard, bf16
    kv = 2 * 2 * 65 * 4 * 128 * 2  # (K, V) x 2 sequences x 65 keys x 4 kv heads x 128 x 2 B
    assert decode.bytes_per_layer == weights + kv
    assert decode.effective_gbps == pytest.approx(decode.bytes_per_layer / decode.time_ms_per_layer / 1e6)
    hw = profile_from_measurement(frame)
    assert hw.measured and hw.memory_bandwidth_Bps > 0


def test_refuses_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(compute, "available_memory_bytes", lambda device: 1e9)
    plan = ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "tp")
    with pytest.raises(CommbenchError, match=r"needs \d+\.\d GB on cpu but 1\.0 GB is free"):
        measure_stage(plan, 0, 16, 2, 64, expert_coverage=expert_coverage)


def test_compute_cli_out_composes_with_predict(cli, tmp_path):
    out = tmp_path / "compute.csv"
    result = cli("compute", "debug-tiny", "--mode", "tp", "--batch", "4", "--prefill-tokens", "32",
                 "--context", "32", "--iters", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "compute.csv.meta.json").exists()
    import pandas as pd

    table = pd.read_csv(out)
    gemm = table[table.phase == "gemm"]
    assert list(gemm.tokens) == [1, 4, 16, 64, 256, 1024]
    assert gemm.flops_per_layer.tolist() == [2.0 * n * 64 * 64 for n in gemm.tokens]  # debug-tiny: hidden 64, gate+up 2 x 64 / tp 2
    hw = profile_from_measurement(table)
    assert len(hw.gemm_curve) == 6 and max(e for _, e in hw.gemm_curve) == 1.0
    assert hw.eager_launch_s == pytest.approx(float(table[table.phase == "launch"].time_ms_per_layer.iloc[0]) / 1e3)
    pred = cli("predict", "debug-tiny", "--hardware", out, "--fabric", "loopback-gloo", "--batch", "1,4", "--json")
    assert pred.exit_code == 0, pred.output
    rows = json.loads(pred.output)["rows"]
    assert {r["hardware"] for r in rows} == {"compute"} and all(r["output_tok_s"] > 0 for r in rows)
