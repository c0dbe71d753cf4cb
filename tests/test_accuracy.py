"""Published figures, vllm bench serve files, the accuracy command and the vllm-bench metrics."""

import json

import numpy as np
import pytest

from commbench import CommbenchError
from commbench.fabric import load_fabric
from commbench.predict.hardware import load_hardware
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.predict.published import load_figures, shipped_figures
from commbench.predict.recipes import apply_recipe, load_recipe
from commbench.predict.serving import predict_row
from commbench.traffic.workload import Workload


def _vllm_result(**over):
    """A `vllm bench serve --save-result` JSON with the fields vllm/benchmarks/serve.py writes."""
    raw = {"date": "20261124-010203", "backend": "vllm", "model_id": "openai/gpt-oss-120b", "tokenizer_id": "openai/gpt-oss-120b",
           "num_prompts": 64, "request_rate": "inf", "burstiness": 1.0, "max_concurrency": 16, "duration": 40.0,
           "completed": 64, "total_input_tokens": 64 * 1024, "total_output_tokens": 64 * 1024,
           "request_throughput": 1.6, "request_goodput": None, "output_throughput": 1638.4, "total_token_throughput": 3276.8,
           "max_output_tokens_per_s": 1800.0, "max_concurrent_requests": 16, "mean_ttft_ms": 900.0, "median_ttft_ms": 850.0,
           "std_ttft_ms": 10.0, "p99_ttft_ms": 1500.0, "mean_tpot_ms": 9.5, "median_tpot_ms": 9.4, "std_tpot_ms": 0.2,
           "p99_tpot_ms": 10.5, "mean_itl_ms": 9.5, "median_itl_ms": 9.3, "std_itl_ms": 1.0, "p99_itl_ms": 14.0,
           "input_lens": [1024] * 64, "output_lens": [1024] * 64, "ttfts": [0.9] * 64, "itls": [[0.0095]] * 64,
           "generated_texts": [""] * 64, "errors": [""] * 64, "tp": "2", "pp": "1"}
    raw.update(over)
    return raw


def test_vllm_bench_json_reads_back_as_figure_rows(tmp_path):
    path = tmp_path / "vllm-infqps-concurrency16-gpt-oss-120b.json"
    path.write_text(json.dumps(_vllm_result()))
    rows = load_figures(path).set_index("metric")
    assert set(rows.model) == {"gpt-oss-120b"} and set(rows.batch) == {16}
    assert set(rows.isl) == {1024} and set(rows.osl) == {1024}  # 65536 tokens / 64 completed
    assert set(rows.tp) == {2} and set(rows.pp) == {1}  # from --metadata tp=2 pp=1 (strings in the JSON)
    assert rows.loc["output_throughput", "value"] == 1638.4 and rows.loc["p99_itl_ms", "value"] == 14.0
    assert "std_ttft_ms" not in rows.index  # not a metric commbench predicts


@pytest.mark.parametrize("content, message", [
    ({"rows": []}, "missing columns"),
    ({"output_throughput": 3.0}, "not a `vllm bench serve --save-result` JSON"),
    (_vllm_result(max_concurrency=None), "run vllm bench serve with --max-concurrency"),
    (_vllm_result(model_id="acme/unknown-9b"), "unknown model 'unknown-9b'"),
])
def test_accuracy_bad_published_files_are_one_line_and_write_nothing(cli, tmp_path, content, message):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(content))
    out = tmp_path / "acc.csv"
    result = cli("accuracy", "--published", path, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_metric_and_column_name_the_valid_choices(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("model,batch,isl,osl,metric,value\ngpt-oss-20b,1,512,32,tok_per_watt,3\n")
    with pytest.raises(CommbenchError, match="unknown metric 'tok_per_watt'; valid: decode_tok_s"):
        load_figures(path)
    path.write_text("model,batch,isl,osl,metric,value,colour\ngpt-oss-20b,1,512,32,decode_tok_s,3,red\n")
    with pytest.raises(CommbenchError, match="unknown columns colour"):
        load_figures(path)


def test_accuracy_on_the_shipped_dev_set(cli):
    result = cli("accuracy", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    summary = {(r["source"], r["metric"]): r for r in data["summary"]}
    # the single-Spark decode curves: both sources within 10% MAPE (done-when of the prediction work)
    assert summary["kubis.ai", "decode_tok_s"]["mape_pct"] <= 10
    assert summary["llama.cpp", "decode_tok_s"]["mape_pct"] <= 10
    assert summary["kubis.ai", "decode_tok_s"]["tuned_on"] == "routing skew"
    assert summary["llama.cpp", "decode_tok_s"]["tuned_on"] == "no"
    rows = data["rows"]
    for r in rows:  # error is predicted / measured - 1
        assert r["error_pct"] == pytest.approx((r["predicted"] / r["value"] - 1) * 100)
    review_pp = [r for r in rows if r["source"] == "StorageReview" and r["pp"] == 2]
    assert len(review_pp) == 2 and all(abs(r["error_pct"]) <= 15 for r in review_pp)
    assert len(shipped_figures()) == len(rows)


def test_vllm_bench_metrics_by_hand():
    """Batch 1, ISL 8, OSL 3, one rank: the prefill step samples token 1, then two decode steps.

    TTFT = end of step 0; TPOT = (end of step 2 - end of step 0) / 2; ITL = each decode step;
    peak output tok/s = 3 tokens inside the first second (the steps take milliseconds)."""
    card = load_model_card("llama-3.1-8b-instruct")
    plan = ParallelPlan(card, 1, 1)
    hw, fab = load_hardware("dgx-spark"), load_fabric("spark-200gbe")
    row = predict_row(plan, Workload(1, 8, 3), hw, fab)
    assert row["steps"] == 3
    run = row["run_s"] * 1e3
    assert row["mean_ttft_ms"] == row["median_ttft_ms"] == row["p99_ttft_ms"]
    assert row["mean_e2el_ms"] == pytest.approx(run)
    assert row["mean_tpot_ms"] == pytest.approx((run - row["mean_ttft_ms"]) / 2)
    assert row["mean_itl_ms"] == pytest.approx(row["mean_tpot_ms"])  # one request: its gaps are the decode steps
    assert row["max_output_tokens_per_s"] == 3
    assert row["request_throughput"] == pytest.approx(1 / row["run_s"])


def test_recipe_prices_weights_and_kv_cache_as_served():
    card = load_model_card("gpt-oss-120b")
    served = apply_recipe(card, load_recipe("vllm-mxfp4-eager"))
    assert card.kv_bytes_per_token_per_layer == 2 * 8 * 64 * 2  # K and V, 8 heads of 64, bf16
    assert served.kv_bytes_per_token_per_layer == 2 * 8 * 64 * 1  # FP8 KV cache
    assert served.weight_bytes("attention") == 4.25 / 8 and card.weight_bytes("attention") == 2
    assert served.weight_bytes("router") == card.weight_bytes("router") == 2  # groups the recipe does not name
    assert not load_recipe("vllm-mxfp4-eager").engine.cuda_graphs


def test_unknown_recipe_names_the_choices(cli):
    result = cli("predict", "gpt-oss-120b", "--recipe", "fp3")
    assert result.exit_code == 2 and "unknown recipe 'fp3'" in result.output and "checkpoint" in result.output


def test_fabric_infer_is_a_diagnostic(cli):
    result = cli("fabric", "infer")
    assert result.exit_code == 0, result.output
    assert "not physical" in result.output and "unexplained" in result.output


def test_explain_evidence_splits_the_published_gap(cli):
    result = cli("explain", "gpt-oss-120b", "--batch", "128", "--json")
    data = json.loads(result.output)
    evidence = {r["term (ms per decode step, TP minus PP)"]: r for r in data["evidence"]}
    row = evidence["unexplained (published - predicted gap)"]
    gap = evidence["published TP - PP gap"]["spark-200gbe"]
    assert gap == pytest.approx(128 * 1e3 * (1 / 252.13 - 1 / 554.69), rel=1e-6)
    assert row["spark-200gbe"] == pytest.approx(gap - evidence["predicted TP - PP gap"]["spark-200gbe"])
    assert set(row) >= {"spark-200gbe", "spark-1hca", "spark-playbook", "spark-tcp-200g", "spark-tcp-10gbe"}
    assert np.isfinite(row["spark-tcp-10gbe"])


def test_linear_percentiles_match_numpy():
    from commbench.predict.serving import _linear_percentiles

    values = np.random.default_rng(3).random(37)
    assert _linear_percentiles(np.sort(values), (50, 99)) == pytest.approx(np.percentile(values, (50, 99)).tolist())
    assert _linear_percentiles(np.array([4.0]), (50, 99)) == [4.0, 4.0]
