"""scripts/device-check.sh (issue 21): the dry run on CPU, its command-line check, the sweep matrix's
plan, and the CPU refusals of the paths it exercises on a GPU."""

import csv
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import device_check  # noqa: E402

pytest.importorskip("torch")


def _commbench(*args):
    return subprocess.run([sys.executable, "-m", "commbench", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check")
    proc = subprocess.run(["bash", str(ROOT / "scripts/device-check.sh"), "--dry-run", "--keep-going", str(out)],
                          capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env={**__import__("os").environ, "PYTHON": sys.executable})
    return proc, out


def _steps(out):
    with tarfile.open(out / "device-check.tar.gz") as tar:
        return list(csv.DictReader(tar.extractfile("./steps.tsv").read().decode().splitlines(), delimiter="\t"))


def test_dry_run_parses_every_commbench_line_and_writes_its_plan(dry_run):
    proc, out = dry_run
    assert sorted(p.name for p in out.iterdir()) == ["device-check.tar.gz", "plan.tsv", "summary.md"]
    plan = list(csv.DictReader(open(out / "plan.tsv"), delimiter="\t"))
    commbench_lines = [row for row in plan if " -m commbench " in f" {row['command']} "]
    # the script's commbench lines, counted by hand: step 3 three sweeps (all_reduce, all_gather,
    # send_recv_bidir), step 4 two (nccl, cupy), step 5 one, step 6 three (gloo x2, mpi), step 7 one
    # replay, step 8 per model (2) and mode (2) one compute and two predicts: 3 + 2 + 1 + 3 + 1 + 12 = 22;
    # the dry run adds its world-of-one check on gloo: 23
    assert len(commbench_lines) == 23
    assert all(row["argv"] for row in commbench_lines)  # each recorded with its argv for the parse check
    assert not [row for row in plan if row["argv"] and row not in commbench_lines]
    with tarfile.open(out / "device-check.tar.gz") as tar:
        parsed = tar.extractfile("./parsed.tsv").read().decode().splitlines()
        steps = list(csv.DictReader(tar.extractfile("./steps.tsv").read().decode().splitlines(), delimiter="\t"))
    assert len(parsed) == 23 and all(line.startswith("ok\t") for line in parsed)
    assert {line.split("\t")[1] for line in parsed} == {row["step"] for row in commbench_lines}
    # in the dry run every CPU step ran and passed (world-of-one: test_a_world_of_one_is_accepted); every
    # CUDA step is planned, none ran
    assert {row["status"] for row in steps if row["kind"] == "cpu" and row["step"] != "world-of-one"} == {"ok"}
    assert {row["status"] for row in steps if row["kind"] != "cpu"} == {"planned"}
    assert {"env-versions", "gpu-tests-collect", "world-of-one", "matrix-gloo-quick", "parse-plan"} <= \
        {row["step"] for row in steps}
    summary = (out / "summary.md").read_text()
    # gloo's matrix on 2 CPU ranks: all_reduce and all_gather 8 datatypes blocking + float32 back-to-back
    # (2 x 9), 8 x 3 other ops (prod, max, min), one send_recv_bidir: 18 + 24 + 1 = 43, every one correct
    assert "matrix_gloo.status.csv: 43 of 43 combinations ok" in summary


def test_a_world_of_one_is_accepted(dry_run):
    """On one GPU NCCL runs one rank per device, so steps 3-5 and 7 launch a world of one; the dry run
    makes the same launch on gloo and the whole dry run exits 0 only if it is accepted."""
    proc, out = dry_run
    assert {row["step"]: row["status"] for row in _steps(out)}["world-of-one"] == "ok"
    assert proc.returncode == 0


def test_parse_check_refuses_a_line_that_would_fail_on_the_gpu(tmp_path):
    plan = tmp_path / "plan.tsv"
    plan.write_text("step\tkind\targv\tcommand\n"
                    "a\tcuda\tsweep\x1fall_reduce\x1f--backend\x1fnccl\x1f--cuda-graph\tx\n"
                    "b\tcuda\tsweep\x1fall_reduce\x1f--backend\x1fcupy\x1f-d\x1fbfloat16\tx\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/device_check.py"), "parse", str(plan),
                           str(tmp_path / "parsed.tsv")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "line 2 (step b): commbench sweep all_reduce --backend cupy -d bfloat16: does not parse: CommbenchError: "
        "the cupy backend has no bfloat16; valid: float32, float64, float16, int8, uint8, int32, int64"]
    assert not (tmp_path / "parsed.tsv").exists()


def test_matrix_plan_covers_every_claimed_datatype_and_op():
    """Counted by hand from CAPABILITIES. nccl: 8 datatypes, 5 ops, one placement each: all_reduce and
    all_gather 8 blocking + float32 back-to-back + float32 cuda-graph = 10 each, 8 x 4 other ops, one
    send_recv_bidir: 20 + 32 + 1 = 53. cupy: 7 datatypes (no bfloat16), 5 ops, all_reduce and all_gather
    in both placements: 2 x (7 + 1 + 1) x 2 = 36, 7 x 4 other ops, one bidir: 36 + 28 + 1 = 65."""
    nccl = device_check.matrix_plan("nccl", 1, 256 << 20, quick=False)
    cupy = device_check.matrix_plan("cupy", 1, 256 << 20, quick=False)
    assert (len(nccl), len(cupy)) == (53, 65)
    assert {c["dtype"] for c in cupy} == {"float32", "float64", "float16", "int8", "uint8", "int32", "int64"}
    float32_sum = [c for c in nccl if c["dtype"] == "float32" and c["op"] == "sum" and c["collective"] == "all_reduce"]
    assert {c["timing"] for c in float32_sum} == {"blocking", "back-to-back", "cuda-graph"}
    assert float32_sum[0]["sizes"][0] == 8 and float32_sum[0]["sizes"][-1] == 256 << 20
    assert len(float32_sum[0]["sizes"]) == 26  # 2^3 .. 2^28
    assert [c["required"] for c in nccl if c["collective"] == "send_recv_bidir"] == [False]  # to oneself: a probe


def test_cuda_graph_timing_refused_on_cpu_in_one_line():
    proc = _commbench("sweep", "all_reduce", "--cuda-graph")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("commbench: error: --timing cuda-graph captures NCCL calls in a CUDA graph: "
                                   "--backend nccl or cupy, not gloo (use blocking or back-to-back)")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-device refusal cannot show")
    proc = _commbench("sweep", "all_reduce", "--backend", "nccl", "--timing", "cuda-graph")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("commbench: error: --timing cuda-graph needs a CUDA device; this machine has none "
                                   "(on CPU use --timing blocking or back-to-back)")


def test_gloo_cuda_buffers_need_a_launcher():
    proc = _commbench("sweep", "all_reduce", "--buffers", "cuda")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "under a launcher" in proc.stderr and "torchrun --nproc-per-node 2" in proc.stderr


def test_usage_errors_exit_2_without_writing(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts/device-check.sh"), "--bogus", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown option --bogus; valid: --dry-run, --keep-going" in proc.stderr
    assert not (tmp_path / "x").exists()
