"""nccl-tests output lines besides the rows: the `# nThread` header's settings, the footer's figure,
and a command line that runs an X_perf binary (github.com/NVIDIA/nccl-tests `src/common.cu`: the
header and footer; the flags are the binary's own: -t threads, -g GPUs per thread, -a how the time
is taken over ranks).
"""

from __future__ import annotations

import re
from pathlib import Path

from commbench.logs.common import launcher_processes, number

# nccl-tests binaries (src/*.cu, one X_perf each) -> commbench collective, None where commbench has none
NCCL_TESTS = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
              "alltoallv": None, "alltoall": "all_to_all", "broadcast": "broadcast", "sendrecv": "send_recv_bidir",
              "hypercube": None, "reduce": None, "gather": None, "scatter": None}
_NAMES = "|".join(sorted(NCCL_TESTS, key=len, reverse=True))
PERF_IN_NAME = re.compile(rf"(?<![a-z])({_NAMES})_perf")
PERF_BINARY = re.compile(rf"^({_NAMES})_perf(?:_mpi)?$")

def header_settings(line: str) -> dict:
    found = dict(re.findall(r"(\w[\w ]*?):\s*(-?\d+)", line.split("step:")[-1]))  # `warmup iters: 5` ...
    found.update(re.findall(r"(minBytes|maxBytes) (\d+)", line))
    return {k.strip(): int(v) for k, v in found.items()}


def footer(text: str) -> float:
    """The average busbw of the footer (NaN where it is garbled: the footer is there, its figure unused)."""
    try:
        return number(text)
    except ValueError:
        return float("nan")


def command(line: str) -> dict | None:
    """An echoed command line that runs an X_perf binary: the command, its launcher's process count,
    the collective its binary names, and -t / -g."""
    procs, launched, command = launcher_processes(line, PERF_BINARY)
    if not command:
        return None
    tokens = command.split()
    at, name = next((i, m) for i, t in enumerate(tokens) if (m := PERF_BINARY.match(Path(t).name)))
    own = " ".join(tokens[at + 1:])  # the benchmark's own flags (a launcher's `srun -t 30` is not -t)
    return {"line": command, "processes": procs, "launched": launched, "collective": name.group(1),
            "threads": flag(own, "-t"), "gpus": flag(own, "-g"), "average": flag(own, "-a")}


def flag(args: str, name: str) -> int:
    m = re.search(rf"(?:^|\s){name}\s*(\d+)(?=\s|$)", args)
    return int(m.group(1)) if m else 1
