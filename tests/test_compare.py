"""commbench compare (issue 19): sweeps or logs of one collective, per size ratio and significance,
and the --fail-above CI gate. The nccl-tests logs in tests/fixtures/compare/ are our own, written in
nccl-tests 2.19's shape (with and without -I 1); every expected figure is read off those files."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commbench.results import save_table

HERE = Path(__file__).parent / "fixtures" / "compare"
I1_BASE, I1_CAND = HERE / "all_reduce_perf_I1_baseline.log", HERE / "all_reduce_perf_I1_candidate.log"
BASE, CAND = HERE / "all_reduce_perf_baseline.log", HERE / "all_reduce_perf_candidate.log"
# out-of-place times (us) of the fixtures: the candidate is 1% slower below 512 KiB, 12% from 512 KiB
BASE_US = {8: 21.40, 128: 21.90, 2048: 24.10, 32768: 41.30, 524288: 186.0, 8388608: 2410.0}
CAND_US = {8: 21.61, 128: 22.12, 2048: 24.34, 32768: 41.71, 524288: 208.32, 8388608: 2699.2}


def _json(cli, *args):
    result = cli("compare", *args, "--json")
    return result, (json.loads(result.stdout) if result.exit_code in (0, 1) else None)


def test_nccl_tests_logs_with_per_iteration_spread(cli):
    """-I 1 gives mean, cv% and iters (50): Welch's t test. At 8 B: 21.40 vs 21.61 us, sd 10% of each
    (2.140, 2.161): t = 0.21 / sqrt((2.140^2 + 2.161^2) / 50) = 0.21 / 0.4302 = 0.488, p = 0.63 (98 dof);
    at 512 KiB: 186.0 vs 208.32 us, sd 2% (3.720, 4.166): t = 22.32 / 0.790 = 28.3, p ~ 1e-48."""
    result, doc = _json(cli, I1_BASE, I1_CAND)
    assert result.exit_code == 0, result.output
    rows = {r["msg_bytes"]: r for r in doc["rows"]}
    assert sorted(rows) == sorted(BASE_US)
    for size, row in rows.items():
        assert row["ratio"] == pytest.approx(CAND_US[size] / BASE_US[size])
        assert row["busbw_ratio"] == pytest.approx(BASE_US[size] / CAND_US[size])  # same ranks: the inverse
        assert row["test"] == "welch"
    assert rows[8]["p_value"] == pytest.approx(0.627, abs=0.01) and rows[8]["significant"] is False
    assert rows[524288]["p_value"] < 1e-30 and rows[524288]["significant"] is True
    assert [s for s, r in rows.items() if r["significant"]] == [524288, 8388608]


def test_fail_above_gates_on_significant_regressions(cli):
    result, doc = _json(cli, I1_BASE, I1_CAND, "--fail-above", "5")
    assert result.exit_code == 1 and doc["regressed"] == [524288, 8388608]
    assert "regressed: 2 size(s) slower by more than 5%" in result.stderr
    # 1% slower everywhere else, but not significant: a 0.5% gate still fails only on the two
    result, doc = _json(cli, I1_BASE, I1_CAND, "--fail-above", "0.5")
    assert result.exit_code == 1 and doc["regressed"] == [524288, 8388608]
    result, doc = _json(cli, I1_BASE, I1_CAND, "--fail-above", "12.5")  # 208.32 / 186 = +12.0%
    assert result.exit_code == 0 and doc["regressed"] == []
    # reversed: the candidate is faster, nothing regressed
    result, _ = _json(cli, I1_CAND, I1_BASE, "--fail-above", "0")
    assert result.exit_code == 0


def test_logs_without_spread_compare_the_ratio_alone_and_say_so(cli):
    result, doc = _json(cli, BASE, CAND, "--fail-above", "0.5")
    assert {r["test"] for r in doc["rows"]} == {"none"} and all(r["significant"] is None for r in doc["rows"])
    assert any("the ratio alone" in n for n in doc["notes"])
    # untested sizes count for the gate: all six are more than 0.5% slower
    assert result.exit_code == 1 and doc["regressed"] == sorted(BASE_US)


def _sweep_table(path, samples: dict, ranks=2):
    rows = [{"collective": "all_reduce", "msg_bytes": s, "ranks": ranks, "time_us_p50": float(np.median(v)),
             "samples_us": [float(x) for x in v]} for s, v in samples.items()]
    save_table(pd.DataFrame(rows), path, {"command": "sweep", "timing": "blocking"})


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_commbench_sweeps_with_samples(cli, tmp_path, suffix):
    """Mann-Whitney U on the samples: 64 KiB's candidate samples are the baseline's x 1.5, every one
    above every baseline sample (U = 0, p far below 0.05) and the p50 ratio exactly 1.5; 1 MiB's are
    the same values in another order (p = 1, ratio 1)."""
    base = {1024: 30 + np.arange(40) % 7, 65536: 60 + np.arange(40) % 9, 1048576: 400 + np.arange(40) % 11}
    cand = {1024: base[1024].copy(), 65536: base[65536] * 1.5, 1048576: base[1048576][::-1]}
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    _sweep_table(a, base)
    _sweep_table(b, cand)
    result, doc = _json(cli, a, b, "--fail-above", "10")
    rows = {r["msg_bytes"]: r for r in doc["rows"]}
    assert {r["test"] for r in rows.values()} == {"mann-whitney"}
    assert rows[65536]["ratio"] == pytest.approx(1.5) and rows[65536]["p_value"] < 1e-10
    assert rows[1048576]["ratio"] == 1.0 and rows[1048576]["p_value"] == 1.0 and not rows[1048576]["significant"]
    assert result.exit_code == 1 and doc["regressed"] == [65536]


def test_a_real_gloo_sweep_against_itself(cli, tmp_path):
    out = tmp_path / "s.csv"
    result = cli("sweep", "all_reduce", "--max-bytes", "64", "--iters", "5", "--out", out)
    assert result.exit_code == 0, result.output
    result, doc = _json(cli, out, out, "--fail-above", "0")
    assert result.exit_code == 0, result.output
    assert all(r["ratio"] == 1.0 and r["p_value"] == 1.0 and r["test"] == "mann-whitney" for r in doc["rows"])


def test_ranks_and_sizes_that_differ_are_said(cli, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _sweep_table(a, {1024: np.arange(10.0) + 10, 2048: np.arange(10.0) + 20})
    _sweep_table(b, {1024: np.arange(10.0) + 10, 4096: np.arange(10.0) + 30}, ranks=4)
    result, doc = _json(cli, a, b)
    assert result.exit_code == 0 and [r["msg_bytes"] for r in doc["rows"]] == [1024]
    # all_reduce busbw factor 2(n-1)/n: 1 at 2 ranks, 1.5 at 4; same time -> busbw ratio 1.5
    assert doc["rows"][0]["busbw_ratio"] == pytest.approx(1.5)
    assert any("4 ranks against 2" in n for n in doc["notes"]) and any("2 sizes not in both" in n for n in doc["notes"])


@pytest.mark.parametrize("make, args, message", [
    (None, ["ONE"], "two or more sweeps"),
    (None, ["ONE", "ONE", "--fail-above", "-3"], "--fail-above -3.0: give a percentage >= 0"),
    ("empty", ["BAD", "ONE"], "bad.csv: empty file"),
    ("gather", ["ONE", "BAD"], "is all_reduce"),
    ("nosize", ["ONE", "BAD"], "share no message size"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, make, args, message):
    one = tmp_path / "one.csv"
    _sweep_table(one, {1024: np.arange(10.0) + 10})
    bad = tmp_path / "bad.csv"
    if make == "empty":
        bad.write_text("")
    elif make == "gather":
        pd.DataFrame([{"collective": "all_gather", "msg_bytes": 1024, "ranks": 2, "time_us_p50": 9.0}]).to_csv(bad, index=False)
    elif make == "nosize":
        _sweep_table(bad, {4096: np.arange(10.0) + 10})
    out = tmp_path / "cmp.csv"
    argv = [{"ONE": one, "BAD": bad}.get(a, a) for a in args]
    result = cli("compare", *argv, "--out", out)
    assert result.exit_code == 2, result.output
    text = result.output.strip().replace(str(bad), "BAD")
    assert message in text and len(text.splitlines()) == 1
    assert not out.exists()


def test_a_log_of_two_collectives_needs_collective(cli, tmp_path):
    """A loop of *_perf commands in one file (all_reduce then sendrecv): refused without --collective,
    compared on the chosen one with it."""
    both = tmp_path / "loop.log"
    both.write_text(BASE.read_text() + "\n" + BASE.read_text().replace("all_reduce_perf", "sendrecv_perf"))
    result = cli("compare", both, CAND)
    assert result.exit_code == 2 and "--collective" in result.output and len(result.output.strip().splitlines()) == 1
    result, doc = _json(cli, both, CAND, "--collective", "all_reduce")
    assert result.exit_code == 0, result.output
    assert [r["ratio"] for r in doc["rows"]] == pytest.approx([CAND_US[s] / BASE_US[s] for s in sorted(BASE_US)])


def test_nccl_tests_json_per_iteration_times(cli):
    """-J with -I 1 keeps each iteration's time (20 here): Mann-Whitney on them. At 1 MiB every candidate
    time is the baseline's x 1.25 (all 20 above all 20 except where the patterns overlap: p far below
    0.05); at 4 KiB and 64 KiB the candidate holds the same 20 times in another order (p = 1). The led
    figure is the p50 of the iterations: 4 KiB's times are 30 + (7i mod 5), p50 = 32."""
    base, cand = HERE / "all_gather_perf_J_baseline.json", HERE / "all_gather_perf_J_candidate.json"
    result, doc = _json(cli, base, cand, "--fail-above", "5")
    rows = {r["msg_bytes"]: r for r in doc["rows"]}
    assert {r["test"] for r in rows.values()} == {"mann-whitney"} and rows[4096]["baseline_time_us"] == 32.0
    assert rows[4096]["p_value"] == 1.0 and rows[65536]["p_value"] == 1.0
    assert rows[1048576]["ratio"] == pytest.approx(1.25) and rows[1048576]["p_value"] < 1e-6
    assert result.exit_code == 1 and doc["regressed"] == [1048576]
