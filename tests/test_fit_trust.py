"""Fits that say how far they can be trusted (issue 19): the sizes a fit was made on, segments of
too few sizes, and the warning when predict / explain / report price far outside the measured range."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commbench.fabric import fabric_toml, fit_alpha_beta, fit_sweep, load_fabric
from commbench.fabric.trust import EXTRAPOLATION_FACTOR, extrapolations, fit_notes, warnings
from commbench.fabric.validate import assess
from commbench.links import parse_link

FIXTURES = Path(__file__).parent / "fixtures" / "fit_range"
GB_LOG = FIXTURES / "all_gather_perf_2spark_1G_4G.log"  # 2 ranks, all_gather, 1, 2 and 4 GiB only
GIB = 1024**3
GPT_OSS_HIDDEN = 2880  # gpt-oss-120b config.json hidden_size


def test_gb_sized_fit_has_a_real_alpha_interval():
    """The fixture's out-of-place times (24610, 48920, 97480 us at 1, 2, 4 GiB): the intercepts of
    the three pairs of points are 24610 - 24310 = 300 us (1-2 GiB), 48920 - 48560 = 360 us (2-4 GiB)
    and 24610 - 72870 / 3 = 320 us (1-4 GiB); the fit lies among them, and its 95% interval (1 dof)
    is wider than their spread instead of zero-wide as before S was scaled."""
    fit = fit_alpha_beta([GIB, 2 * GIB, 4 * GIB], np.array([24610, 48920, 97480]) * 1e-6)
    assert 300e-6 <= fit.alpha_s <= 360e-6
    assert fit.alpha_ci_s[0] < 300e-6 and fit.alpha_ci_s[1] > 360e-6
    assert fit.points == 3 and fit.sizes_bytes == (GIB, 4 * GIB)


def test_two_sizes_give_unbounded_intervals_said():
    sizes = np.array([1024.0, 1024.0 * 1024])
    fit = fit_alpha_beta(sizes, 10e-6 + sizes / 5e9)
    assert math.isclose(fit.alpha_s, 10e-6, rel_tol=1e-9) and math.isclose(fit.beta_Bps, 5e9, rel_tol=1e-9)
    assert fit.alpha_ci_s == (-math.inf, math.inf) and fit.beta_ci_Bps == (0.0, math.inf)
    frame = pd.DataFrame({"collective": "all_reduce", "msg_bytes": sizes, "ranks": 2,
                          "time_us_p50": (10e-6 + sizes / 5e9) * 1e6})
    model = fit_sweep(frame, "two")
    table = model.to_frame()
    row = table[table.collective == "all_reduce"].iloc[0]
    assert row.points == 2 and row.measured_from_bytes == 1024 and row.measured_to_bytes == 1024**2
    assert "unbounded interval" in row.note and math.isinf(row.alpha_ci_hi_us)
    assert len(fit_notes(model)) == 1 and "fitted on 2 sizes" in fit_notes(model)[0]


def test_fitted_range_survives_the_saved_profile(tmp_path):
    model = load_fabric(str(GB_LOG))
    path = tmp_path / "fit.toml"
    path.write_text(fabric_toml(model, "test"))
    again = load_fabric(str(path))
    assert again.segments[0].points == 3 and again.segments[0].sizes_bytes == (GIB, 4 * GIB)
    again.time_s("all_reduce", 5760, 2)
    assert extrapolations(again)[0]["need_from_bytes"] == 4096


def test_pricing_far_outside_is_named_and_inside_is_not():
    model = load_fabric(str(GB_LOG))
    model.time_s("all_gather", GIB / EXTRAPOLATION_FACTOR, 2)  # exactly 2x below: still read as measured
    model.time_s("all_gather", 8 * GIB, 2)  # exactly 2x above
    assert extrapolations(model) == []
    model.time_s("all_gather", 64 * 1024, 2)
    (found,) = extrapolations(model)
    assert found["collective"] == "all_gather" and found["fit"] == "all_gather"
    assert found["priced_from_bytes"] == 64 * 1024 and found["points_per_segment"] == [3]
    assert (found["need_from_bytes"], found["need_to_bytes"]) == (64 * 1024, 8 * GIB)
    assert "16,384x below the smallest" in found["message"] and "-b 64K -e 8G" in found["message"]


def test_predict_on_the_gb_only_log_warns_and_names_the_sizes(cli, tmp_path):
    """The issue's case: gpt-oss-120b priced on an all_gather log of 1-4 GB. The smallest all-reduce
    priced is one decode token of hidden states, 1 x 2880 x 2 B (bf16) = 5760 B, 186,414x below 1 GiB;
    a sweep from 4K (the power of two below 5760) is what it needs."""
    out = tmp_path / "p.json"
    result = cli("predict", "gpt-oss-120b", "--fabric", GB_LOG, "--batch", "1", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert "warning: fabric all_gather_perf_2spark_1G_4G: priced all_reduce at 5.62K" in result.stderr
    assert "sizes needed: 4K-" in result.stderr
    doc = json.loads(result.stdout)
    found = {e["collective"]: e for e in doc["fabric_extrapolation"]}
    assert found["all_reduce"]["priced_from_bytes"] == 1 * GPT_OSS_HIDDEN * 2
    assert found["all_reduce"]["fit"] == "all_gather" and found["all_reduce"]["need_from_bytes"] == 4096
    assert any("priced all_reduce" in w for w in doc["warnings"])
    saved = json.loads(out.read_text())["metadata"]
    assert saved["fabric_extrapolation"][0]["measured_from_bytes"] == GIB


def test_predict_on_a_covering_sweep_does_not_warn(cli, tmp_path):
    sizes = 2.0 ** np.arange(10, 27)  # 1K .. 64M covers 5760 B .. 45 MB within 2x
    rows = [{"collective": c, "msg_bytes": s, "ranks": 2, "time_us_p50": 20 + s / 2e4}
            for c in ("all_reduce", "all_gather", "send_recv") for s in sizes]
    sweep = tmp_path / "cover.csv"
    pd.DataFrame(rows).to_csv(sweep, index=False)
    result = cli("predict", "gpt-oss-120b", "--fabric", sweep, "--batch", "1,128", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["fabric_extrapolation"] == [] and result.stderr == ""


def test_explain_json_carries_the_warnings(cli):
    result = cli("explain", "gpt-oss-120b", "--fabric", GB_LOG, "--batch", "8", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {e["collective"] for e in doc["fabric_extrapolation"]} >= {"all_reduce", "all_gather"}
    assert "priced all_reduce" in result.stderr


def test_validate_says_a_fit_without_interval():
    # three rows, two distinct sizes: the fit is a line through two points
    frame = pd.DataFrame({"collective": "all_reduce", "msg_bytes": [1e6, 1e6, 4e6], "ranks": 2,
                          "time_us_p50": [100.0, 101.0, 400.0], "busbw_gbps": [10.0, 9.9, 10.0]})
    found = assess(frame, [], parse_link("200gbe"), "gloo")
    assert len(found.warnings) == 1 and "fitted on 2 sizes" in found.warnings[0]


def test_model_report_says_how_far_the_fit_holds(tmp_path):
    from commbench.report import model_report

    said = []
    path = model_report("gpt-oss-120b", "dgx-spark", str(GB_LOG), tmp_path / "r", ["balanced"], (1, 8),
                        warnings_out=said)
    md = path.read_text()
    assert "How far the fabric fit holds" in md and any("priced all_reduce" in w for w in said)
    assert warnings(load_fabric(str(GB_LOG))) == []  # a fresh model has priced nothing
