"""Reliability of the worlds commbench runs: every rank checked, no orphans, no hangs, loopback only.

Each test fails on a main where the behaviour it names is broken: a wrong value on a non-zero rank
went unreported; a signal to the parent orphaned the ranks; a killed MPI rank lost every row; a
frozen MPI rank held the run for the timeout once per size; the embedded rendezvous listened on
every interface.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, mpiexec_path

COMMBENCH = [sys.executable, "-m", "commbench"]
needs_mpi = pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")


def _descendants(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            kids += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return kids + [g for k in kids for g in _descendants(k)]


def _alive(pids: list[int]) -> list[int]:
    live = []
    for pid in pids:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX":
                live.append(pid)
        except OSError:
            pass
    return live


@pytest.mark.parametrize("collective", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
                                        "send_recv", "send_recv_bidir"])
def test_a_wrong_value_on_rank_1_is_counted_on_gloo(collective):
    from commbench.measure.world import run_local
    from tests.faults import corrupt_job

    frame = run_local(corrupt_job(1, collective, [8, 1024]), ranks=2, timeout_s=30)
    # rank 1's check sees exactly one wrong element per size (rank 0's own check is clean)
    assert list(frame.wrong) == [1, 1]


@needs_mpi
@pytest.mark.parametrize("collective", ["all_reduce", "all_gather", "send_recv"])
def test_a_wrong_value_on_rank_1_is_counted_on_mpi(collective):
    script = ("import json; from commbench.measure.world import make_backend; from commbench.measure.sweeps import run_sweep; "
              "from tests.faults import Corrupting; b = make_backend('mpi', 20); "
              f"f = run_sweep(Corrupting(b, 1), '{collective}', [8, 1024], 2, 0); "
              "b.rank == 0 and print(json.dumps(list(map(int, f.wrong))))")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    proc = subprocess.run([mpiexec_path(), "-n", "2", "--oversubscribe", sys.executable, "-c", script], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # MPI runs all_reduce and all_gather in place and out of place: two rows per size, each caught
    rows = 4 if collective in ("all_reduce", "all_gather") else 2
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [1] * rows


def _start_sweep(backend: str, out, *extra):
    """The sweep in the background; its stdout (piped: each size's row as it finishes) goes to a file
    beside `out`, so a test can tell when rows have finished without reading a pipe."""
    stdout = open(f"{out}.stdout", "w")
    return subprocess.Popen([*COMMBENCH, "sweep", "all_reduce", "--backend", backend, "--min-bytes", "1K",
                             "--max-bytes", "64M", "--iters", "100", "--out", str(out), *extra],
                            stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _streamed_rows(out) -> int:
    """Rows the sweep has printed so far (lines after the # title and the header)."""
    try:
        lines = open(f"{out}.stdout").read().splitlines()
    except OSError:
        return 0
    return max(0, len([line for line in lines if not line.startswith("#")]) - 1)


def _world_dir(proc) -> str | None:
    """The relaunch's private folder, read from mpiexec's environment (COMMBENCH_WORLD_DIR)."""
    for pid in _descendants(proc.pid):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"COMMBENCH_WORLD_DIR="):
                return item.split(b"=", 1)[1].decode()
    return None


def _wait_for_rows(out, proc, backend: str, timeout_s: float = 90) -> None:
    """Until the world has started and streamed rows (gloo: spawned ranks; mpi: the row journal)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if _streamed_rows(out) >= 2:
            return
        time.sleep(0.2)
    raise AssertionError("the world never started")


@pytest.mark.parametrize("backend,sig", [("gloo", signal.SIGINT), ("gloo", signal.SIGTERM),
                                         pytest.param("mpi", signal.SIGTERM, marks=needs_mpi),
                                         pytest.param("mpi", signal.SIGINT, marks=needs_mpi)])
def test_a_signal_to_the_parent_stops_every_rank_and_keeps_the_finished_rows(tmp_path, backend, sig):
    out = tmp_path / "partial.csv"
    proc = _start_sweep(backend, out)
    _wait_for_rows(out, proc, backend)
    ranks_and_launcher = _descendants(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGINT else 2), err  # README: 130 for SIGINT, as shells do
    assert f"stopped by {signal.Signals(sig).name}" in err, err
    time.sleep(2)  # a rank has had time to outlive its parent, if it could
    assert _alive(ranks_and_launcher) == [], (ranks_and_launcher, err)
    meta = json.loads((tmp_path / "partial.csv.meta.json").read_text())
    assert meta["complete"] is False and len(open(out).read().splitlines()) > 1
    written = os.path.getmtime(out)
    time.sleep(2)
    assert os.path.getmtime(out) == written  # nothing writes after the parent returned


def _mpi_rank_pid(proc, rank: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        folder = _world_dir(proc)
        if folder:
            pid_file, journal = os.path.join(folder, f"rank{rank}.pid"), os.path.join(folder, "rows.jsonl")
            if os.path.exists(pid_file) and os.path.exists(journal) and os.path.getsize(journal):
                return int(open(pid_file).read())
        time.sleep(0.05)
    raise AssertionError("no MPI rank journaled a row")


@needs_mpi
@pytest.mark.parametrize("sig,message", [(signal.SIGKILL, "rank 1 died"), (signal.SIGSTOP, "rank 1 is stopped")])
def test_a_killed_or_frozen_mpi_rank_is_named_and_the_rows_kept(tmp_path, sig, message):
    out = tmp_path / "mpi.csv"
    proc = _start_sweep("mpi", out, "--min-bytes", "1M", "--iters", "400", "--timeout", "5")
    pid = _mpi_rank_pid(proc, 1)
    started = time.monotonic()
    os.kill(pid, sig)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - started
    if sig == signal.SIGSTOP:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 2 and message in err, err
    assert took < 5 + 10  # about one timeout, not one per size
    assert json.loads((tmp_path / "mpi.csv.meta.json").read_text())["complete"] is False
    assert len(open(out).read().splitlines()) >= 2  # the header and at least the journaled row


@pytest.mark.parametrize("backend", ["gloo", pytest.param("mpi", marks=needs_mpi)])
def test_the_embedded_world_listens_on_no_address_but_loopback(tmp_path, backend):
    """Every listening socket of the command's process tree, seen from this host's network, is on
    loopback (gloo: a FileStore and lo; MPI: shared-memory ranks, mpiexec in a private namespace)."""
    proc = _start_sweep(backend, tmp_path / "s.csv")
    seen = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ours = {proc.pid, *_descendants(proc.pid)}
            listing = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True).stdout
            for line in listing.splitlines():
                if any(f"pid={p}," in line for p in ours):
                    seen.append(next(f for f in line.split() if ":" in f))  # the local address:port
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert all(addr.startswith(("127.", "[::1]")) for addr in seen), seen


def test_a_rendezvous_port_that_never_answers_ends_within_the_timeout():
    """Something accepts on MASTER_PORT and says nothing: the join still ends, rank named, exit 2."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    started = time.monotonic()
    proc = subprocess.run([*COMMBENCH, "sweep", "all_reduce", "--max-bytes", "64", "--timeout", "3"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    took = time.monotonic() - started
    server.close()
    assert proc.returncode == 2
    assert f"rank 1 could not join the gloo world at 127.0.0.1:{port} within 3 s" in proc.stderr
    assert took < 3 + 2 + 15  # timeout + the join grace + interpreter and torch start-up on a slow host
