"""nccl-tests text logs in every shape users bring (tests/fixtures/logs: our own numbers, the quirks of
real files): each value asserted here is read off the fixture by hand, or follows from nccl-tests'
own formulas (busbw = algbw x 2(n-1)/n for all_reduce, x (n-1)/n for all_gather/alltoall)."""

import math
import shutil
from pathlib import Path

import pytest

from commbench import CommbenchError
from commbench.logs import read_log, read_sweep
from tests.conftest import read_one

LOGS = Path(__file__).parent / "fixtures" / "logs"


def one(name, **kw):
    return read_one(LOGS / name, **kw)


def test_tag_output_prefixes_inside_rows_and_info_lines_are_stripped():
    t = one("nccltests_tag_output_info_noname.log", collective="all_reduce")
    f = t.frame
    assert t.meta["ranks"] == 4 and t.meta["ranks_from"] == "the '# Rank' lines"
    assert list(f.msg_bytes) == [1024, 16384, 262144, 4194304]
    last = f.iloc[-1]
    # the row is printed in three pieces, each tagged: out-of-place 400.00, in-place 410.00
    assert (last.time_us_p50, last.time_us_in_place, last.busbw_gbps) == (400.0, 410.0, 15.73)
    assert last.busbw_gbps / last.algbw_gbps == pytest.approx(2 * 3 / 4, abs=0.002)  # 4 ranks
    assert t.meta["hosts"] == ["gpu-a", "gpu-b"] and t.meta["nccl_version"] == "2.21.5+cuda12.4"


def test_a_log_that_does_not_name_its_collective_is_inferred_only_where_the_ratio_is_unique(tmp_path):
    t = one("nccltests_tag_output_info_noname.log")
    # 15.73 / 10.49 = 1.5 = 2(n-1)/n at the 4 Rank lines: only all_reduce has a factor above 1
    assert t.meta["collective"] == "all_reduce" and t.meta["collective_from"].startswith("inferred from busbw/algbw")
    assert "n from the '# Rank' lines" in t.meta["collective_from"] and t.meta["assumptions"]
    with pytest.raises(CommbenchError) as err:  # (n-1)/n with no op: all_gather, alltoall, gather or scatter
        read_log(LOGS / "variants" / "v213_gatherfamily_none_8r_noname.txt")
    message = str(err.value)
    assert "\n" not in message and "--collective NAME" in message
    assert "busbw/algbw = 0.875: all_gather or alltoall (no reduction op: not reduce_scatter)" in message  # 14.87 / 16.99
    renamed = tmp_path / "node1_all_reduce_perf.log"  # X_perf anywhere in the name, not only at the start
    shutil.copy(LOGS / "nccltests_tag_output_info_noname.log", renamed)
    t = read_log(renamed)[0]
    assert t.meta["collective"] == "all_reduce" and t.meta["collective_from"] == "the file name"
    with pytest.raises(CommbenchError, match="not in the file"):
        read_log(renamed, collective="all_gather")  # the file says all_reduce: never overridden


def test_old_error_column_with_shell_prompt_and_echoed_command():
    t = one("nccltests_old_error_col_shell_prompt.txt")
    assert t.meta["collective"] == "all_reduce" and t.meta["collective_from"] == "the echoed command"
    assert t.meta["ranks"] == 2 and t.meta["nccl_version"] == "2.11.4+cuda11.4"
    assert t.meta["command"].startswith("mpirun -x NCCL_DEBUG=INFO") and "before 2.17.4" in t.meta["tool_version"]
    f = t.frame
    assert len(f) == 5 and f.wrong.tolist() == [0.0] * 5  # 0e+00 in the old `error` column
    assert (f.time_us_p50.iloc[-1], f.time_us_in_place.iloc[-1]) == (8000.0, 7500.0)


def test_one_process_g4_all_gather_without_redop_skips_zero_byte_rows():
    t = one("nccltests_old_g4_allgather_noredop_zero_rows.log", collective="all_gather")
    f = t.frame
    assert t.meta["ranks"] == 4  # 4 Rank lines of one Pid: -g 4 in one process is 4 ranks
    assert list(f.msg_bytes) == [256, 65536, 16777216]  # the two 0-byte rows (-b 1) are left out
    assert "2 0-byte rows skipped" in t.source and "#wrong N/A" in t.source
    assert f.redop.tolist() == [""] * 3 and f.wrong.isna().all()
    assert (f.busbw_gbps.iloc[-1], f.time_us_in_place.iloc[-1]) == (39.32, 310.0)
    assert f.busbw_gbps.iloc[-1] / f.algbw_gbps.iloc[-1] == pytest.approx(3 / 4, abs=0.001)


def test_several_runs_are_split_each_with_its_own_collective_and_ranks():
    tables = read_log(LOGS / "nccltests_three_runs_concat.log")
    assert [t.meta["collective"] for t in tables] == ["all_reduce", "all_gather", "send_recv_bidir"]
    assert [t.meta["ranks"] for t in tables] == [4, 4, 4]  # not 12: each run has its own 4 Rank lines
    assert [len(t.frame) for t in tables] == [3, 3, 3]
    assert tables[0].frame.time_us_p50.iloc[-1] == 10200.0 and tables[1].frame.time_us_p50.iloc[-1] == 5600.0
    assert tables[2].frame.wrong_in_place.isna().all()  # sendrecv's in-place #wrong is N/A
    assert [t.meta["collective"] for t in read_log(LOGS / "nccltests_three_runs_concat.log", run=2)] == ["all_gather"]
    chosen = read_log(LOGS / "nccltests_three_runs_concat.log", collective="send_recv_bidir")
    assert [t.meta["run"] for t in chosen] == [3]
    frame, meta, source = read_sweep(LOGS / "nccltests_three_runs_concat.log")  # distinct collectives: all, unmixed
    assert frame.groupby("collective").run.nunique().max() == 1 and len(frame) == 9
    with pytest.raises(CommbenchError, match="holds 3 runs"):
        read_log(LOGS / "nccltests_three_runs_concat.log", run=4)


def test_a_page_scrape_with_collapsed_blanks_and_one_with_rank_lines_elided():
    t = one("nccltests_scraped_blanks_collapsed.txt")
    assert t.meta["ranks"] == 8 and t.meta["hosts"] == ["gke-pool-0", "gke-pool-1"]
    assert t.frame.busbw_gbps.iloc[-1] == 313.17 and t.meta["nccl_version"] == "2.28.9"  # nccl-library=22809
    with pytest.raises(CommbenchError) as err:
        read_log(LOGS / "nccltests_rank_lines_elided.txt")
    assert "--ranks N" in str(err.value) and "busbw/algbw says 8" in str(err.value)  # 313.17/357.91 = 7/8
    assert one("nccltests_rank_lines_elided.txt", ranks=8).meta["ranks"] == 8
    with pytest.raises(CommbenchError, match="inconsistent"):
        read_log(LOGS / "nccltests_rank_lines_elided.txt", ranks=4)


def test_mca_warnings_command_block_and_nccl_version_line():
    t = one("nccltests_mca_warnings_alltoall.log")
    assert (t.meta["collective"], t.meta["ranks"], t.meta["tool_version"]) == ("all_to_all", 8, "2.18.3")
    assert t.meta["nccl_version"] == "2.30.3+cuda13.0" and "alltoall_perf" in t.meta["command"]
    assert t.frame.busbw_gbps.iloc[-1] == 27.96 and t.frame.wrong_in_place.isna().all()


def test_a_partial_paste_is_refused_or_read_as_partial_with_ranks_from_the_command():
    with pytest.raises(CommbenchError, match="--partial reads the 3 rows"):
        read_log(LOGS / "nccltests_partial_paste_sendrecv.md")
    t = one("nccltests_partial_paste_sendrecv.md", partial=True)
    assert (t.meta["collective"], t.meta["ranks"], t.meta["complete"]) == ("send_recv_bidir", 4, False)
    assert "-g 4" in t.meta["ranks_from"] and t.frame.time_us_p50.iloc[-1] == 2650.0


def test_srun_labels_per_iteration_columns_timestamps_and_repeats():
    tables = read_log(LOGS / "nccltests_srun_label_per_iter_timestamps_N2.log")
    assert len(tables) == 2 and all(t.meta["complete"] for t in tables)  # -N 2: one footer for both
    first = tables[0].frame.iloc[0]
    # -I 1: out-of-place time min max p99 come before the in-place block: in-place time is 61.00, not 55.00
    assert (first.time_us_p50, first.time_us_min, first.time_us_p99, first.time_us_in_place) == (60.0, 55.0, 85.0, 61.0)
    assert first.timestamp == "2026-01-12 10:31:10"
    assert tables[1].frame.time_us_p50.iloc[0] == 62.0
    with pytest.raises(CommbenchError, match="--run N"):
        read_sweep(LOGS / "nccltests_srun_label_per_iter_timestamps_N2.log")


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("\x00\x01\x02binary\x00" * 20, "not text"),
    ("hello\nworld\n", "unknown format"),
    ("# nThread 1 nGpus 1 minBytes 8 maxBytes 64 step: 2(factor) warmup iters: 5 iters: 20 validation: 1\n"
     "#  Rank  0 Group  0 Pid 1 on a device 0 [0x00] X\n", "no result rows"),
])
def test_bad_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.log"
    path.write_text(content)
    with pytest.raises(CommbenchError) as err:
        read_log(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_row_cut_off_mid_line_is_refused_or_left_out_with_partial(tmp_path):
    text = (LOGS / "nccltests_old_error_col_shell_prompt.txt").read_text()
    cut = text[:text.index("   8000.0") + 9]  # the last row ends after its out-of-place time
    path = tmp_path / "cut.txt"
    path.write_text(cut)
    with pytest.raises(CommbenchError, match="cut off"):
        read_log(path)
    t = read_log(path, partial=True)[0]
    assert len(t.frame) == 4 and t.meta["complete"] is False and not math.isnan(t.frame.time_us_p50.iloc[-1])


def test_split_groups_count_the_ranks_of_rank_0s_group(tmp_path):
    """NCCL_TESTS_SPLIT runs one communicator per group; the rows are group 0's (2 ranks: busbw = algbw)."""
    lines = ["# Collective test starting: all_reduce_perf",
             "# nThread 1 nGpus 1 minBytes 1048576 maxBytes 1048576 step: 2(factor) warmup iters: 5 iters: 20 "
             "agg iters: 1 validation: 1 graph: 0", "#", "# Using devices"]
    lines += [f"#  Rank  {r} Group  {r // 2} Pid  {10 + r} on  host{r // 2} device  {r % 2} [0x1b] NVIDIA H100" for r in range(4)]
    lines += ["#", "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   "
              "busbw #wrong", "     1048576        262144     float     sum      -1    50.00   20.97   20.97      0    "
              "51.00   20.56   20.56      0", "# Avg bus bandwidth    : 20.97 "]
    path = tmp_path / "split.log"
    path.write_text("\n".join(lines) + "\n")
    t = read_log(path)[0]
    assert t.meta["ranks"] == 2 and "group 0" in t.meta["ranks_from"]
