"""The embedded gloo world: `ranks` local processes on loopback only, supervised by this process.

A FileStore rendezvous in a private temporary folder (no listening socket for the rendezvous), gloo
bound to `lo`; the ranks are spawned interpreters that die with this process, ignore the terminal's
SIGINT (this process stops them) and report through one queue: ("joined", rank), ("row", row) from
rank 0, then ("ok", table) or ("error", one line). Supervision: commbench.measure.supervise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

import pandas as pd

from commbench.measure.join import join_world, run_joined
from commbench.measure.supervise import STOP_GRACE_S, Stopped, WorldFailed, allowance, die_with_parent, frozen, \
    held, private_folder, stop_signals

POLL_S = 0.2
"""Seconds between looks at the ranks' health while waiting for the next event."""


def _worker(rank: int, world: int, store_path: str, job, timeout_s, queue):
    """One rank of the embedded world: loopback only, a FileStore rendezvous, dies with its parent."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the whole group: the parent stops us
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    try:
        backend = join_world("gloo", timeout_s, {"store_path": store_path})
        queue.put(("joined", rank))
        frame = run_joined(backend, job, (lambda row: queue.put(("row", row))) if rank == 0 else None)
        if rank == 0:
            queue.put(("ok", {"rows": frame.to_dict(orient="records"), "hosts": frame.attrs.get("hosts", [])}))
    except Exception as exc:  # reported by rank number to the parent
        queue.put(("error", f"rank {rank}: {type(exc).__name__}: {exc}".splitlines()[0]))


def stop_processes(procs) -> None:
    """SIGTERM (and SIGCONT, so a frozen one takes it) every live rank, SIGKILL what is left after
    STOP_GRACE_S; reap them all."""
    procs = [p for p in procs if p.pid is not None]  # started ones only
    for p in procs:
        if p.is_alive():
            p.terminate()
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(p.pid, signal.SIGCONT)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _watch(procs, queue, timeout_s: float, rows: list, on_row) -> tuple[str, object]:
    """Take the ranks' events until rank 0's table or an error arrives, a rank dies without a word,
    or no progress comes within the allowance; returns (status, payload)."""
    import queue as queue_mod

    joined: set[int] = set()
    last = time.monotonic()
    while True:
        try:
            kind, value = queue.get(timeout=POLL_S)
        except queue_mod.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                time.sleep(POLL_S)  # the survivors' own report of the loss, if any, comes first
                try:
                    kind, value = queue.get(timeout=POLL_S)
                except queue_mod.Empty:
                    return "error", ""
            else:
                stalled = [r for r, p in enumerate(procs) if frozen(p.pid)]
                if time.monotonic() - last > allowance(timeout_s, len(joined), len(procs), bool(stalled)):
                    return "error", f"no progress within {timeout_s:g} s" + \
                        "".join(f" (rank {r} is stopped: SIGSTOP or a debugger)" for r in stalled)
                continue
        last = time.monotonic()
        if kind == "joined":
            joined.add(value)
        elif kind == "row":
            rows.append(value)
            if on_row is not None:
                on_row(value)
        else:
            return kind, value


def run_local(job, ranks: int = 2, timeout_s: float = 60.0, on_row=None) -> pd.DataFrame:
    """`ranks` gloo processes on loopback run `job`; rank 0's rows stream through `on_row`.

    Ends with WorldFailed (carrying the finished rows) when a rank dies or fails, when no progress
    comes within the allowance (supervise.allowance), or on SIGINT/SIGTERM/SIGHUP to this process.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    rows: list[dict] = []
    status, payload, signum = "error", "", None
    store_dir = str(private_folder("commbench-world-"))
    procs = [ctx.Process(target=_worker, args=(r, ranks, os.path.join(store_dir, "store"), job, timeout_s, queue),
                         daemon=True) for r in range(ranks)]
    gone: list[str] = []  # ranks that ended by themselves, named before this process stops the rest
    try:
        with stop_signals():
            try:
                with held():  # a rank is started whole or not at all
                    for p in procs:
                        p.start()
                status, payload = _watch(procs, queue, timeout_s, rows, on_row)
                if status == "ok":
                    for p in procs:
                        p.join(timeout=10)
                else:  # a rank that crashed may still be on its way out when its peer reports the loss
                    deadline = time.monotonic() + STOP_GRACE_S
                    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    gone = [f"rank {r} exited with code {p.exitcode}" for r, p in enumerate(procs)
                            if p.exitcode not in (None, 0, 1)]
            except Stopped as stop:
                status, payload, signum = "stopped", f"stopped by {stop}: every rank was stopped", stop.signum
            finally:
                stop_processes(procs)
    finally:
        queue.close()
        queue.join_thread()
        shutil.rmtree(store_dir, ignore_errors=True)
    if status != "ok":
        raise WorldFailed(f"run failed after {len(rows)} finished rows: {'; '.join(gone + ([payload] if payload else []))}",
                          rows, signum=signum)
    frame = pd.DataFrame(payload["rows"])
    frame.attrs["hosts"] = payload["hosts"]
    return frame
