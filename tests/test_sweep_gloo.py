"""2-rank gloo sweeps on loopback: identities and correctness, never speed."""

import json

import pandas as pd
import pytest

from commbench.measure import SweepSpec, sweep
from commbench.measure.sweeps import sizes_between


def test_sizes_between():
    assert sizes_between(8, 64) == [8, 16, 32, 64]


@pytest.mark.parametrize("collective", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
                                        "send_recv", "send_recv_bidir"])
def test_gloo_sweep_identities(collective):
    frame = sweep(SweepSpec(collective, min_bytes=8, max_bytes=65536, factor=32, iters=3, warmup=1, timeout_s=30))
    assert list(frame.msg_bytes) == [8, 256, 8192]
    assert (frame.wrong == 0).all()
    # algbw = S / t (GB/s); busbw factor at n=2: all_reduce 2(n-1)/n = 1; all_gather, reduce_scatter,
    # all_to_all (n-1)/n = 0.5; broadcast and both send/recv 1
    factor = {"all_reduce": 1.0, "all_gather": 0.5, "reduce_scatter": 0.5, "all_to_all": 0.5, "broadcast": 1.0,
              "send_recv": 1.0, "send_recv_bidir": 1.0}[collective]
    for row in frame.itertuples():
        assert row.algbw_gbps == pytest.approx(row.msg_bytes / (row.time_us_p50 * 1e-6) / 1e9)
        assert row.busbw_gbps == pytest.approx(row.algbw_gbps * factor)
        assert row.time_us_min <= row.time_us_p50 <= row.time_us_max and len(row.samples_us) == 3


def test_sweep_cli_json_and_out(cli, tmp_path):
    out = tmp_path / "sweep.csv"
    result = cli("sweep", "all_reduce", "--max-bytes", "1K", "--iters", "2", "--json", "--out", out)
    assert result.exit_code == 0
    rows = json.loads(result.output)["rows"]
    assert [r["msg_bytes"] for r in rows] == [8, 16, 32, 64, 128, 256, 512, 1024]
    for r in rows:  # the documented --json keys; time_us is the p50 that algbw = S / t uses
        assert {"msg_bytes", "time_us", "algbw_gbps", "busbw_gbps", "wrong"} <= set(r)
        assert r["time_us"] == r["time_us_p50"]
        assert r["algbw_gbps"] == pytest.approx(r["msg_bytes"] / r["time_us"] / 1e3)
    meta = json.loads((tmp_path / "sweep.csv.meta.json").read_text())
    assert meta["backend"] == "gloo" and "torch" in meta["versions"]
    assert meta["hosts"] == [__import__("socket").gethostname()] * 2  # every rank's host, in rank order


def test_sweep_bad_collective(cli):
    result = cli("sweep", "all_reduse")
    assert result.exit_code == 2
    assert "valid: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv, send_recv_bidir" in result.output


def test_dead_rank_is_named_and_run_ends():
    from commbench import CommbenchError
    from commbench.measure.world import run_local
    from tests.faults import exit_job

    with pytest.raises(CommbenchError, match=r"rank 1 exited with code 17"):
        run_local(exit_job(1, 0)(SweepSpec("all_reduce", max_bytes=16, iters=2, warmup=0)), ranks=2, timeout_s=10)


def test_rank_dying_mid_sweep_keeps_finished_rows(monkeypatch, tmp_path, cli):
    """Rank 1 dies after two sizes; the run ends within the timeout and the two rows are kept."""
    from commbench.measure import sweeps as sweep
    from tests.faults import exit_job

    monkeypatch.setattr(sweep, "sweep_job", exit_job(1, 2))
    out = tmp_path / "partial.csv"
    result = cli("sweep", "all_reduce", "--max-bytes", "1K", "--iters", "2", "--timeout", "5", "--out", out)
    assert result.exit_code == 2
    assert "rank 1 exited with code 17" in result.output and "after 2 finished rows" in result.output
    saved = pd.read_csv(out)
    assert list(saved.msg_bytes) == [8, 16]
    meta = json.loads((tmp_path / "partial.csv.meta.json").read_text())
    assert meta["complete"] is False


def test_sweep_link_percent_column(cli):
    result = cli("sweep", "send_recv", "--max-bytes", "64", "--iters", "2", "--link", "1gbit", "--json")
    rows = json.loads(result.output)["rows"]
    for r in rows:  # 1 Gbit/s = 0.125 GB/s; PCIe Gen5 x4 = 4 lanes x 32 GT/s x 128/130 / 8 = 15.754 GB/s
        assert r["busbw_pct_1gbit"] == pytest.approx(r["busbw_gbps"] / 0.125 * 100)
        assert r["busbw_pct_pcie5x4"] == pytest.approx(r["busbw_gbps"] / (4 * 32 * 128 / 130 / 8) * 100)
        # one-way send at 1 Gbit/s: 10 us assumed latency + S / 0.125 GB/s
        assert r["theory_us_1gbit"] == pytest.approx(10 + r["msg_bytes"] / 0.125e9 * 1e6)


def test_unreachable_peer_named_and_bounded(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "--max-bytes", "64",
                           "--timeout", "3"], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2
    assert f"rank 1 could not join the gloo world at 127.0.0.1:{port} within 3 s" in proc.stderr


def test_missing_optional_backends_say_what_to_install(monkeypatch):
    """Without CUDA, the GPU backends refuse with what to do instead; without CuPy, what to install."""
    import importlib.util

    import torch

    from commbench import CommbenchError
    from commbench.measure.world import make_backend

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the GPU backends can start here")
    with pytest.raises(CommbenchError, match="the nccl backend needs CUDA"):
        make_backend("nccl", 5)
    expected = "pip install cupy-cuda12x" if importlib.util.find_spec("cupy") is None else "needs a CUDA device"
    with pytest.raises(CommbenchError, match=expected):
        make_backend("cupy", 5)


def test_gpu_backend_without_launcher_explains_how_to_launch(cli):
    result = cli("sweep", "all_reduce", "--backend", "nccl")
    assert result.exit_code == 2
    assert "torchrun --nproc-per-node 2 -m commbench sweep all_reduce --backend nccl" in result.output


def test_mpi_device_buffers_need_cuda(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    result = cli("sweep", "all_reduce", "--backend", "mpi", "--mpi-buffers", "cuda")
    assert result.exit_code == 2 and "--mpi-buffers cuda needs a CUDA device" in result.output
    result = cli("sweep", "all_reduce", "--mpi-buffers", "gpu")
    assert result.exit_code == 2 and "unknown --mpi-buffers 'gpu'; valid: host, cuda" in result.output


def test_adaptive_sampling_stops_on_a_tight_p50_and_flags_two_modes():
    """A steady op stops after the first two blocks; an op alternating 1 ms and 5 ms is flagged
    bimodal with both modes reported."""
    import time

    import numpy as np

    from commbench.measure.timing import BLOCK, median_ci, sample_stats, time_adaptive
    from commbench.measure.compute import LocalDevice

    backend = LocalDevice("cpu")
    steady = time_adaptive(lambda: time.sleep(0.002), backend, warmup=1, target_ci=0.2)
    assert len(steady) == 2 * BLOCK
    flips = iter(range(10**6))
    mixed = time_adaptive(lambda: time.sleep(0.001 if next(flips) % 2 else 0.005), backend, warmup=0,
                          target_ci=0.001, budget_s=0.3)
    stats = sample_stats(mixed)
    assert stats["bimodal"] and 0.3 < stats["slow_mode_share"] < 0.7
    assert stats["fast_mode_us"] == pytest.approx(1000, rel=0.5) and stats["slow_mode_us"] == pytest.approx(5000, rel=0.3)
    lo, hi = median_ci(np.arange(100.0))  # order statistics of 0..99: ranks 50 -+ 9.8
    assert (lo, hi) == (40.0, 59.0)


def test_size_step_factor():
    assert sizes_between(8, 1000, 4) == [8, 32, 128, 512]
    assert sizes_between(8, 64) == [8, 16, 32, 64]
