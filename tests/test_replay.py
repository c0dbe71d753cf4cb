"""Replay: engine order from the trace, and a real 2-rank run on gloo and MPI."""

import json
import subprocess
import sys

import pytest

from commbench.links import LINKS
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.measure.replays import engine_order
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload
from tests.conftest import mpiexec_path


def _trace(model, mode, batch, **kw):
    return make_trace(ParallelPlan.for_mode(load_model_card(model), mode), Workload.from_options(batch, **kw))


def test_gpt_oss_tp_decode_order():
    calls = engine_order(_trace("gpt-oss-120b", "tp", 128), "decode")
    assert len(calls) == 74
    assert calls[0][0] == "embed" and calls[-1][:2] == ("lm_head", "all_gather")
    # 36 layers, each: attention o_proj then the fused MoE, [128, 2880] bf16 = 737,280 B
    body = calls[1:-1]
    assert [c[0] for c in body] == ["layer.attn.o_proj", "layer.moe"] * 36
    assert {c[2] for c in body} == {128 * 2880 * 2}
    assert calls[-1][2] == 128 * 201088 * 2  # logits gather S: 2 ranks x [128, 100544] bf16


def test_llama_dense_and_pp_order():
    calls = engine_order(_trace("llama-3.1-8b-instruct", "tp", 1), "decode")
    assert [c[0] for c in calls[1:3]] == ["layer.attn.o_proj", "layer.mlp.down_proj"]
    pp = engine_order(_trace("gpt-oss-120b", "pp", 128), "decode")
    # send_tensor_dict: the metadata (an int64 size, then its 183-byte pickle; test_trace.py works it
    # out), then one micro-batch of 64 requests: hidden_states and residual [64, 2880] bf16, rank 0 -> rank 1
    assert pp == [("stage0->stage1.metadata_size", "send_recv", 8, ((0, 1),)),
                  ("stage0->stage1.metadata", "send_recv", 183, ((0, 1),)),
                  ("stage0->stage1.hidden_states", "send_recv", 368_640, ((0, 1),)),
                  ("stage0->stage1.residual", "send_recv", 368_640, ((0, 1),))]


def test_tp_inside_pp_order():
    """tp=2 x pp=2 on 4 ranks: stage 0's TP group [0, 1], then the split boundary, then stage 1's [2, 3]."""
    trace = make_trace(ParallelPlan(load_model_card("llama-3.1-8b-instruct"), tp=2, pp=2), Workload.from_options(8))
    calls = engine_order(trace, "decode")
    stage0 = [c for c in calls if c[0].startswith("stage0.")]
    stage1 = [c for c in calls if c[0].startswith("stage1.")]
    assert len(stage0) == 1 + 2 * 16 and {c[3] for c in stage0} == {(0, 1)}
    assert len(stage1) == 2 * 16 + 1 and {c[3] for c in stage1} == {(2, 3)}
    boundary = calls[len(stage0):len(stage0) + 6]
    # each rank pair first sends the metadata (8 B size, then the pickle), unsplit
    assert [c[0] for c in boundary[:2]] == ["stage0->stage1.metadata_size", "stage0->stage1.metadata"]
    assert boundary[0][3] == ((0, 2), (1, 3))
    # a decode micro-batch holds 8 / pp = 4 requests: [4, 4096] bf16 split over 2 TP ranks is 16 KB per
    # rank pair, then all-gathered (S = 32 KB) in stage 1
    assert boundary[2] == ("stage0->stage1.hidden_states", "send_recv", 4 * 4096 * 2 / 2, ((0, 2), (1, 3)))
    assert boundary[3] == ("stage0->stage1.hidden_states.all_gather", "all_gather", 4 * 4096 * 2, (2, 3))


def _check_rows(rows, link_Bps):
    steps = [r for r in rows if r["site"] == "step"]
    assert {r["phase"] for r in steps} == {"prefill", "decode"}
    for step in steps:
        sites = [r for r in rows if r["phase"] == step["phase"] and r["site"] != "step"]
        assert step["calls"] == sum(r["calls"] for r in sites)
        assert step["isolated_us_per_step"] == pytest.approx(sum(r["isolated_us_per_step"] for r in sites))
        assert step["measured_us_per_step"] > 0
        for r in sites:
            n = r["group_size"]
            factor = {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n, "send_recv": 1.0}[r["collective"]]
            assert r["wire_us_per_step_200gbe"] == pytest.approx(r["calls"] * r["msg_bytes"] * factor / link_Bps * 1e6)


def test_replay_on_gloo_cli(cli):
    result = cli("trace", "debug-tiny", "--mode", "tp", "--batch", "4", "--isl", "32", "--osl", "8", "--replay",
                 "--iters", "2", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    rows = doc["rows"]
    # debug-tiny decode at batch 4: 1 embedding + 2 x 4 layer all-reduces of [4, 64] bf16 = 512 B, 1 logits gather
    decode = {r["site"]: r for r in rows if r["phase"] == "decode"}
    assert decode["layer.attn.o_proj"]["calls"] == 4 and decode["layer.attn.o_proj"]["msg_bytes"] == 4 * 64 * 2
    assert decode["step"]["calls"] == 10
    # the traced dtype by default: gloo has bfloat16, so the buffers are bf16 of the traced bytes
    assert {r["type"] for r in rows if r["site"] != "step"} == {"bfloat16"}
    _check_rows(rows, LINKS["200gbe"].bandwidth_Bps)


@pytest.mark.mpi
@pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")
def test_replay_on_mpi_pp():
    pytest.importorskip("mpi4py")
    proc = subprocess.run([sys.executable, "-m", "commbench", "trace", "debug-tiny", "--mode", "pp", "--batch", "4",
                           "--isl", "32", "--replay", "--backend", "mpi", "--iters", "3", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {r["collective"] for r in rows if r["site"] != "step"} == {"send_recv"}
    # MPI has no bfloat16: activation sends fall back to float32 of the same bytes; metadata keeps its types
    types = {r["site"].split(".")[-1]: r["type"] for r in rows if r["site"] != "step" and r["phase"] == "decode"}
    assert types == {"metadata_size": "int64", "metadata": "uint8", "hidden_states": "float32", "residual": "float32"}
    _check_rows(rows, LINKS["200gbe"].bandwidth_Bps)


def test_replay_bad_phase(cli):
    result = cli("trace", "debug-tiny", "--replay", "--phase", "both-ways")
    assert result.exit_code == 2 and "unknown phase 'both-ways'; valid: prefill, decode, both" in result.output


@pytest.mark.mpi
@pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")
def test_replay_tp_inside_pp_on_four_mpi_ranks():
    pytest.importorskip("mpi4py")
    proc = subprocess.run([sys.executable, "-m", "commbench", "trace", "debug-tiny", "--tp", "2", "--pp", "2",
                           "--batch", "4", "--isl", "32", "--replay", "--backend", "mpi", "--iters", "2", "--json"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    sites = {r["site"] for r in rows if r["phase"] == "decode"}
    assert {"stage0.embed", "stage1.lm_head", "stage0->stage1.residual.all_gather"} <= sites
    _check_rows(rows, LINKS["200gbe"].bandwidth_Bps)
