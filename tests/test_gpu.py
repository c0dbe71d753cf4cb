"""NCCL (torch.distributed) and CuPy NCCL paths: run where CUDA is present, skipped cleanly elsewhere."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    """torchrun as `python -m torch.distributed.run` (a GPU box may have no torchrun script on PATH)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), "-m", "commbench", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["nccl", "cupy"])
@pytest.mark.parametrize("collective,factor", [("all_reduce", 1.0), ("all_gather", 0.5), ("send_recv", 1.0)])
def test_two_gpu_sweep_identities(backend, collective, factor):
    if _gpus() < 2:
        pytest.skip("needs 2 GPUs (NCCL refuses two ranks on one device)")
    if backend == "cupy":
        pytest.importorskip("cupy")
    proc = _torchrun(2, "sweep", collective, "--backend", backend, "--max-bytes", "16M", "--iters", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    for r in rows:
        assert r["wrong"] == 0
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * factor)


def test_one_gpu_world_times_calls_and_moves_no_bus_bytes():
    """A 1-rank NCCL world: every size is timed (algbw = S / t > 0) and busbw is exactly 0, since the
    all-reduce factor 2(n-1)/n is 0 at n = 1 (a wrong factor or an untimed call fails here)."""
    proc = _torchrun(1, "sweep", "all_reduce", "--backend", "nccl", "--max-bytes", "64M", "--iters", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["msg_bytes"] for r in rows] == [8 * 2**i for i in range(24)]
    for r in rows:
        assert r["time_us_p50"] > 0 and r["algbw_gbps"] == pytest.approx(r["msg_bytes"] / r["time_us_p50"] / 1e3)
        assert r["busbw_gbps"] == 0


def test_compute_runs_on_cuda():
    from commbench.measure.compute import measure_stage
    from commbench.predict.serving import expert_coverage
    from commbench.traffic.model_card import load_model_card
    from commbench.traffic.plan import ParallelPlan

    plan = ParallelPlan.for_mode(load_model_card("llama-3.1-8b-instruct"), "tp")
    frame = measure_stage(plan, 0, prefill_tokens=512, decode_batch=64, context=1024, iters=5, device="cuda",
                          expert_coverage=expert_coverage)
    assert (frame.device == "cuda").all() and (frame.time_ms_per_layer > 0).all()


def test_mpi_on_device_buffers():
    """CUDA-aware MPI on device buffers; skipped where the MPI was built without CUDA support."""
    pytest.importorskip("mpi4py")
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "--backend", "mpi",
                           "--mpi-buffers", "cuda", "--max-bytes", "1M", "--iters", "5", "--json"],
                          capture_output=True, text=True, timeout=300)
    if "built without CUDA support" in proc.stderr:
        pytest.skip("this MPI is not CUDA-aware")
    assert proc.returncode == 0, proc.stderr
    assert all(r["wrong"] == 0 for r in json.loads(proc.stdout)["rows"])


@pytest.mark.parametrize("backend", ["nccl", "cupy"])
def test_cuda_graph_timing_drops_the_per_call_launch(backend):
    """--cuda-graph (nccl-tests -G) at one rank: every row correct, algbw = S / t, and at 8 B a call
    replayed from a graph costs less than the same call launched alone between CUDA events (the launch
    gap the graph removes is inside the blocking sample)."""
    if backend == "cupy":
        pytest.importorskip("cupy")
    args = ("sweep", "all_reduce", "--backend", backend, "--max-bytes", "1M", "--iters", "20", "--json")
    graph, alone = _torchrun(1, *args, "--cuda-graph"), _torchrun(1, *args, "--timing", "blocking")
    assert graph.returncode == 0, graph.stderr
    assert alone.returncode == 0, alone.stderr
    g, a = json.loads(graph.stdout)["rows"], json.loads(alone.stdout)["rows"]
    assert [r["msg_bytes"] for r in g] == [8 * 2**i for i in range(18)]
    for r in g:
        assert r["wrong"] == 0
        assert r["algbw_gbps"] == pytest.approx(r["msg_bytes"] / r["time_us_p50"] / 1e3)
    assert g[0]["time_us_p50"] < a[0]["time_us_p50"]


@pytest.mark.parametrize("dtype,op", [("int8", "max"), ("float64", "avg")])
def test_cupy_datatypes_and_ops_both_placements(dtype, op):
    """CuPy's NCCL on every placement it claims: at one rank each reduction of the single input r + 1 = 1
    is 1, so a wrong NCCL type code (bytes misread as another type) shows as wrong values."""
    pytest.importorskip("cupy")
    proc = _torchrun(1, "sweep", "all_reduce", "--backend", "cupy", "-d", dtype, "-o", op, "--max-bytes", "64K",
                     "--iters", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {r["placement"] for r in rows} == {"in_place", "out_of_place"}
    assert all(r["wrong"] == 0 and r["type"] == dtype and r["redop"] == op for r in rows)
