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
