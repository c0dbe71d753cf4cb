"""Fabric: alpha-beta fits against synthetic truth, verdicts and diagnoses, preflight, the CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from commbench.fabric import fit_alpha_beta, fit_piecewise, fit_sweep, load_fabric
from commbench.links import LINKS, parse_link
from commbench.fabric.validate import BANDWIDTH_MIN_FRACTION, judge, preflight

SIZES = np.array([2.0**k for k in range(3, 27)])


def test_fit_recovers_alpha_and_beta_within_its_confidence_intervals():
    rng = np.random.default_rng(1)
    alpha, beta = 35e-6, 12e9
    hits = 0
    for trial in range(40):
        t = (alpha + SIZES / beta) * (1 + 0.03 * rng.standard_normal(len(SIZES)))
        fit = fit_alpha_beta(SIZES, t)
        assert fit.alpha_s == pytest.approx(alpha, rel=0.1)
        assert fit.beta_Bps == pytest.approx(beta, rel=0.05)
        hits += fit.alpha_ci_s[0] <= alpha <= fit.alpha_ci_s[1] and fit.beta_ci_Bps[0] <= beta <= fit.beta_ci_Bps[1]
    assert hits >= 32  # both 95% intervals cover the truth in most trials (expected ~0.9 x 40)


def test_fit_is_exact_on_noiseless_data():
    fit = fit_alpha_beta(SIZES, 5e-6 + SIZES / 20e9)
    assert fit.alpha_s == pytest.approx(5e-6, rel=1e-6)
    assert fit.beta_Bps == pytest.approx(20e9, rel=1e-6)


def test_piecewise_finds_a_protocol_switch():
    # small messages: 20 us + S / 2 GB/s; from 256 KiB on: 150 us + S / 20 GB/s
    t = np.where(SIZES <= 2**18, 20e-6 + SIZES / 2e9, 150e-6 + SIZES / 20e9)
    pieces = fit_piecewise(SIZES, t)
    assert len(pieces) == 2
    (edge, small), (_, large) = pieces
    assert edge == 2**18
    assert small.beta_Bps == pytest.approx(2e9, rel=1e-3) and large.beta_Bps == pytest.approx(20e9, rel=1e-3)
    assert len(fit_piecewise(SIZES, 20e-6 + SIZES / 2e9)) == 1


def test_fit_sweep_converts_algbw_to_busbw_per_collective():
    n = 4
    rows = [{"collective": c, "msg_bytes": s, "ranks": n, "time_us_p50": (10e-6 + s / bw) * 1e6}
            for c, bw in (("all_reduce", 8e9), ("all_gather", 6e9)) for s in SIZES]
    model = fit_sweep(pd.DataFrame(rows))
    assert model.per_collective["all_reduce"][0].busbw_Bps == pytest.approx(8e9 * 2 * 3 / 4, rel=1e-6)
    assert model.per_collective["all_gather"][0].busbw_Bps == pytest.approx(6e9 * 3 / 4, rel=1e-6)
    # the model prices a call back to the same time
    assert model.time_s("all_gather", 2**20, n) == pytest.approx(10e-6 + 2**20 / 6e9, rel=1e-6)


def _sweep(busbw_gbps, small_us):
    return pd.DataFrame({"msg_bytes": SIZES, "time_us_p50": small_us + SIZES / (busbw_gbps * 1e3),
                         "busbw_gbps": SIZES / (small_us * 1e3 + SIZES / busbw_gbps)})


def test_judge_passes_a_healthy_link_and_diagnoses_one_nic_half():
    good = judge(_sweep(23.0, 30.0), LINKS["200gbe"], "nccl")
    assert [b.status for b in good] == ["PASS", "PASS", "PASS"]
    half = judge(_sweep(12.0, 30.0), LINKS["200gbe"], "nccl")
    assert half[2].status == "FAIL"
    assert "PCIe Gen5 x4 half" in half[2].diagnosis and "NCCL_IB_HCA" in half[2].diagnosis
    slow = judge(_sweep(0.124, 450.0), parse_link("4gbit"), "gloo")
    assert slow[2].status == "FAIL" and "1 GbE" in slow[2].diagnosis
    assert judge(_sweep(0.124, 450.0), parse_link("1gbit"), "gloo")[2].status == "PASS"
    assert BANDWIDTH_MIN_FRACTION * 25 > 12  # one NIC half can never pass as 200GbE


def test_preflight_names_a_missing_interface(tmp_path):
    for name, mtu, speed in (("lo", "65536", ""), ("enp1s0", "1500", "10000")):
        d = tmp_path / name
        d.mkdir()
        (d / "mtu").write_text(mtu)
        (d / "operstate").write_text("up")
        (d / "speed").write_text(speed)
    found = preflight(LINKS["200gbe"], "gloo", {"GLOO_SOCKET_IFNAME": "eth9"}, tmp_path)
    fail = [f for f in found if f.status == "fail"]
    assert fail and "no interface 'eth9'" in fail[0].note and "enp1s0" in fail[0].note
    found = preflight(LINKS["200gbe"], "nccl", {"NCCL_SOCKET_IFNAME": "enp1s0", "NCCL_IB_HCA": "rocep1s0f0"}, tmp_path)
    notes = " ".join(f.note for f in found)
    assert "MTU below 9000" in notes and "port reports 10 Gb/s" in notes and "one HCA" in notes


def test_validate_cli_on_a_saved_sweep(cli, tmp_path):
    path = tmp_path / "sweep.csv"
    frame = _sweep(0.124, 450.0).assign(collective="all_reduce", ranks=2, wrong=0, time_us_p99=1.0)
    frame.to_csv(path, index=False)
    ok = cli("fabric", "validate", "--expect", "1gbit", "--sweep", path, "--json")
    doc = json.loads(ok.output)
    assert ok.exit_code == 0 and doc["verdict"] == "PASS"
    # the sweep is 450 us + S / 0.124 GB/s exactly: the fit gives both back
    assert doc["fit"][0]["alpha_us"] == pytest.approx(450, rel=1e-3)
    assert doc["fit"][0]["busbw_gbps"] == pytest.approx(0.124, rel=1e-3)
    bad = cli("fabric", "validate", "--expect", "4gbit", "--sweep", path)
    assert bad.exit_code == 1 and "FAIL" in bad.output and "1 GbE" in bad.output
    wrong = cli("fabric", "validate", "--expect", "2OOgbe", "--sweep", path)
    assert wrong.exit_code == 2 and "unknown link '2OOgbe'" in wrong.output


def test_fit_cli_writes_a_reusable_profile(cli, tmp_path):
    path = tmp_path / "sweep.csv"
    pd.DataFrame({"collective": "all_reduce", "msg_bytes": SIZES, "ranks": 2,
                  "time_us_p50": (40e-6 + SIZES / 3e9) * 1e6}).to_csv(path, index=False)
    out = tmp_path / "mine.toml"
    result = cli("fabric", "fit", path, "--out", out)
    assert result.exit_code == 0, result.output
    model = load_fabric(str(out))
    assert model.segments[0].alpha_s == pytest.approx(40e-6, rel=1e-3)
    assert model.segments[0].busbw_Bps == pytest.approx(3e9, rel=1e-3)  # n = 2: busbw = algbw
    assert math.isinf(model.segments[-1].up_to_bytes)


def test_replay_table_becomes_a_fabric(tmp_path):
    """Each site's in-step time per call is a point; two sizes of all_reduce give an exact line."""
    from commbench.fabric import fit_replay

    alpha, busbw = 300e-6, 1.5e9  # n = 2: all_reduce busbw = algbw
    rows = []
    for phase, size in (("prefill", 47_185_920), ("decode", 737_280)):
        per_call = alpha + size / busbw
        rows += [{"phase": phase, "site": "layer.attn.o_proj", "collective": "all_reduce", "msg_bytes": size,
                  "calls": 36, "measured_us_per_step": 36 * per_call * 1e6},
                 {"phase": phase, "site": "step", "collective": "", "msg_bytes": 0, "calls": 36,
                  "measured_us_per_step": 1.0}]
    model = fit_replay(pd.DataFrame(rows))
    assert model.time_s("all_reduce", 4_000_000, 2) == pytest.approx(alpha + 4e6 / busbw, rel=1e-9)
    path = tmp_path / "replay.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert load_fabric(str(path)).segments[0].busbw_Bps == pytest.approx(busbw, rel=1e-9)


def test_link_from_a_file(tmp_path):
    path = tmp_path / "mylink.toml"
    path.write_text('name = "lab-25g"\nbandwidth_gbps = 3.125\nlatency_us = 4\n')
    link = parse_link(str(path))
    assert (link.name, link.bandwidth_Bps, link.latency_s) == ("lab-25g", 3.125e9, 4e-6)
    with pytest.raises(Exception, match="needs bandwidth_gbps"):
        (tmp_path / "bad.toml").write_text('name = "x"\n')
        parse_link(str(tmp_path / "bad.toml"))


def test_latency_band_judges_the_floor_not_the_scheduler_mode():
    """gloo on a busy 2-core host: p50 on the 3.5 ms scheduler mode, fastest call at 0.4 ms.
    The verdict follows the floor (what the transport can do); a transport whose floor is high fails."""
    from commbench.links import parse_link
    from commbench.fabric.validate import judge

    sizes = np.array([8.0, 64, 1024, 8192, 65536])
    busy = pd.DataFrame({"collective": "all_reduce", "msg_bytes": sizes, "ranks": 2, "time_us_p50": 3500.0,
                         "time_us_min": 400.0 + sizes / 0.125e9 * 1e6, "busbw_gbps": 0.1})
    band = judge(busy, parse_link("1gbit"), "gloo")[0]
    assert band.status == "PASS" and band.measured == pytest.approx(400.0)  # wire time taken off exactly
    assert "fastest call" in band.metric
    slow_floor = busy.assign(time_us_min=busy.time_us_min + 2000.0)
    assert judge(slow_floor, parse_link("1gbit"), "gloo")[0].status == "FAIL"
    assert "p50" in judge(busy.drop(columns="time_us_min"), parse_link("1gbit"), "gloo")[0].metric


def test_a_pass_says_which_bands_it_did_not_measure(cli, tmp_path):
    """A sweep of small sizes only judges the latency band: the PASS line says the middle and
    bandwidth-bound bands had no sizes, so a thin sweep is not read as a whole-fabric pass."""
    path = tmp_path / "small.csv"
    frame = _sweep(23.0, 30.0)
    frame = frame[frame.msg_bytes <= 1024].assign(collective="all_reduce", ranks=2, wrong=0, time_us_p99=1.0)
    frame.to_csv(path, index=False)
    result = cli("fabric", "validate", "--expect", "200gbe", "--sweep", path)
    last = [line for line in result.output.splitlines() if "fabric against" in line][-1]
    assert result.exit_code == 0
    assert last == ("PASS: fabric against 200gbe (1 of 3 bands measured; no sizes in middle, bandwidth-bound: "
                    "the verdict does not cover them)")
