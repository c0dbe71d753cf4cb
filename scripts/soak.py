"""Soak: a bounded loop of embedded sweeps (gloo, MPI, MPI with --timing c-loop) and replays (gloo,
MPI), then what they left behind.

    .venv/bin/python scripts/soak.py --minutes 3

Counts, before and after: commbench's processes (its ranks, mpiexec and its daemons, spawned
workers: other jobs on a shared host come and go), open file descriptors of every process, POSIX shared-memory
segments and folders (/dev/shm: Open MPI's sm_segment.* files, commbench's private folders),
commbench temporary folders and Open MPI / PRRTE session folders (ompi.*, prte.*) in the temp
directory. A clean run ends with the same counts (give or take this script's own) and exits 0; a
leak exits 1 naming what grew.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMBENCH = [sys.executable, "-m", "commbench"]
RUNS = (
    ["sweep", "all_reduce", "--max-bytes", "1M", "--iters", "5"],
    ["sweep", "all_gather", "--backend", "mpi", "--max-bytes", "1M", "--iters", "5"],
    ["sweep", "all_reduce", "--backend", "mpi", "--timing", "c-loop", "--max-bytes", "64K"],
    ["trace", "gpt-oss-120b", "--mode", "tp", "--batch", "8", "--replay", "--iters", "2", "--phase", "decode"],
    ["trace", "gpt-oss-120b", "--mode", "pp", "--batch", "8", "--replay", "--iters", "2", "--backend", "mpi"],
)


OURS = (b"commbench", b"prterun", b"prted", b"mpiexec", b"multiprocessing")
"""What a process this loop started (or left behind) has in its command line."""


def _ours(pid: str) -> bool:
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
    return any(word in cmdline for word in OURS) and b"soak.py" not in cmdline


def census() -> dict:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    fds = 0
    for pid in pids:
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    tmp = Path(tempfile.gettempdir())
    return {"commbench processes": sum(map(_ours, pids)), "open fds": fds, "shm segments": len(os.listdir("/dev/shm")),
            "commbench temp folders": len(list(tmp.glob("commbench-*"))),
            "MPI session folders": len(list(tmp.glob("ompi.*")) + list(tmp.glob("prte.*")))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    before = census()
    deadline, runs, failures = time.monotonic() + args.minutes * 60, 0, 0
    while time.monotonic() < deadline:
        cmd = RUNS[runs % len(RUNS)]
        proc = subprocess.run([*COMMBENCH, *cmd, "--json"], capture_output=True, text=True, timeout=600)
        runs += 1
        failures += proc.returncode != 0
        if proc.returncode:
            print(f"run {runs} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-400:]}", file=sys.stderr)
    time.sleep(2)
    after = census()
    print(f"{runs} runs in {args.minutes:g} min, {failures} failed")
    grew = []
    for key in before:
        print(f"  {key}: {before[key]} before, {after[key]} after")
        slack = 30 if key == "open fds" else 0  # the host's other processes open and close files meanwhile
        if after[key] > before[key] + slack:
            grew.append(key)
    if grew:
        print("leaked: " + ", ".join(grew))
    return 1 if grew or failures else 0


if __name__ == "__main__":
    sys.exit(main())
