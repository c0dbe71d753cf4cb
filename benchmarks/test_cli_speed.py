"""`commbench trace gpt-oss-120b --mode pp` through the installed console script, imports and all,
in under 0.3 s of wall time (issue 11): the trace path imports neither pandas nor torch."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LIMIT_S = 0.3
SCRIPT = shutil.which("commbench", path=str(Path(sys.executable).parent)) or shutil.which("commbench")


@pytest.mark.skipif(SCRIPT is None, reason="the commbench console script is not installed")
@pytest.mark.parametrize("args", [["--mode", "pp"], ["--mode", "pp", "--json"]], ids=["table", "json"])
def test_trace_console_script_wall_time(benchmark, args):
    def run():
        done = subprocess.run([SCRIPT, "trace", "gpt-oss-120b", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    assert "stage0->stage1.hidden_states" in out
    benchmark.extra_info["limit_s"] = LIMIT_S
    assert benchmark.stats.stats.median < LIMIT_S, f"median {benchmark.stats.stats.median:.3f} s"
