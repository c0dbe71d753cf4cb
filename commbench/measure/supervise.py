"""The supervision contract every embedded world keeps (the gloo world, the mpiexec relaunch).

- The ranks die with their parent (PR_SET_PDEATHSIG), however the parent ends.
- Start-up (interpreters, imports, the rendezvous) may take STARTUP_S + timeout; once every rank has
  joined, or as soon as a rank is seen frozen (SIGSTOP, a debugger), no progress (a row, a rank
  joining) within `timeout` ends the run, naming the rank.
- A rank that dies or fails ends the run at once, named by number.
- SIGINT, SIGTERM or SIGHUP to the parent stop every rank (SIGTERM, then SIGKILL STOP_GRACE_S later:
  within a second, frozen ranks included). The first signal raises Stopped; any later one while the
  run is being stopped and its rows saved is noted and ignored (no second traceback, no lost rows).
- However the run ends early it raises WorldFailed carrying the rows that finished (the caller saves
  them marked complete: false) and, for a stop, the signal (SIGINT: exit 130 at the CLI).
- Nothing the world started is left running or writing once the parent returns; its private folders
  (rendezvous, row journal, MPI session and shared-memory folders) are removed, and those of a parent
  killed outright (SIGKILL runs no cleanup) by this user's next embedded world (private_folder).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

from commbench import CommbenchError

STARTUP_S = 60.0
"""Seconds, on top of the timeout, that an embedded world may take to spawn interpreters, import
torch or mpi4py and join before every rank has joined."""
STOP_GRACE_S = 1.0
"""Seconds a stopped rank (or mpiexec) gets to exit after SIGTERM before SIGKILL."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class WorldFailed(CommbenchError):
    """A distributed run that ended early; `rows` holds what finished before it did, `signum` the
    stop signal when one ended it."""

    def __init__(self, message: str, rows: list[dict], launcher: str = "embedded", signum: int | None = None):
        super().__init__(message)
        self.rows = rows
        self.launcher = launcher
        self.signum = signum


class Stopped(BaseException):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) reached the parent of a world."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP = {"signum": None, "pending": None}
"""The first stop signal of this command, once one arrived (later ones are ignored); one held back
until the main thread leaves an import."""


def reset_stop() -> None:
    """Forget an earlier stop (a new command in the same process, e.g. the CLI under test)."""
    _STOP.update(signum=None, pending=None)


def stopping() -> int | None:
    """The stop signal received so far, or None."""
    return _STOP["signum"]


def _in_import(frame) -> bool:
    """Whether `frame` runs inside the import system (a module being made, lazily or not)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or "importlib/_bootstrap" in name or "importlib/util" in name:
            return True
        frame = frame.f_back
    return False


def _redeliver(signum: int) -> None:
    """Send the held-back signal to the main thread again once it has left the import."""
    main = threading.main_thread().ident
    while True:
        time.sleep(0.02)
        frame = sys._current_frames().get(main)
        if frame is None:
            return
        if not _in_import(frame):
            signal.pthread_kill(main, signum)
            return


@contextlib.contextmanager
def held():
    """Hold a stop signal back while the block runs (starting a rank must not be cut in half: the
    child would read half its instructions); raise it when the block ends."""
    _STOP["hold"] = _STOP.get("hold", 0) + 1
    try:
        yield
    finally:
        _STOP["hold"] -= 1
        if not _STOP["hold"] and _STOP["pending"] is not None and _STOP["signum"] is None:
            signum = _STOP["pending"]
            _STOP.update(signum=signum, pending=None)
            raise Stopped(signum)


def _handler(signum, frame):
    if _STOP["signum"] is not None:
        return  # already stopping: the first signal's cleanup and saving go on undisturbed
    if _STOP.get("hold"):
        _STOP["pending"] = _STOP["pending"] or signum
        return
    if _in_import(frame):  # raised here, it would leave a module half-made (and the import system may drop it)
        if _STOP["pending"] is None:
            _STOP["pending"] = signum
            threading.Thread(target=_redeliver, args=(signum,), daemon=True, name="commbench-stop").start()
        return
    _STOP.update(signum=signum, pending=None)
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals(ignore_after_stop: bool = False):
    """SIGINT, SIGTERM and SIGHUP raise Stopped while the block runs (main thread only); a second
    signal after the first is ignored. Nests: an inner block restores the outer one's handler.
    `ignore_after_stop` (the CLI, whose process ends with the block): once stopped, keep ignoring
    them to the end (the interpreter's shutdown would otherwise die of a late second SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if ignore_after_stop and _STOP["signum"] is not None else h)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent exits (no orphan even if the parent is killed)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T, Z...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def frozen(pid: int | None) -> bool:
    """Whether `pid` is stopped (SIGSTOP, a debugger): it will make no progress by itself."""
    state = process_state(pid) if pid is not None else None
    return state in ("T", "t")


def frozen_descendants(pid: int) -> list[int]:
    """The stopped processes (state T) among `pid`'s descendants: a rank frozen before it could write
    its pid file (mpiexec's children) is still seen, so start-up does not wait STARTUP_S for it."""
    found, frontier = [], [pid]
    while frontier:
        kids = []
        for parent in frontier:  # /proc/PID/task/TID/children: the kernel's list of each thread's children
            for task in Path(f"/proc/{parent}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    kids += [int(c) for c in (task / "children").read_text().split()]
        found += [c for c in kids if frozen(c)]
        frontier = kids
    return found


def allowance(timeout_s: float, joined: int, ranks: int, any_frozen: bool) -> float:
    """Seconds without progress before a run is declared stalled (see the module docstring)."""
    return timeout_s if joined >= ranks or any_frozen else STARTUP_S + timeout_s


OWNER_FILE = "owner.pid"
"""In each private folder a world makes: the pid of the process that made it."""


def private_folder(prefix: str, where: str | Path | None = None) -> Path:
    """A fresh folder only this user can enter (mkdtemp, 0700) holding its maker's pid, after removing
    the folders of the same prefix that a killed parent (SIGKILL: no cleanup ran) left behind."""
    import tempfile

    remove_stale(prefix, where)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    return folder


def remove_stale(prefix: str, where: str | Path | None = None) -> list[Path]:
    """Remove this user's `prefix`* folders whose maker is gone (its pid no longer runs); returns them."""
    import shutil
    import tempfile

    removed = []
    for folder in Path(where or tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.geteuid():
                continue
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being made
        if process_state(pid) in (None, "Z", "X"):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
