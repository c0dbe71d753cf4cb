"""Shapes of users' logs beyond the first reference set (issue 19): other nccl-tests versions and flags,
other OSU tests and options, launcher prefixes and encodings. Fixtures in tests/fixtures/logs/variants/
are our own numbers in each tool's printed layout (nccl-tests `src/common.cu` / `src/util.cu`, OSU
`c/util/osu_util.c`); every value asserted is read off the fixture by hand, or follows from nccl-tests'
busbw = algbw x 2(n-1)/n (all_reduce) or x (n-1)/n (all_gather, reduce_scatter, alltoall)."""

import bz2
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from commbench import CommbenchError
from commbench.logs import log_runs, read_log, read_sweep
from tests.conftest import read_one

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(__file__).parent / "fixtures" / "logs" / "variants"


def one(name, **kw):
    return read_one(VAR / name, **kw)


def refused(path, **kw) -> str:
    with pytest.raises(CommbenchError) as err:
        read_log(path, **kw)
    message = str(err.value)
    assert "\n" not in message
    return message


def reads_whole_or_one_line(path, whole, where):
    """The first table of the log at `path` equals `whole` (on whole's columns), or the log is refused in one line."""
    try:
        frame = read_log(path)[0].frame
    except CommbenchError as exc:
        assert "\n" not in str(exc)
        return
    assert frame[whole.columns].equals(whole), where


# --- nccl-tests text -------------------------------------------------------------------------------

def test_old_2_12_log_with_error_column_and_no_name_is_inferred_all_reduce():
    t = one("old212_g4_noname_error_col.log")
    f, m = t.frame, t.meta
    assert m["ranks"] == 4 and m["ranks_from"] == "the '# Rank' lines" and m["hosts"] == ["dgx-07"]
    # last row: 33554432 B, 3700.00 us, busbw 13.60 = 9.07 x 1.5 (2(n-1)/n at n = 4); in-place 3737.00
    assert len(f) == 7 and f.msg_bytes.iloc[-1] == 33554432
    assert (f.time_us_p50.iloc[-1], f.busbw_gbps.iloc[-1], f.time_us_in_place.iloc[-1]) == (3700.0, 13.6, 3737.0)
    # the old `error` column is the largest deviation, a failure only above DeltaMaxValue(float) = 1e-5
    assert f.max_error.iloc[-1] == 2e-07 and f.max_error.iloc[0] == 0.0 and set(f.wrong) == {0.0}
    assert m["collective"] == "all_reduce" and m["collective_from"].startswith("inferred from busbw/algbw = 1.499")
    assert m["iters"] == 20 and m["validation"] == 1 and m["avg_busbw_gbps"] == 4.12345
    assert "before 2.17.4" in m["tool_version"] and "inferred" in t.source


def test_old_error_column_above_the_type_tolerance_is_wrong(tmp_path):
    text = (VAR / "old212_g4_noname_error_col.log").read_text()
    bad = tmp_path / "old.log"  # the last row's out-of-place error 2e-07 -> 3e-02: above float's 1e-5
    bad.write_text(text.replace("13.60   2e-07", "13.60   3e-02"))
    f = read_log(bad)[0].frame
    assert f.wrong.tolist() == [0.0] * 6 + [1.0] and f.wrong_in_place.iloc[-1] == 0.0 and f.max_error.iloc[-1] == 0.03
    assert "#wrong above 0 (results failed validation) at 33554432 B" in read_log(bad)[0].meta["notes"]
    bad.write_text(text.replace("9.07   13.60   2e-07", "9.07   13.60  2e-07*"))  # an asterisk: nccl-tests' own verdict
    f = read_log(bad)[0].frame
    assert f.wrong.iloc[-1] == 1.0 and f.max_error.iloc[-1] == 2e-07 and f.wrong.iloc[-2] == 0.0


def test_compressed_logs_read_as_the_log_and_a_broken_one_is_one_line(tmp_path):
    t = one("old212_g4_noname_error_col.log.gz")
    assert t.meta["ranks"] == 4 and t.frame.busbw_gbps.iloc[-1] == 13.6
    xz = tmp_path / "run.log.bz2"
    xz.write_bytes(bz2.compress((VAR / "old212_g4_noname_error_col.log").read_bytes()))
    assert read_log(xz)[0].frame.time_us_p50.iloc[-1] == 3700.0
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes((VAR / "old212_g4_noname_error_col.log.gz").read_bytes()[:60])
    assert "gzip-compressed but does not decompress" in refused(cut)


def test_reduce_scatter_is_inferred_from_its_op_and_gather_family_without_one_is_refused():
    t = one("v213_graph0_reducescatter_sum_8r_noname.txt")
    # 268435456 B in 15800.00 us: algbw 16.99, busbw 14.87 = 16.99 x 7/8, redop sum, 8 Rank lines
    assert t.meta["collective"] == "reduce_scatter" and "redop sum" in t.meta["collective_from"]
    assert t.meta["ranks"] == 8 and t.frame.busbw_gbps.iloc[-1] == 14.87 and t.frame.time_us_p50.iloc[-1] == 15800.0
    assert set(t.frame.redop) == {"sum"}
    # the user naming another collective than the one the ratio and the op identify: one line
    assert "--collective all_gather disagrees with the log" in refused(
        VAR / "v213_graph0_reducescatter_sum_8r_noname.txt", collective="all_gather")
    same = one("v213_gatherfamily_none_8r_noname.txt", collective="all_gather")
    assert same.meta["collective_from"] == "--collective (the log does not say)" and same.frame.busbw_gbps.iloc[-1] == 14.87


def test_two_rank_runs_are_never_inferred(tmp_path):
    # at n = 2 every factor is 1 (all_reduce, broadcast, sendrecv, reduce): nothing to tell them apart
    text = (VAR / "all_reduce_perf_crlf_bom_tabs.log").read_bytes()
    noname = tmp_path / "win.log"
    noname.write_bytes(text)
    assert "busbw = algbw: broadcast, sendrecv, or 2 ranks" in refused(noname)


def test_broadcast_root_column_and_S_1_timestamps():
    t = one("v2178_broadcast_root0_S1_4r.log")
    f, m = t.frame, t.meta
    assert m["collective"] == "broadcast" and m["ranks"] == 4 and m["hosts"] == ["bx-1", "bx-2"]
    # root 0 is not a figure: time 1500.00, busbw = algbw 11.18, in-place 1500.50
    assert (f.time_us_p50.iloc[-1], f.busbw_gbps.iloc[-1], f.time_us_in_place.iloc[-1]) == (1500.0, 11.18, 1500.5)
    assert list(f["count"]) == [4096, 262144, 16777216] and set(f.timestamp) == {"2026-03-04 11:22:33"}
    assert m["tool_version"] == "2.17.8" and m["nccl_version"] == "2.26.3"  # nccl-library=22603


def test_programs_commbench_lacks_are_refused_and_skipped_by_collective():
    path = VAR / "slurm_4programs_srun_l_16r.out"
    assert [r.collective for r in log_runs(path)] == ["reduce_perf", "hypercube_perf", "scatter_perf", "all_reduce"]
    message = refused(path)
    assert "reduce_perf run 1/4: commbench has no 'reduce' collective" in message and "--run N" in message
    t = one("slurm_4programs_srun_l_16r.out", collective="all_reduce")  # module noise, `11: ` labels skipped
    assert t.meta["ranks"] == 16 and t.meta["hosts"] == ["cn101", "cn102"] and t.meta["run"] == 4
    assert (t.frame.time_us_p50.iloc[-1], t.frame.busbw_gbps.iloc[-1]) == (2400.0, 13.11)
    assert "is not in the file" in refused(path, collective="all_gather")


def test_d_all_gives_one_run_per_type():
    tables = read_log(VAR / "v2178_d_all_allreduce_2r.log")
    assert [t.frame.type.iloc[0] for t in tables] == ["int8", "uint8", "int32", "uint32", "int64", "uint64", "half",
                                                      "float", "double", "bfloat16"]
    last = tables[-1].frame  # bfloat16: 1048576 B = 524288 elements, 59.00 us, 17.77 GB/s
    assert list(last["count"]) == [512, 524288] and (last.time_us_p50.iloc[-1], last.busbw_gbps.iloc[-1]) == (59.0, 17.77)
    assert all(t.meta["avg_busbw_gbps"] == 11.1 for t in tables)  # the one footer ends every type's run
    with pytest.raises(CommbenchError, match=r"holds 10 runs of the same collective .*--run N"):
        read_sweep(VAR / "v2178_d_all_allreduce_2r.log")


def test_o_all_with_N_2_repeats_splits_by_op_and_repeat():
    tables = read_log(VAR / "all_reduce_perf_o_all_N2_G1_4r.txt")
    assert [t.frame.redop.iloc[0] for t in tables] == ["sum", "prod", "max", "min", "avg"] * 2
    assert tables[3].frame.time_us_p50.iloc[0] == 430.0 and tables[5].frame.time_us_p50.iloc[0] == 401.0
    # several runs: the file name is not trusted, the ratio 14.63 / 9.75 = 1.5 at 4 ranks is
    assert tables[3].meta["collective"] == "all_reduce" and tables[3].meta["collective_from"].startswith("inferred")


def test_pdsh_host_prefixes_are_stripped():
    t = one("pdsh_host_prefix_allgather_8r.txt")
    assert t.meta["collective"] == "all_gather" and t.meta["ranks"] == 8 and t.meta["hosts"] == ["node-01", "node-02"]
    assert (t.frame.busbw_gbps.iloc[-1], t.frame.time_us_in_place.iloc[-1]) == (19.57, 23999.5)
    assert t.meta["command"].startswith("mpirun -np 8 -H node-01:4,node-02:4")


@pytest.mark.parametrize("name", ["all_reduce_perf_crlf_bom_tabs.log", "ansi_colour_prompt_allreduce_g2.log"])
def test_crlf_bom_tabs_and_colour_codes(name):
    t = one(name)
    assert t.meta["ranks"] == 2 and t.meta["iters"] == 20  # the header line after the BOM is read
    assert list(t.frame.msg_bytes) == [8192, 524288, 33554432]
    assert (t.frame.time_us_p50.iloc[-1], t.frame.busbw_gbps.iloc[-1], t.frame.time_us_in_place.iloc[-1]) == (
        4100.0, 8.18, 4101.0)


def test_utf16_log_from_powershell(tmp_path):
    path = tmp_path / "all_reduce_perf_ps.log"
    path.write_bytes((VAR / "all_reduce_perf_crlf_bom_tabs.log").read_text(encoding="utf-8-sig").encode("utf-16"))
    assert read_log(path)[0].frame.busbw_gbps.iloc[-1] == 8.18


@pytest.mark.parametrize("name, procs", [("cmd_mpirun_H_slots_no_np.log", "16 processes x -t 1 -g 1"),
                                         ("cmd_srun_t30_N2_tpn8.log", "16 processes x -t 1 -g 1"),
                                         ("cmd_srun_N2_glued_g2.log", "8 processes x -t 1 -g 2")])
def test_ranks_from_the_echoed_launcher(name, procs):
    t = one(name)
    # busbw 43.39 / algbw 23.14 = 1.875 = 2(n-1)/n at n = 16 agrees with the launcher's count
    assert t.meta["ranks"] == 16 and t.meta["ranks_from"] == f"the echoed command ({procs})"
    assert (t.frame.time_us_p50.iloc[-1], t.frame.busbw_gbps.iloc[-1]) == (2900.0, 43.39)


def test_kubectl_timestamps_tag_output_and_I_1_per_iteration_columns():
    t = one("kubectl_timestamps_tag_output_I1_M1_wrong_16r.log")
    last, m = t.frame.iloc[-1], t.meta
    assert m["collective"] == "all_reduce" and m["ranks"] == 16 and m["hosts"] == ["trn-0", "trn-1"]
    assert m["tool_version"] == "2.19.4" and m["iters"] == 50 and m["command"].startswith("mpirun --allow-run-as-root")
    # 134217728 B: out-of-place 1020.00 us (min 1001.00, max 1100.00, p99 1090.00, cv 1.5); the in-place time is
    # the 9th figure, 1025.00, with p99 1101.00; busbw 246.72 = 131.59 x 30/16
    assert (last.time_us_p50, last.time_us_min, last.time_us_max, last.time_us_p99, last.cv_pct) == (
        1020.0, 1001.0, 1100.0, 1090.0, 1.5)
    assert (last.time_us_in_place, last.time_us_p99_in_place, last.busbw_gbps) == (1025.0, 1101.0, 246.72)
    assert m["notes"] == ["#wrong above 0 (results failed validation) at 16777216 B"]  # the row with #wrong 3


def test_a_run_that_failed_midway_names_the_failure_and_partial():
    path = VAR / "all_reduce_perf_failed_midway_4r.log"
    message = refused(path)
    assert "the run failed" in message and "Test NCCL failure common.cu:1005" in message and "--partial" in message
    t = read_log(path, partial=True)[0]
    assert t.meta["complete"] is False and list(t.frame.time_us_p50) == [60.0, 150.0, 520.0]


def test_compressed_json_with_a_byte_order_mark():
    t = one("nccltests_J_v2_reduce_scatter_bom.json.gz")
    last = t.frame.iloc[-1]
    # args[0] reduce_scatter_perf; 8 devices (processes); 268435456 B in 3100.0 us, bus_bw 75.77 = 86.59 x 7/8
    assert t.meta["collective"] == "reduce_scatter" and t.meta["ranks"] == 8 and t.meta["hosts"] == ["js-0", "js-1"]
    assert (last.time_us_p50, last.busbw_gbps, last.time_us_in_place) == (3100.0, 75.77, 3105.0)
    assert t.meta["nccl_version"] == "2.27.7" and t.meta["avg_busbw_gbps"] == 100.5


def test_a_row_split_by_nccl_debug_info_is_joined_back():
    # NCCL's first-launch INFO line lands after the row's head: `... sum` + INFO, figures on the next line
    t = one("old211_socket_info_splits_first_row_2r.txt")
    f = t.frame
    assert list(f.msg_bytes) == [8, 1024, 131072, 16777216] and (f.time_us_p50.iloc[0], f.time_us_in_place.iloc[0]) == (
        70.1, 70.5)
    assert t.meta["collective"] == "all_reduce" and t.meta["collective_from"] == "the echoed command"
    assert t.meta["hosts"] == ["ip-10-0-0-5", "ip-10-0-0-6"] and t.meta["nccl_version"] == "2.11.4+cuda11.4"
    g = one("v2183_alltoall_g8_info_splits_first_row.log")  # `-1host:pid:tid [0] NCCL INFO`, a second INFO line
    first = g.frame.iloc[0]
    assert g.meta["ranks"] == 8 and len(g.frame) == 3
    assert (first.msg_bytes, first.time_us_p50, first.busbw_gbps, first.time_us_in_place) == (1048576, 30.0, 30.58, 31.0)


def test_single_size_N_3_repeats_are_three_runs():
    tables = read_log(VAR / "all_gather_single_size_N3_2r.log")  # -b 1G -e 1G -N 3: minBytes = maxBytes
    assert [t.frame.time_us_p50.iloc[0] for t in tables] == [45000.0, 45500.0, 44800.0]
    assert all(len(t.frame) == 1 and t.meta["avg_busbw_gbps"] == 11.9 for t in tables)


# --- OSU / OMB-Py ----------------------------------------------------------------------------------

def test_osu_allreduce_m_range_and_allgather_full_under_srun():
    t = one("osu562_allreduce_m_range_np16.txt")
    assert t.meta["ranks"] == 16 and list(t.frame.msg_bytes) == [1024, 4096, 16384, 65536]
    assert t.frame.time_us_p50.iloc[-1] == 160.33
    g = one("osu59_allgather_full_srun_N2x4.out")  # srun -N 2 --ntasks-per-node=4: 8 ranks
    last = g.frame.iloc[-1]
    assert g.meta["ranks"] == 8 and last.osu_size_bytes == 4096 and last.msg_bytes == 4096 * 8
    assert (last.time_us_p50, last.time_us_rank_min, last.time_us_rank_max, last.iterations) == (19.85, 18.02, 21.77, 1000)


@pytest.mark.parametrize("name, test", [("osu_mbw_mr_v563.txt", "Multiple Bandwidth / Message Rate"),
                                        ("osu_multi_lat_v563.txt", "Multi Latency"),
                                        ("osu_put_latency_v57.txt", "Put Latency")])
def test_osu_tests_commbench_does_not_read_are_named(name, test):
    message = refused(VAR / name)
    assert f"{test} Test: commbench reads" in message and "osu_latency" in message


def test_osu_device_and_host_buffers():
    d = one("osu_latency_cuda_DD_v563.txt")
    assert "DEVICE (D)" in d.meta["buffers"] and d.frame.time_us_p50.iloc[-1] == 95.62 and len(d.frame) == 2
    h = one("osu_latency_rocm_HH_v74.txt")  # a ROCm build run with host buffers
    assert "HOST (H)" in h.meta["buffers"] and h.meta["datatype"] == "MPI_CHAR" and h.frame.time_us_p50.iloc[-1] == 410.26


def test_osu_validation_column():
    t = one("osu73_allreduce_validation_np4.txt")
    assert t.meta["ranks"] == 4 and list(t.frame.wrong) == [0.0, 0.0, 1.0] and t.frame.time_us_p50.iloc[-1] == 6.88
    assert "validation (-c) printed Fail at OSU size 1024 B" in t.meta["notes"] and t.meta["datatype"] == "MPI_INT"
    b = one("osu73_bcast_full_validation_np4.txt")
    last = b.frame.iloc[-1]
    assert (last.time_us_p50, last.time_us_rank_min, last.time_us_rank_max, last.iterations, last.wrong) == (
        3.40, 3.01, 3.95, 1000, 0.0)


def test_ombpy_bandwidth_and_allreduce():
    bw = one("ombpy_bw_numpy.txt")
    assert bw.meta["tool"] == "OMB-Py" and bw.frame.bandwidth_MBps.iloc[-1] == 6120.44 and "time_us_p50" not in bw.frame
    ar = one("ombpy_allreduce_np8.txt")
    last = ar.frame.iloc[-1]
    assert ar.meta["ranks"] == 8 and (last.time_us_p50, last.time_us_rank_min, last.time_us_rank_max) == (18.75, 17.90, 19.66)


def test_a_file_with_osu_then_nccl_tests_gives_both_runs():
    path = VAR / "mixed_osu_then_nccltests.log"
    osu, nccl = read_log(path)
    assert osu.meta["tool"] == "OSU" and list(osu.frame.time_us_p50) == [4.44, 5.55] and osu.meta["ranks"] == 2
    assert nccl.meta["tool"] == "nccl-tests" and nccl.meta["run"] == 2 and nccl.meta["runs"] == 2
    assert (nccl.frame.time_us_p50.iloc[-1], nccl.frame.busbw_gbps.iloc[-1]) == (320.0, 13.11)
    assert "run 2/2" in nccl.source
    with pytest.raises(CommbenchError, match="--run N"):
        read_sweep(path)


def test_osu_under_srun_labels_with_open_mpi_help_messages_between_rows():
    t = one("osu_alltoall_srun_l_ompi_help_message.txt")
    # `1 more process has sent help message ...` starts with a digit: not a row; srun -n 32: 32 ranks
    assert t.meta["ranks"] == 32 and list(t.frame.osu_size_bytes) == [1, 2] and list(t.frame.msg_bytes) == [32, 64]
    assert list(t.frame.time_us_p50) == [10.2, 10.4] and list(t.frame.time_us_rank_max) == [11.3, 11.6]


def test_an_osu_row_with_more_figures_than_its_header_is_refused(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("# OSU MPI Latency Test v7.1\n# Size          Latency (us)\n8     2.0    2.5\n")
    assert "has 2 figures, the header 'avg' 1" in refused(path)


# --- no traceback, whatever the cut -----------------------------------------------------------------

FUZZED = ["old212_g4_noname_error_col.log", "old211_socket_info_splits_first_row_2r.txt", "kubectl_timestamps_tag_output_I1_M1_wrong_16r.log", "v2178_broadcast_root0_S1_4r.log", "slurm_4programs_srun_l_16r.out",
          "mixed_osu_then_nccltests.log", "osu73_bcast_full_validation_np4.txt", "pdsh_host_prefix_allgather_8r.txt"]


@pytest.mark.parametrize("name", FUZZED)
def test_cut_at_every_line_and_mid_line_is_read_or_one_line(tmp_path, name):
    lines = (VAR / name).read_bytes().splitlines(keepends=True)
    path = tmp_path / name
    for n in range(len(lines) + 1):
        for tail in (b"", lines[n][: len(lines[n]) // 2] if n < len(lines) else b""):
            path.write_bytes(b"".join(lines[:n]) + tail)
            for partial in (None, True):
                try:
                    for table in read_log(path, partial=partial):
                        assert len(table.frame) > 0
                except CommbenchError as exc:
                    assert "\n" not in str(exc)


def test_check_tool_outputs_on_the_variants_has_no_bug_row():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_tool_outputs.py"), str(VAR)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "\tBUG\t" not in out.stdout and not out.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in out.stdout.splitlines()[1:]}
    assert rows["old212_g4_noname_error_col.log.gz"][2] == "all_reduce"
    assert rows["slurm_4programs_srun_l_16r.out [4/4]"][5] == "busbw 13.11 GB/s (2400 us)"


# --- vllm bench serve / benchmark_serving.py results --------------------------------------------------

BENCH = Path(__file__).parent / "fixtures" / "vllm_bench"


def test_benchmark_serving_0_7_goodput_percentiles_and_nan():
    from commbench.predict.published import load_figures

    rows = load_figures(BENCH / "variant_benchmark_serving_073_goodput_e2el_nan.json").set_index("metric")
    # --percentile-metrics ttft,tpot,itl,e2el: mean/median/p99 of each; p99_tpot_ms is NaN (absent), p90 and
    # the std (NaN) are not predicted; `request_goodput:` is not a metric; no max_output_tokens_per_s yet
    stats = {f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "p99")} - {"p99_tpot_ms"}
    assert set(rows.index) == {"output_throughput", "total_token_throughput", "request_throughput"} | stats
    # 65536 / 64 = 1024 in, 8192 / 64 = 128 out, --max-concurrency 16, tp from --metadata
    assert set(rows.isl) == {1024} and set(rows.osl) == {128} and set(rows.batch) == {16} and set(rows.tp) == {2}
    assert rows.loc["p99_e2el_ms", "value"] == 8350.0 and rows.loc["output_throughput", "value"] == 204.8


def test_current_save_detailed_with_a_byte_order_mark():
    from commbench.predict.published import load_figures

    rows = load_figures(BENCH / "variant_current_save_detailed_bom_indent.json").set_index("metric")
    assert len(rows) == 13 and set(rows.batch) == {8} and set(rows.isl) == {1024} and set(rows.osl) == {256}
    assert rows.loc["max_output_tokens_per_s", "value"] == 260.0  # the per-request lists are not metrics


@pytest.mark.parametrize("name, words", [
    ("variant_benchmark_serving_063_no_concurrency_key.json", "no max_concurrency key (a benchmark_serving.py from "
                                                              "before --max-concurrency) (request_rate inf)"),
    ("variant_append_three_middle_open_loop.json", "document 2 of 3: max_concurrency = None (request_rate 4.0)"),
    ("variant_all_failed.json", "completed = 0")])
def test_vllm_results_commbench_cannot_price_are_one_line(name, words):
    from commbench.predict.published import load_figures

    with pytest.raises(CommbenchError) as err:
        load_figures(BENCH / name)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_vllm_result_given_as_a_sweep_is_named():
    assert "a `vllm bench serve` result" in refused(BENCH / "variant_current_save_detailed_bom_indent.json")


# --- launcher lines: the process count each launcher's own options give --------------------------------

@pytest.mark.parametrize("line, procs", [
    ("srun -c 8 -n 2 osu_allreduce", 2),  # srun -c is CPUs per task, not a process count
    ("srun -t 30 -c 8 -N 2 --ntasks-per-node=4 osu_allreduce", 8),
    ("mpirun -c 16 osu_allreduce", 16),  # Open MPI: -c is -np
    ("jsrun -n 4 -a 6 -c 7 -g 1 ./osu_allreduce", 24),  # 4 resource sets x 6 tasks; -c is CPUs per set
    ("jsrun --nrs=8 osu_allreduce", 8),
    ("flux run -N 2 -n 16 osu_allreduce", 16),
    ("aprun -n 64 -N 32 osu_allreduce", 64),  # aprun -N is PEs per node, -n the total
    ("mpirun --map-by ppr:4:node -H a,b osu_allreduce", 8),
    ("mpirun -H a:8,b:8 osu_allreduce", 16),  # Open MPI runs as many as the slots
    ("$ mpirun -np 4 osu_allreduce", 4),  # a shell prompt is not a wrapper
    ("ibrun osu_allreduce", None),  # the count is in the batch job, not the line
    ("!mpirun -np 4 osu_allreduce", 4),  # a Jupyter cell's shell escape
])
def test_launcher_process_counts(line, procs):
    import re

    from commbench.logs.common import launcher_processes

    assert launcher_processes(line, re.compile(r"^osu_\w+$"))[0] == procs


def test_osu_headers_with_collapsed_blanks(tmp_path):
    path = tmp_path / "scraped.txt"  # a web page that collapsed runs of blanks: names found in order
    path.write_text("mpirun -np 4 osu_allreduce -f -c\n# OSU MPI Allreduce Latency Test v7.3\n"
                    "# Size Avg Latency(us) Min Latency(us) Max Latency(us) Iterations Validation\n"
                    "4 2.71 2.50 2.90 1000 Pass\n1024 6.88 6.10 7.40 1000 Fail\n")
    f = read_log(path)[0].frame
    assert list(f.time_us_p50) == [2.71, 6.88] and list(f.time_us_rank_max) == [2.9, 7.4] and list(f.wrong) == [0, 1]


def test_a_3_reports_the_maximum_over_ranks():
    t = one("echoed_a3_g4_old.log")  # `-a 3` in the echoed command: nccl-tests reports the max over ranks
    assert t.meta["timing"].startswith("nccl-tests mean per iteration (back-to-back calls, the maximum over ranks (-a 3))")
    assert t.meta["collective_from"] == "the echoed command" and t.meta["ranks"] == 4
    assert "averaged over ranks" in one("old212_g4_noname_error_col.log").meta["timing"]  # the default, -a 1


def test_intel_mpi_and_mpich_rank_prefixes(tmp_path):
    t = one("osu_allreduce_intelmpi_l_prepend_rank.txt")  # `mpirun -l`: `[0] ` before every line, start-up lines too
    assert t.meta["ranks"] == 6 and t.meta["ranks_from"] == "Intel MPI's start-up lines" and t.meta["hosts"] == ["icx-1", "icx-2"]
    assert list(t.frame.time_us_p50) == [3.31, 7.02, 31.48] and list(t.frame.iterations) == [1000, 1000, 100]
    path = tmp_path / "prepend.log"  # MPICH -prepend-rank on a nccl-tests log
    path.write_text("".join("[0] " + line for line in (VAR / "v2178_broadcast_root0_S1_4r.log").read_text().splitlines(True)))
    b = read_log(path)[0]
    assert b.meta["collective"] == "broadcast" and b.meta["ranks"] == 4 and b.frame.busbw_gbps.iloc[-1] == 11.18


def test_a_large_wrong_count_in_g_notation_stays_a_count(tmp_path):
    path = tmp_path / "bcast.log"  # 2.13+ prints #wrong with %g: 1048576 wrong elements -> `1.04858e+06`
    text = (VAR / "v2178_broadcast_root0_S1_4r.log").read_text()
    path.write_text(text.replace("11.18       0  1500.50", "11.18  1.04858e+06  1500.50"))
    t = read_log(path)[0]
    assert t.frame.wrong.iloc[-1] == 1048580.0 and "max_error" not in t.frame
    assert "#wrong above 0 (results failed validation) at 16777216 B" in t.meta["notes"]


def test_a_hard_wrapped_copy_is_joined_where_one_join_fits():
    folded = one("terminal_wrapped_rows_I1_16r.log").frame  # rows cut at column 100, inside `55.00` and `190.00`
    whole = one("kubectl_timestamps_tag_output_I1_M1_wrong_16r.log").frame
    assert folded.equals(whole[folded.columns]) and folded.time_us_max.iloc[0] == 55.0


@pytest.mark.parametrize("name", ["kubectl_timestamps_tag_output_I1_M1_wrong_16r.log", "v2178_broadcast_root0_S1_4r.log",
                                  "old211_socket_info_splits_first_row_2r.txt"])
def test_folded_at_any_width_reads_the_same_or_is_one_line(tmp_path, name):
    from commbench.logs.common import clean_lines

    lines, whole = clean_lines((VAR / name).read_text()), one(name).frame
    path = tmp_path / name
    for width in range(45, 200, 6):
        for trim in (False, True):  # a page that also drops the blanks at each cut
            out = []
            for line in lines:
                pieces = [line[i:i + width] for i in range(0, len(line), width)] if line[:12].strip().isdigit() else [line]
                out += [p.rstrip() for p in pieces] if trim else pieces
            path.write_text("\n".join(out) + "\n")
            reads_whole_or_one_line(path, whole, (width, trim))


def test_an_unreadable_file_is_one_line(monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert "not readable (Permission denied)" in refused(VAR / "ombpy_bw_numpy.txt")


def test_concatenated_json_documents_are_runs():
    first, second = read_log(VAR / "nccltests_J_two_documents_cat.json")  # `cat a.json b.json > all.json`
    assert (first.meta["run"], second.meta["run"], second.meta["runs"]) == (1, 2, 2)
    # the second document: 268435456 B in 3200.0 us, bus_bw 73.40 = 83.89 x 7/8
    assert second.frame.time_us_p50.iloc[-1] == 3200.0 and second.frame.busbw_gbps.iloc[-1] == 73.4
    assert first.frame.time_us_p50.iloc[-1] == 3100.0 and "2 -J JSON documents" in second.meta["notes"][-1]
    with pytest.raises(CommbenchError, match="--run N"):
        read_sweep(VAR / "nccltests_J_two_documents_cat.json")


def test_rank_lines_without_pid_of_the_first_nccl_tests(tmp_path):
    import re

    path = tmp_path / "p100.log"  # 2017-era Rank lines: `#   Rank  0 on dgx1 device  0 [0x06] ...`, no Pid
    path.write_text(re.sub(r"Pid +\d+ ", "", (VAR / "old212_g4_noname_error_col.log").read_text()))
    t = read_log(path)[0]
    assert t.meta["ranks"] == 4 and t.meta["hosts"] == ["dgx-07"] and t.frame.busbw_gbps.iloc[-1] == 13.6


def test_processes_that_each_ran_alone_are_named():
    # srun -l -n 2 of a nccl-tests built without MPI: `0: # nThread ...` and `1: # nThread ...`, Rank 0 each
    message = refused(VAR / "srun_l_without_mpi_two_worlds_of_one.log")
    assert "processes 0, 1 each printed a '# nThread' header: each ran alone" in message


def test_osu_datatype_list_and_a_repeated_sweep_are_runs(tmp_path):
    runs = read_log(VAR / "osu74_allreduce_T_two_datatypes_np4.txt")  # OMB 7 `-T mpi_int,mpi_float`
    assert [(t.meta["datatype"], list(t.frame.time_us_p50)) for t in runs] == [("MPI_INT", [2.4, 5.9]),
                                                                              ("MPI_FLOAT", [2.55, 6.35])]
    path = tmp_path / "again.txt"  # the sizes start over under one header: a second run, never one table
    path.write_text("# OSU MPI Latency Test v5.9\n# Size          Latency (us)\n8   1.50\n64   1.70\n8   1.52\n64   1.71\n")
    assert [list(t.frame.time_us_p50) for t in read_log(path)] == [[1.5, 1.7], [1.52, 1.71]]


def test_a_json_list_of_results_gives_each_its_rows():
    from commbench.predict.published import load_figures

    rows = load_figures(BENCH / "variant_list_of_two_results.json")
    out = rows[rows.metric == "output_throughput"].set_index("batch")["value"]
    assert out[8] == 204.8 and out[4] == pytest.approx(2048 / 18.0)  # the second: 2048 tokens in 18.0 s


def test_a_wrap_with_two_possible_joins_is_refused(tmp_path):
    path = tmp_path / "all_reduce_perf.txt"  # no column header: `... 61.00  17` + `19  0` reads as 8 or as 9 figures
    path.write_text("# nThread 1 nGpus 1 minBytes 1048576 maxBytes 1048576 step: 2(factor) warmup iters: 5 iters: 20\n"
                    "#  Rank  0 Group  0 Pid   100 on a device  0 [0x01] X\n#  Rank  1 Group  0 Pid   200 on b device  0 [0x01] X\n"
                    "     1048576        262144     float     sum      -1    60.00   17.48   17.48       0    61.00   17\n"
                    "19       0\n# Avg bus bandwidth    : 17.3\n")
    assert "the 1048576 B row goes on over the next line(s)" in refused(path)


def test_a_collective_the_ratio_contradicts_is_refused(tmp_path):
    # an all_gather/alltoall log (0.875 = 7/8 at 8 ranks) given as all_reduce (1.750), by option or by file name
    message = refused(VAR / "v213_gatherfamily_none_8r_noname.txt", collective="all_reduce")
    assert "busbw/algbw = 0.875, but all_reduce on 8 ranks" in message and "prints 1.750" in message
    named = tmp_path / "all_reduce_perf.log"
    shutil.copy(VAR / "v213_gatherfamily_none_8r_noname.txt", named)
    assert "(the file name; the '# Rank' lines) prints 1.750" in refused(named)


def test_check_tool_outputs_refuses_a_foreign_table_in_one_row(tmp_path):
    (tmp_path / "parsed.csv").write_text("size,count,type,redop,root,time,algbw,busbw,wrong\n1048576,262144,float,sum,-1,"
                                         "60.0,17.48,17.48,0\n")  # another parser's CSV, not a commbench table
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_tool_outputs.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    row = out.stdout.splitlines()[1].split("\t")
    assert row[1] == "REFUSED" and "a table without collective, msg_bytes, ranks" in row[-1]


def test_an_inf_bandwidth_at_a_zero_time_is_kept_as_printed(tmp_path):
    path = tmp_path / "bcast.log"  # a 0.00 us time prints algbw/busbw `inf`: read as printed, ratios from the rest
    path.write_text((VAR / "v2178_broadcast_root0_S1_4r.log").read_text().replace(
        "    25.00    0.16    0.16       0", "     0.00     inf     inf       0"))
    f = read_log(path)[0].frame
    assert f.time_us_p50.iloc[0] == 0.0 and f.busbw_gbps.iloc[0] == float("inf") and f.busbw_gbps.iloc[-1] == 11.18


def test_json_with_a_bare_inf_from_a_zero_time(tmp_path):
    import re

    text = gzip.decompress((VAR / "nccltests_J_v2_reduce_scatter_bom.json.gz").read_bytes()).decode("utf-8-sig")
    text = re.sub(r'("time": )900.0(,\s*"alg_bw": )[\d.]+(,\s*"bus_bw": )[\d.]+', r"\g<1>0.0\2inf\3inf", text, count=1)
    path = tmp_path / "rs.json"  # %g prints inf unquoted: not JSON until quoted as nccl-tests quotes "nan"
    path.write_text(text)
    f = read_log(path)[0].frame
    assert f.time_us_p50.iloc[0] == 0.0 and f.algbw_gbps.iloc[0] == float("inf") and f.busbw_gbps.iloc[-1] == 75.77


def test_json_collective_the_ratio_contradicts_is_refused(tmp_path):
    import json

    doc = json.loads((Path(__file__).parent / "fixtures" / "logs" / "nccltests_J_v3_per_iter_2proc.json").read_text())
    doc["args"][0] = "./build/mystery"  # no X_perf: the user names it; all_gather's 1/2 at 2 ranks is not all_reduce's 1
    path = tmp_path / "mystery.json"
    path.write_text(json.dumps(doc))
    assert "busbw/algbw = 0.500, but all_reduce on 2 ranks" in refused(path, collective="all_reduce")
    assert read_log(path, collective="all_gather")[0].meta["ranks"] == 2


def test_a_mention_of_osu_in_a_nccl_tests_log_is_not_a_mixed_file(tmp_path):
    path = tmp_path / "bcast.log"
    path.write_text("# note: # OSU MPI tests were skipped on this cluster\n" + (VAR / "v2178_broadcast_root0_S1_4r.log").read_text())
    (t,) = read_log(path)
    assert t.meta["collective"] == "broadcast" and t.frame.busbw_gbps.iloc[-1] == 11.18


def test_nul_padding_after_a_crash_is_not_binary(tmp_path):
    path = tmp_path / "bcast.log"  # a shared file system pads a file a dying node was writing with NUL bytes
    path.write_bytes((VAR / "v2178_broadcast_root0_S1_4r.log").read_bytes() + b"\0" * 4096)
    assert read_log(path)[0].frame.busbw_gbps.iloc[-1] == 11.18
    path.write_bytes(b"\0\1\2" * 400)
    assert "not text (binary data)" in refused(path)


def test_an_info_line_inside_a_figure_or_the_type():
    t = one("info_lines_mid_figure_and_mid_type_4r.log")
    f = t.frame
    # 1048576 B: `60.0` + another host's INFO line + `0  17.48  26.21 ...`: 60.00 us, busbw 26.21 (= 17.48 x 1.5)
    assert list(f.msg_bytes) == [65536, 1048576, 16777216, 268435456] and t.meta["notes"] == []
    assert (f.time_us_p50.iloc[1], f.busbw_gbps.iloc[1], f.time_us_in_place.iloc[1]) == (60.0, 26.21, 61.0)
    # 16777216 B cut inside `float` (`flo` | `at  sum ...`): only `float` gives a whole row: 420.00 us, busbw 59.92
    assert (f.type.iloc[2], f.time_us_p50.iloc[2], f.busbw_gbps.iloc[2]) == ("float", 420.0, 59.92)


def test_an_info_line_anywhere_in_any_row_reads_the_row_or_refuses(tmp_path):
    lines = (VAR / "v2178_broadcast_root0_S1_4r.log").read_text().splitlines()
    lines = ["bx-1:31000:31000 [0] NCCL INFO Bootstrap : Using ib0", *lines]
    whole = read_log(VAR / "v2178_broadcast_root0_S1_4r.log")[0].frame
    path = tmp_path / "bcast.log"
    rows = [i for i, line in enumerate(lines) if line[:12].strip().isdigit()]
    for i in rows:
        for cut in range(1, len(lines[i]), 3):  # another host's INFO line glued at every third column
            info = "bx-2:31002:31060 [0] NCCL INFO Channel 00/0 : 2[0] -> 3[1] via P2P/IPC"
            path.write_text("\n".join(lines[:i] + [lines[i][:cut] + info, lines[i][cut:]] + lines[i + 1:]) + "\n")
            reads_whole_or_one_line(path, whole, (i, cut))


def test_a_row_an_info_line_cut_whose_rest_never_came_is_left_out_and_said(tmp_path):
    lines = (VAR / "v2178_broadcast_root0_S1_4r.log").read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("262144"))
    lines[i] = lines[i][:60] + "bx-2:31002:31060 [0] NCCL INFO Connected all rings"  # the rest is not in the log
    path = tmp_path / "bcast.log"
    path.write_text("\n".join(lines) + "\n")
    t = read_log(path)[0]
    assert list(t.frame.msg_bytes) == [4096, 16777216]
    assert t.meta["notes"] == ["row(s) of 262144 B cut by an NCCL INFO line and not finished in the log: left out"]
