"""Launchers by their environment: torchrun, mpiexec, srun; a half-set environment fails with a message."""

import json
import os
import socket
import subprocess
import sys

import pytest

from commbench import CommbenchError
from commbench.measure.launcher import detect, first_slurm_host, torch_rendezvous_env


@pytest.mark.parametrize("nodelist,first", [("gpu[07-09,12],cpu1", "gpu07"), ("a,b", "a"), ("node5", "node5"),
                                            ("rack1-n[003,010-012]", "rack1-n003")])
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_detect_each_launcher():
    assert detect({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}) \
        == detect({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                   "RANK": "0", "WORLD_SIZE": "4"})  # mpiexec wins over torch-like variables
    launch = detect({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "n[2-5]"})
    assert (launch.world, launch.launcher, launch.rank, launch.size, launch.local_rank) == ("torch", "srun", 5, 8, 1)
    env = torch_rendezvous_env(launch, {"SLURM_JOB_NODELIST": "n[2-5]"})
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n2", "MASTER_PORT": "29500"}
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None  # a one-task allocation: the embedded world
    assert detect({}) is None
    with pytest.raises(CommbenchError, match="WORLD_SIZE is set but RANK is not"):
        detect({"WORLD_SIZE": "2"})
    with pytest.raises(CommbenchError, match="SLURM_PROCID='x' is not a whole number"):
        detect({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_env(rank, port):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR")}
    return {**env, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
            "SLURM_JOB_NODELIST": "localhost", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"}


def test_two_srun_tasks_join_one_world():
    port = _free_port()
    cmd = [sys.executable, "-m", "commbench", "sweep", "all_reduce", "--max-bytes", "64", "--iters", "2", "--json"]
    procs = [subprocess.Popen(cmd, env=_slurm_env(r, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = json.loads(outs[0][0])["rows"]  # rank 0 reports, for both ranks of the srun world
    assert [r["ranks"] for r in rows] == [2] * len(rows) and all(r["wrong"] == 0 for r in rows)
    assert outs[1][0] == ""


def test_a_lone_srun_task_fails_with_a_message_not_a_local_world():
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "--max-bytes", "64",
                           "--timeout", "3"], env=_slurm_env(1, port), capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2
    assert f"rank 1 could not join the gloo world at localhost:{port} within 3 s" in proc.stderr


def test_detect_pmix_only_launch():
    # prterun / prun without Open MPI's OMPI_COMM_WORLD_* variables: rank from PMIX_RANK, size from MPI_Init
    launch = detect({"PMIX_RANK": "1", "PMIX_NAMESPACE": "prterun-x@1"})
    assert (launch.world, launch.launcher, launch.rank) == ("mpi", "pmix", 1)
    # Open MPI's mpiexec sets both: its OMPI_* variables win (they carry the size)
    both = detect({"PMIX_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"})
    assert (both.launcher, both.size) == ("mpiexec", 2)


def test_pmix_launch_joins_through_mpi_and_refuses_gloo(tmp_path):
    """A real PMIx launch: mpiexec's ranks with Open MPI's own variables removed, so only PMIx's remain."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import mpiexec_path

    mpiexec = mpiexec_path()
    if mpiexec is None or shutil.which("env") is None:
        pytest.skip("no mpiexec")
    strip = [a for v in ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK") for a in ("-u", v)]
    base = [mpiexec, "-n", "2", "--oversubscribe", "env", *strip, sys.executable, "-m", "commbench", "sweep", "all_reduce",
            "-b", "8", "-e", "64", "--iters", "3", "--json"]
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    done = subprocess.run([*base, "--backend", "mpi"], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert {row["ranks"] for row in data["rows"]} == {2} and all(row["wrong"] == 0 for row in data["rows"])
    refused = subprocess.run([*base, "--backend", "gloo"], capture_output=True, text=True, env=env, timeout=180)
    assert refused.returncode != 0
    assert "a PMIx launcher started this process" in refused.stderr and "use --backend mpi" in refused.stderr


def test_forged_mpi_world_size_is_refused_not_titled(tmp_path):
    """OMPI_COMM_WORLD_SIZE=2 and _RANK=0 set by hand (no mpiexec): MPI_Init makes a 1-rank world; the run
    must not measure it and save it under a 2-rank title (issue 24)."""
    pytest.importorskip("mpi4py")
    out_dir, scratch = tmp_path / "out", tmp_path / "scratch"
    out_dir.mkdir()
    scratch.mkdir()
    out = out_dir / "forged.csv"
    # Open MPI's singleton MPI_Init leaves a /dev/shm segment and an ompi.* session folder behind: keep them here
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0", "TMPDIR": str(scratch),
           "OMPI_MCA_btl_sm_backing_directory": str(scratch)}
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "-e", "64", "--iters", "3",
                           "--backend", "mpi", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "OMPI_COMM_WORLD_SIZE=2 describes 2 ranks but the mpi world joined has 1" in proc.stderr
    assert "Traceback" not in proc.stderr and list(out_dir.iterdir()) == []


def test_torchrun_variables_without_the_rendezvous_address_are_refused_in_one_line(tmp_path):
    """RANK and WORLD_SIZE set by hand, no MASTER_ADDR/PORT: torch's env:// fails with a bare ValueError,
    which read as 'could not join ... within 60 s: ValueError' after 2 s; now it names what is missing."""
    from commbench.measure.launcher import check_torchrun_address

    launch = detect({"RANK": "0", "WORLD_SIZE": "1"})
    with pytest.raises(CommbenchError, match="MASTER_ADDR and MASTER_PORT are not: start every rank with torchrun"):
        check_torchrun_address(launch, {"RANK": "0", "WORLD_SIZE": "1"})
    with pytest.raises(CommbenchError, match="but MASTER_PORT is not"):
        check_torchrun_address(launch, {"MASTER_ADDR": "127.0.0.1"})
    check_torchrun_address(launch, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    out = tmp_path / "x.csv"
    proc = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "-e", "64", "--iters", "2",
                           "--out", str(out)], env={**env, "RANK": "0", "WORLD_SIZE": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "MASTER_ADDR and MASTER_PORT are not" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []
    # the embedded world's ranks carry RANK/WORLD_SIZE too but join through a FileStore: unaffected
    embedded = subprocess.run([sys.executable, "-m", "commbench", "sweep", "all_reduce", "-e", "64", "--iters", "2"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert embedded.returncode == 0, embedded.stderr[-2000:]
