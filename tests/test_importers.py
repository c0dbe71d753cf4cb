"""nccl-tests and OSU logs read as sweeps: written here in each tool's exact format from a known
alpha and beta, which the fit must recover; broken logs get one line and exit 2."""

import pytest

ALPHA_US, BUSBW_GBPS = 30.0, 20.0  # t(S) = alpha + S x busbw factor / busbw
SIZES = [2**k for k in range(3, 28)]


def _nccl_tests_log(collective="all_reduce", ranks=2, footer=True, rows=SIZES):
    factor = {"all_reduce": 2 * (ranks - 1) / ranks, "all_gather": (ranks - 1) / ranks}[collective]
    lines = [f"# Collective test starting: {collective}_perf",
             "# nThread 1 nGpus 1 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 "
             "validation: 1 graph: 0", "#", "# Using devices"]
    lines += [f"#  Rank  {r} Group  0 Pid  {1000 + r} on     spark{r + 1} device  0 [0x01] NVIDIA GB10" for r in range(ranks)]
    lines += ["#", "#                                                              out-of-place                       in-place          ",
              "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong",
              "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       "]
    for s in rows:
        t = ALPHA_US + s * factor / (BUSBW_GBPS * 1e3)
        alg = s / t / 1e3
        t_in = t * 0.98
        lines.append(f"{s:>12} {s // 4:>13}     float     sum      -1 {t:8.2f} {alg:7.2f} {alg * factor:7.2f}      0 "
                     f"{t_in:8.2f} {s / t_in / 1e3:7.2f} {s / t_in / 1e3 * factor:7.2f}      0")
    if footer:
        lines += ["# Out of bounds values : 0 OK", "# Avg bus bandwidth    : 10.5 ", "#"]
    return "\n".join(lines) + "\n"


def _osu_log(alpha_us=2.0, gbps=5.0):
    lines = ["", "# OSU MPI Allreduce Latency Test v7.3", "# Datatype: MPI_CHAR.", "# Size       Avg Latency(us)"]
    lines += [f"{s:<10} {alpha_us + s / (gbps * 1e3):>18.2f}" for s in SIZES[:20]]
    return "\n".join(lines) + "\n"


def test_a_nccl_tests_log_fits_to_the_alpha_and_beta_it_was_made_with(cli, tmp_path):
    import json

    log = tmp_path / "spark-pair.txt"
    log.write_text(_nccl_tests_log())
    result = cli("fabric", "fit", log, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    big = rows[-1]
    assert big["busbw_gbps"] == pytest.approx(BUSBW_GBPS, rel=0.02)
    assert rows[0]["alpha_us"] == pytest.approx(ALPHA_US, rel=0.05)
    from commbench.importers import read_sweep

    frame, meta, source = read_sweep(log)
    assert meta["ranks"] == 2 and "nccl-tests all_reduce log" in source
    assert frame.time_us_in_place.iloc[-1] == pytest.approx(frame.time_us_p50.iloc[-1] * 0.98, rel=1e-3)


def test_a_four_rank_all_gather_log_keeps_its_rank_count(tmp_path):
    from commbench.fabric import load_fabric

    log = tmp_path / "all_gather_perf.log"
    log.write_text(_nccl_tests_log("all_gather", ranks=4).replace("# Collective test starting: all_gather_perf\n", ""))
    model = load_fabric(str(log))  # the collective from the file name, 4 ranks from the Rank lines
    seg = model.per_collective["all_gather"][-1]
    assert seg.busbw_Bps / 1e9 == pytest.approx(BUSBW_GBPS, rel=0.02)


def test_an_osu_log_fits_and_is_said_to_be_read_as_two_ranks(cli, tmp_path):
    log = tmp_path / "osu.out"
    log.write_text(_osu_log())
    from commbench.fabric import load_fabric

    model = load_fabric(str(log))
    assert "read as 2 ranks" in model.source
    assert model.segments[-1].busbw_Bps / 1e9 == pytest.approx(5.0, rel=0.03)  # all_reduce at n = 2: factor 1
    result = cli("fabric", "validate", "--expect", "100gbe", "--sweep", log)
    assert "read OSU all_reduce log" in result.output and result.exit_code == 1  # 5 GB/s is no 100GbE


@pytest.mark.parametrize("content, message", [
    (_nccl_tests_log(footer=False), "without its '# Avg bus bandwidth' footer"),
    (_nccl_tests_log(rows=[]), "no result rows"),
    ("\n".join(_nccl_tests_log().splitlines()[:4] + _nccl_tests_log().splitlines()[6:]), "without its '# Rank' lines"),
    ("size,time\n8,1\n", "unknown format"),
    ("# OSU MPI Allreduce Latency Test v7.3\n# Size Avg Latency(us)\n", "OSU output with no result rows"),
])
def test_broken_logs_are_one_line_exit_2_and_write_nothing(cli, tmp_path, content, message):
    log = tmp_path / "log.txt"
    log.write_text(content)
    out = tmp_path / "fab.toml"
    result = cli("fabric", "fit", log, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()
