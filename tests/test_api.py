"""The measuring library calls (commbench.measure.api): the README's Python example runs as written,
and a spec names every bad value at once."""

import re

import pytest

from tests.conftest import ROOT


def test_the_readme_python_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    table, judged = scope["table"], scope["judged"]
    # 8 B to 64 KiB, doubling: 14 sizes; gloo's all_reduce runs in place only, one row each
    assert list(table.msg_bytes) == [8 * 2**i for i in range(14)]
    assert list(table.wrong) == [0] * 14 and table.attrs["launcher"] == "embedded" and table.attrs["ranks"] == 2
    assert table.busbw_gbps.tolist() == pytest.approx((table.msg_bytes / (table.time_us_p50 * 1e-6) / 1e9).tolist())
    assert judged.assessment.verdict in ("PASS", "FAIL") and judged.frame is table
    assert (judged.assessment.verdict == "FAIL") == bool(judged.assessment.reasons)
    assert "msg_bytes" in capsys.readouterr().out


def test_a_spec_names_every_bad_value_at_once():
    from commbench import CommbenchError
    from commbench.measure import SweepSpec

    with pytest.raises(CommbenchError) as caught:
        SweepSpec("all_reduse", min_bytes=0, iters=0, timeout_s=float("nan"), timing="fast", ranks=1)
    message = str(caught.value)
    for part in ("--ranks 1 must be >= 2", "--iters 0 must be >= 1", "--timeout nan must be",
                 "unknown timing mode 'fast'", "unknown sweep collective 'all_reduse'",
                 "need 0 < min-bytes <= max-bytes, got 0"):
        assert part in message, part
    assert "\n" not in message  # one line


def test_a_spec_knows_its_sizes_and_rows_before_any_rank_starts():
    from commbench.measure import SweepSpec

    spec = SweepSpec("all_gather", min_bytes=1024, max_bytes=8192, backend="mpi")
    assert spec.sizes == (1024, 2048, 4096, 8192)
    assert spec.placements == ("in_place", "out_of_place") and spec.rows == 8  # MPI has both placements
    assert SweepSpec("broadcast", max_bytes=64).placements == ("in_place",)


def test_a_sweep_runs_on_a_backend_joined_by_the_caller(tmp_path):
    """world=backend: the job runs in the caller's own processes (here two ranks of an mpiexec the test
    starts, each joining through make_backend), rank 0 gets the table, the others None."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import mpiexec_path

    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    code = ("import json; from commbench.measure import SweepSpec, sweep; from commbench.measure.world import make_backend; "
            "b = make_backend('mpi', 30); t = sweep(SweepSpec('all_gather', max_bytes=64, iters=2, backend='mpi'), world=b); "
            "print(json.dumps(None if t is None else [list(t.msg_bytes), int(t.wrong.sum()), t.attrs['ranks']]))")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    done = subprocess.run([mpiexec_path(), "-n", "2", "--oversubscribe", sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = sorted(done.stdout.split("\n")[:2], key=len)
    # all_gather of 8..64 B on MPI: both placements per size; one rank prints the table, the other None
    assert json.loads(printed[0]) is None
    assert json.loads(printed[1]) == [[8, 8, 16, 16, 32, 32, 64, 64], 0, 2]
