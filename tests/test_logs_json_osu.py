"""nccl-tests -J JSON (versions 1 and 3) and OSU / OMB-Py logs (tests/fixtures/logs, our own numbers):
values read off the fixtures by hand, S and busbw from nccl-tests' formulas."""

import json
import math
from pathlib import Path

import pytest

from commbench import CommbenchError
from commbench.logs import read_log, read_sweep
from tests.conftest import read_one

LOGS = Path(__file__).parent / "fixtures" / "logs"


def one(name, **kw):
    return read_one(LOGS / name, **kw)


def test_json_v1_misspelt_footer_nan_and_null_nwrong():
    t = one("nccltests_J_v1_misspelt_footer_g4.json")
    m, f = t.meta, t.frame
    assert (m["collective"], m["ranks"]) == ("all_reduce", 4)  # 1 device entry (one process) x 1 thread x -g 4
    assert m["avg_busbw_gbps"] == 60.5 and m["complete"]  # "average_bus_bandwidith": {"bandwidith": 60.5}
    assert m["nccl_version"] == "2.27.3" and m["per_iter_timing"] is None  # 22703; v1 has no per_iter_timing
    assert f.wrong.isna().all() and math.isnan(f.algbw_gbps_in_place.iloc[0])  # nwrong null, "nan"
    # 4 MiB in 70 us: algbw = 4194304 / 70e-6 / 1e9 = 59.92 GB/s, busbw x 2(4-1)/4 = 89.88
    assert (f.time_us_p50.iloc[-1], f.busbw_gbps.iloc[-1]) == (70.0, 89.88)


def test_json_v3_per_iteration_p50_and_samples_after_the_skipped_ones():
    t = one("nccltests_J_v3_per_iter_2proc.json")
    m, f = t.meta, t.frame
    assert (m["collective"], m["ranks"], m["hosts"]) == ("all_gather", 2, ["spark-a", "spark-b"])
    # times_us [90, 50, 51, 52, 53, 54], -K 1 skips the first: p50 = sorted[5 // 2] = 52, the mean stays 53
    assert (f.time_us_p50.iloc[0], f.time_us_mean.iloc[0]) == (52.0, 53.0)
    assert f.samples_us.iloc[0] == [50.0, 51.0, 52.0, 53.0, 54.0]
    assert f.time_us_p50.iloc[-1] == 204.0 and "p50 of the per-iteration" in m["timing"]


def test_json_versions_and_cut_files_are_refused_in_one_line(tmp_path):
    doc = json.loads((LOGS / "nccltests_J_v3_per_iter_2proc.json").read_text())
    bad = tmp_path / "v4.json"
    bad.write_text(json.dumps({**doc, "version": 4}))
    with pytest.raises(CommbenchError, match="knows versions 1, 2, 3"):
        read_log(bad)
    cut = tmp_path / "cut.json"
    cut.write_text((LOGS / "nccltests_J_v3_per_iter_2proc.json").read_text()[:700])
    with pytest.raises(CommbenchError, match="does not parse"):
        read_log(cut)
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("average_bus_bandwidth", "end_time")}))
    with pytest.raises(CommbenchError, match="--partial"):
        read_log(unclosed)
    assert read_log(unclosed, partial=True)[0].meta["complete"] is False


def test_osu_allreduce_full_stats_ranks_from_intel_mpi_startup_lines():
    t = one("osu_allreduce_full_intelmpi_startup.txt")
    m, last = t.meta, t.frame.iloc[-1]
    assert (m["ranks"], m["hosts"], m["tool_version"]) == (6, ["node-0", "node-1"], "5.9")
    assert (last.time_us_p50, last.time_us_rank_min, last.time_us_rank_max, last.iterations) == (1000.0, 990.0, 1010.0, 100)
    assert last.busbw_gbps == pytest.approx(1048576 / 1000e-6 / 1e9 * 2 * 5 / 6)


def test_osu_latency_bandwidth_and_bidirectional():
    lat = one("osu_latency_srun_datatype.txt")
    assert (lat.meta["collective"], lat.meta["ranks"], lat.meta["datatype"]) == ("send_recv", 2, "MPI_CHAR")
    assert lat.frame.time_us_p50.tolist() == [2.5, 3.0, 45.0] and lat.meta["command"].startswith("srun")
    bw = one("osu_bw.txt")
    assert bw.frame.bandwidth_MBps.iloc[-1] == 12000.0 and bw.frame.algbw_gbps.iloc[-1] == 12.0  # MB = 1e6 B
    assert "time_us_p50" not in bw.frame
    with pytest.raises(CommbenchError, match="not a time per message"):
        read_sweep(LOGS / "osu_bw.txt")
    bibw = one("osu_bibw_device.txt")
    assert bibw.meta["collective"] == "send_recv_bidir" and bibw.frame.algbw_gbps.iloc[-1] == 20.0  # 40000 / 2 / 1e3
    assert "DEVICE (D)" in bibw.meta["buffers"]


def test_osu_allgather_size_is_per_rank_and_ranks_come_from_the_launcher_line():
    t = one("osu_allgather_cuda_wrapper_n4.txt")
    assert (t.meta["ranks"], t.meta["ranks_from"], t.meta["buffers"]) == (4, "the launcher line", "device (CUDA)")
    assert t.frame.msg_bytes.tolist() == [4096, 262144]  # S = 4 x the per-rank size 1024, 65536
    assert t.frame.busbw_gbps.iloc[-1] == pytest.approx(262144 / 200e-6 / 1e9 * 3 / 4)


def test_osu_collective_without_a_rank_count_says_its_assumption():
    t = one("osu_alltoall_no_rank_count.txt")
    assert t.meta["ranks"] == 2 and t.meta["assumptions"] and "read as 2 ranks" in t.source
    assert t.frame.msg_bytes.tolist() == [32, 8192]
    given = one("osu_alltoall_no_rank_count.txt", ranks=8)
    assert given.meta["assumptions"] == [] and given.frame.msg_bytes.tolist() == [128, 32768]


def test_ombpy_latency_with_elided_rows():
    t = one("ombpy_latency_elided.txt")
    assert (t.meta["tool"], t.meta["collective"]) == ("OMB-Py", "send_recv")
    assert t.frame.msg_bytes.tolist() == [1, 1048576] and t.frame.time_us_p50.tolist() == [101.0, 5000.0]
    assert "1 0-byte row skipped" in t.source and "elided" in t.source


def test_each_osu_run_takes_its_own_launcher_or_binding_lines():
    first, second = read_log(LOGS / "osu_two_tests_launcher_per_run.txt")
    assert (first.meta["collective"], first.meta["ranks"], first.meta["hosts"]) == ("all_reduce", 4, ["nodeA", "nodeB"])
    assert first.meta["ranks_from"] == "Open MPI's --report-bindings lines"
    assert (second.meta["collective"], second.meta["ranks"], second.meta["ranks_from"]) == ("broadcast", 8, "the launcher line")
    assert second.frame.busbw_gbps.iloc[-1] == pytest.approx(64 / 4e-6 / 1e9)  # broadcast: busbw = algbw
    with pytest.raises(CommbenchError, match="disagrees"):
        read_log(LOGS / "osu_two_tests_launcher_per_run.txt", ranks=16, run=2)


def test_json_n_repeats_are_separate_runs(tmp_path):
    doc = json.loads((LOGS / "nccltests_J_v1_misspelt_footer_g4.json").read_text())
    doc["results"] = doc["results"] + doc["results"][1:]  # -N 2: the sizes start again (1M 2M 4M, 2M 4M)
    path = tmp_path / "repeat.json"
    path.write_text(json.dumps(doc))
    first, second = read_log(path)
    assert first.frame.msg_bytes.tolist() == [1048576, 2097152, 4194304]
    assert second.frame.msg_bytes.tolist() == [2097152, 4194304] and (second.meta["run"], second.meta["runs"]) == (2, 2)
    with pytest.raises(CommbenchError, match="--run N"):
        read_sweep(path)
