"""Reports from small data: the files, the tables' contents and the regenerate command."""

import re
import shlex

import numpy as np
import pandas as pd
import pytest

from commbench.predict.grid import predict_grid
from commbench.fabric import load_fabric
from commbench.predict.hardware import load_hardware
from tests.conftest import ROOT


def test_model_report_files_and_tables(cli, tmp_path):
    out = tmp_path / "llama"
    result = cli("report", "llama-3.1-8b-instruct", "--hardware", "dgx-spark", "--scenario", "balanced",
                 "--batch", "1,128", "--out", out)
    assert result.exit_code == 0, result.output
    for stem in ("tokps_vs_batch", "breakdown", "busbw_vs_size"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
        assert (out / f"{stem}.csv").exists()
    md = (out / "report.md").read_text()
    assert f"commbench report llama-3.1-8b-instruct --hardware dgx-spark --scenario balanced --batch 1,128 --out {out}" in md
    assert "ISL 1024 / OSL 1024" in md and "ROUTING_ZIPF_EXPONENT" in md
    # the plotted data: 2 modes x 2 batches on the profile's fabric and on the comparison fabric
    data = pd.read_csv(out / "tokps_vs_batch.csv")
    hw = load_hardware("dgx-spark")  # its default fabric (spark-hoststaged) and the first it compares with
    assert len(data) == 8 and set(data.fabric) == {"spark-hoststaged", "spark-200gbe"} == {hw.fabric, hw.compare_fabrics[0]}
    grid = predict_grid(["llama-3.1-8b-instruct"], hw, load_fabric("spark-hoststaged"), ["tp", "pp"], [1, 128], ["balanced"])
    ours = data[data.fabric == "spark-hoststaged"].sort_values(["batch", "mode"]).output_tok_s.to_numpy()
    assert np.allclose(ours, grid.sort_values(["batch", "mode"]).output_tok_s.to_numpy())
    # the ratio table row for batch 128 is PP tok/s / TP tok/s
    tp, pp = (float(grid[(grid.batch == 128) & (grid["mode"] == m)].output_tok_s.iloc[0]) for m in ("tp", "pp"))
    row = next(line for line in md.splitlines() if line.startswith("| balanced | 128 |"))
    assert f"{pp / tp:,.2f}" in row
    # breakdown bars sum to the time per output token
    bars = pd.read_csv(out / "breakdown.csv")
    per_token = bars.filter(like="_ms_per_token").sum(axis=1)
    assert np.allclose(per_token, 1e3 / bars.output_tok_s, rtol=1e-6)


def test_sweep_report_fits_and_judges(cli, tmp_path):
    sizes = np.array([2.0**k for k in range(3, 25)])
    t_us = (40e-6 + sizes / 0.12e9) * 1e6
    sweep = pd.DataFrame({"collective": "all_reduce", "msg_bytes": sizes, "ranks": 2, "time_us_p50": t_us,
                          "algbw_gbps": sizes / t_us / 1e3, "busbw_gbps": sizes / t_us / 1e3, "wrong": 0})
    path = tmp_path / "sweep.csv"
    sweep.to_csv(path, index=False)
    out = tmp_path / "fabric"
    result = cli("report", "--sweep", path, "--expect", "1gbit", "--out", out)
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert (out / "busbw_vs_size.png").exists()
    fit_row = next(line for line in md.splitlines() if line.startswith("| all_reduce |"))
    assert re.search(r"\| 40 \| 0\.12 \|", fit_row), fit_row  # alpha 40 us, busbw 0.12 GB/s recovered
    assert "Verdict against 1gbit: PASS" in md and "Measured, not predicted" in md  # 0.12 GB/s is 96% of 1 Gbit/s
    assert f"commbench report --sweep {path} --expect 1gbit --out {out}" in md
    cli("report", "--sweep", path, "--expect", "4gbit", "--out", out)
    assert "Verdict against 4gbit: FAIL" in (out / "report.md").read_text()


def test_report_needs_a_model_or_a_sweep(cli, tmp_path):
    result = cli("report", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "give a MODEL" in result.output
    assert not (tmp_path / "x").exists()


REPORTS = ROOT / "reports"


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in REPORTS.glob("*/report.md")))
def test_committed_example_regenerates_with_its_printed_command(cli, folder, tmp_path, monkeypatch):
    md = (REPORTS / folder / "report.md").read_text()
    command = md.split("```\n", 2)[1].splitlines()[0]
    args = shlex.split(command)
    assert args[:2] in (["commbench", "report"], ["commbench", "accuracy"])
    out_at = args.index("--out" if "--out" in args else "--report")
    args[out_at + 1] = str(tmp_path / folder)
    monkeypatch.chdir(ROOT)  # the printed command runs from the repository root
    result = cli(*args[1:])
    assert result.exit_code == 0, result.output
    for table in sorted((REPORTS / folder).glob("*.csv")):
        committed, fresh = pd.read_csv(table), pd.read_csv(tmp_path / folder / table.name)
        pd.testing.assert_frame_equal(committed, fresh, check_exact=False, rtol=1e-6)


def test_model_report_with_measured_sweep_and_replay(cli, tmp_path):
    out = tmp_path / "gpt"
    result = cli("report", "gpt-oss-120b", "--scenario", "balanced", "--batch", "1,128",
                 "--sweep", REPORTS / "data" / "loopback-gloo-all_reduce.csv",
                 "--replay", REPORTS / "data" / "replay-gpt-oss-120b-tp-b128-gloo.csv", "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "replay_sites.png").exists()
    replay = pd.read_csv(out / "replay_sites.csv")
    # the decode step replays 73 all-reduces of [128, 2880] bf16 and one logits all-gather
    decode = replay[(replay.phase == "decode") & (replay.site != "step")]
    assert decode.calls.sum() == 74
    assert set(decode[decode.collective == "all_reduce"].msg_bytes) == {128 * 2880 * 2}
    assert "## Replayed communication" in (out / "report.md").read_text()


def test_sweep_report_refuses_wrong_rows_unless_allowed_and_says_when_metadata_is_missing(cli, tmp_path):
    """Issue 24: a fabric report fits and judges, so rows whose check failed (wrong > 0) are refused as
    fabric fit and validate refuse them; a CSV with no .meta.json is not described as a commbench sweep on host ?."""
    sizes = [8 * 4**k for k in range(6)]
    frame = pd.DataFrame({"collective": "all_reduce", "msg_bytes": sizes, "ranks": 2,
                          "time_us_p50": [30 + s / 1e3 for s in sizes], "wrong": [0, 0, 3, 0, 0, 0]})
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "rep"
    refused = cli("report", "--sweep", path, "--out", out)
    assert refused.exit_code == 2 and "1 of 6 rows have wrong values" in refused.output and "msg_bytes 128" in refused.output
    assert "--allow-wrong" in refused.output and not out.exists()
    allowed = cli("report", "--sweep", path, "--allow-wrong", "--out", out)
    assert allowed.exit_code == 0, allowed.output
    md = (out / "report.md").read_text()
    assert "a table without its metadata (no bad.csv.meta.json beside it)" in md
    assert "on host ?" not in md and f"--sweep {path} --allow-wrong --out {out}" in md
