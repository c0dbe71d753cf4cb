"""commbench's timing loop against raw library loops, in 2-rank worlds (benchmarks/overhead.py).

Each benchmark runs one launch and records the medians and their ratio in extra_info (target:
within 1.1x at 8 B and 64 KiB); see `pytest benchmarks --benchmark-enable --benchmark-json out.json`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _launch(backend: str) -> list[dict]:
    if backend == "mpi":
        mpiexec = BIN / "mpiexec" if (BIN / "mpiexec").exists() else "mpiexec"
        cmd = [str(mpiexec), "-n", "2", "--oversubscribe", sys.executable, str(HERE / "overhead.py"), "--backend", "mpi"]
    else:
        cmd = [str(BIN / "torchrun"), "--nproc-per-node", "2", str(HERE / "overhead.py"), "--backend", "gloo"]
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("backend", ["mpi", "gloo"])
def test_overhead_against_raw_loop(benchmark, backend):
    if backend == "mpi":
        pytest.importorskip("mpi4py")
    rows = benchmark.pedantic(_launch, args=(backend,), rounds=1, iterations=1)
    for row in rows:
        benchmark.extra_info[f"ratio_{row['msg_bytes']}B"] = round(row["ratio"], 3)
        benchmark.extra_info[f"commbench_us_{row['msg_bytes']}B"] = round(row["commbench_us"], 2)
        benchmark.extra_info[f"raw_us_{row['msg_bytes']}B"] = round(row["raw_us"], 2)
    print(backend, benchmark.extra_info)
    assert {r["msg_bytes"] for r in rows} == {8, 65536}
