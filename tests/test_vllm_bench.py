"""`vllm bench serve` result files of vLLM 0.11.0, the current release and the older benchmark_serving.py
(issue 19): fixtures in tests/fixtures/vllm_bench/ carry the keys each version's serve.py writes, with
our own numbers; every expected value below is worked out from the numbers in the fixture."""

import json
import shutil
from pathlib import Path

import pytest

from commbench import CommbenchError
from commbench.predict.published import load_figures

HERE = Path(__file__).parent / "fixtures" / "vllm_bench"
V0110 = HERE / "v0110_save_result_tp2_c32.json"
SIDE = HERE / "v0110_save_result_tp2_c32.pytorch.json"
APPEND = HERE / "v0110_append_result_c8_c16.json"
CURRENT = HERE / "current_save_result_llama8b_pp2_c4.json"
OLD = HERE / "benchmark_serving_old_goodput_key.json"
NO_CONCURRENCY = HERE / "v0110_rate4_no_concurrency.json"
THROUGHPUTS = {"output_throughput", "total_token_throughput", "request_throughput"}
STATS = {f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl") for s in ("mean", "median", "p99")}


def test_v0110_result_reads_every_metric_it_has():
    rows = load_figures(V0110).set_index("metric")
    # 96 prompts, 196608 input and 24576 output tokens: ISL 2048, OSL 256; --max-concurrency 32
    assert set(rows.isl) == {2048} and set(rows.osl) == {256} and set(rows.batch) == {32}
    assert set(rows.tp) == {2} and set(rows.pp) == {1} and set(rows.model) == {"gpt-oss-120b"}
    # default --percentile-metrics ttft,tpot,itl: no e2el; std is not predicted; goodput null
    assert set(rows.index) == THROUGHPUTS | {"max_output_tokens_per_s"} | STATS
    assert rows.loc["output_throughput", "value"] == pytest.approx(96 * 256 / 151.2)
    assert rows.loc["p99_itl_ms", "value"] == 260.4


def test_current_release_result_with_failed_requests_and_more_percentiles():
    notes = []
    rows = load_figures(CURRENT, notes).set_index("metric")
    # 11 completed of 12 (1 failed): 5632 / 11 = 512 in, 1408 / 11 = 128 out; pp from --metadata, tp unsaid
    assert set(rows.isl) == {512} and set(rows.osl) == {128} and set(rows.batch) == {4}
    assert set(rows.pp) == {2} and set(rows.tp) == {1} and set(rows.model) == {"llama-3.1-8b-instruct"}
    # e2el selected: its mean/median/p99 are read; p90, client queue time, rtfx and the lists are not metrics
    assert set(rows.index) == THROUGHPUTS | {"max_output_tokens_per_s"} | STATS | {
        "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms"}
    assert rows.loc["p99_e2el_ms", "value"] == 22420.0
    assert any("no tp in the file" in n and "tp=1" in n for n in notes)
    assert any("1 failed requests" in n for n in notes)


def test_append_result_gives_each_run_its_rows():
    rows = load_figures(APPEND)
    assert sorted(set(rows.batch)) == [8, 16]
    for batch, duration, doc in ((8, 402.5, 1), (16, 233.9, 2)):
        run = rows[rows.batch == batch].set_index("metric")
        assert len(run) == 13 and run.loc["output_throughput", "value"] == pytest.approx(96 * 256 / duration)
        assert set(run.citation) == {f"{APPEND} document {doc} of 2 (vllm bench serve, 20261115-{'100000' if doc == 1 else '101500'})"}


def test_older_benchmark_serving_keys_read_without_crash():
    rows = load_figures(OLD).set_index("metric")
    # no max_output_tokens_per_s in that version; the misspelt goodput key is not a predicted metric
    assert set(rows.index) == THROUGHPUTS | STATS
    assert set(rows.batch) == {1} and set(rows.isl) == {128} and set(rows.osl) == {512}
    assert rows.loc["output_throughput", "value"] == 10 * 512 / 80.0


def test_side_file_refused_alone_skipped_beside_its_result():
    with pytest.raises(CommbenchError, match="give the result file v0110_save_result_tp2_c32.json"):
        load_figures(SIDE)
    notes = []
    assert load_figures(SIDE, notes, skip_side_files=True).empty and "SAVE_TO_PYTORCH_BENCHMARK_FORMAT" in notes[0]


def test_accuracy_on_a_result_and_its_side_file(cli, tmp_path):
    """Both files of a `results/*.json` glob: the side file is skipped with a note; every metric of
    the result is priced. The predicted total token throughput is the predicted output throughput
    x (ISL + OSL) / OSL = x (2048 + 256) / 256 = x 9, an identity of the two metrics' definitions."""
    out = tmp_path / "acc.json"
    result = cli("accuracy", "--published", V0110, SIDE, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr and "not read; give the result file" in result.stderr
    rows = {r["metric"]: r for r in json.loads(result.stdout)["rows"]}
    assert set(rows) == THROUGHPUTS | {"max_output_tokens_per_s"} | STATS
    assert rows["total_token_throughput"]["predicted"] == pytest.approx(9 * rows["output_throughput"]["predicted"])
    assert rows["request_throughput"]["predicted"] == pytest.approx(rows["output_throughput"]["predicted"] / 256)
    assert out.exists()


def test_accuracy_reads_the_current_release_and_appended_runs(cli):
    result = cli("accuracy", "--published", CURRENT, APPEND, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {(r["model"], r["batch"]) for r in rows} == {("llama-3.1-8b-instruct", 4), ("gpt-oss-120b", 8),
                                                       ("gpt-oss-120b", 16)}
    assert all(r["predicted"] > 0 for r in rows)


def _bad(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("empty.json", b"", "empty"),
    ("binary.json", b"\x00\x01\x02{", "not text"),
    ("cut.json", APPEND.read_bytes()[:1200], "document 2 is not complete JSON"),
    ("trailing.json", V0110.read_bytes() + b"\n# done\n", "document 2 is not complete JSON"),
    ("list.json", b"[1, 2]", "not a `vllm bench serve --save-result` JSON (missing an object, not a list)"),
    ("sweep.log", b"# nccl-tests version 2.19.2\n", "a sweep or nccl-tests/OSU log goes to --fabric"),
    ("pooling.json", json.dumps({k: v for k, v in json.loads(V0110.read_text()).items()
                                 if k not in ("total_output_tokens", "output_throughput")}).encode(), "pooling"),
])
def test_bad_result_files_are_one_line_exit_2_nothing_written(cli, tmp_path, name, content, message):
    path = _bad(tmp_path, name, content)
    out = tmp_path / "acc.csv"
    result = cli("accuracy", "--published", path, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_run_without_max_concurrency_is_refused_naming_it(cli, tmp_path):
    result = cli("accuracy", "--published", NO_CONCURRENCY)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "max_concurrency = None (request_rate 4.0)" in result.output and "--max-concurrency B" in result.output
    copy = tmp_path / "r.pytorch.json"
    shutil.copy(SIDE, copy)
    result = cli("predict", "gpt-oss-120b", "--batch", "32", "--published", copy)
    assert result.exit_code == 2 and "give the result file r.json" in result.output
