"""Issue 24's measuring-path cases: what runs at run time is the user's own, nothing is left behind,
one supervision contract for sweep, replay and validate, and values checked wherever they are measured.

Each test fails on the main before the fix: a planted c-loop library ran; every c-loop run left a
16 MiB /dev/shm segment and an ompi.* folder; a second SIGINT printed a traceback and lost the rows
(and hung gloo with a frozen rank); Ctrl-C at start-up exited 1; a rank dying after rank 0 marked
itself done ended with 137 and no message; a frozen MPI rank took STARTUP_S + --timeout before the
first row; replay and validate wrote nothing on failure; replay never checked its values; fit and
validate --sweep took rows with wrong > 0; a validate FAIL said no reason.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, mpiexec_path
from tests.test_reliability import _alive, _descendants, _mpi_rank_pid, _start_sweep, _wait_for_rows

COMMBENCH = [sys.executable, "-m", "commbench"]
needs_mpi = pytest.mark.skipif(mpiexec_path() is None, reason="no mpiexec")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
OTHER_UID = 65534  # nobody


def _run(*args, env=None, timeout=180):
    return subprocess.run([*COMMBENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


# ---- what is loaded at run time --------------------------------------------------------------

@needs_mpi
@needs_root
def test_a_c_loop_library_planted_by_another_user_is_refused_and_never_runs(tmp_path, monkeypatch):
    """The build's exact name in this user's cache folder holds a library of another owner whose
    constructor would write a marker file: refused in one line before any rank starts, marker absent."""
    from commbench.measure.backends.c_loop import _mpicc, library_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _, target = library_path()
    marker = tmp_path / "planted-ran"
    source = tmp_path / "planted.c"
    source.write_text('#include <stdio.h>\n__attribute__((constructor)) static void planted(void) '
                      f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n'
                      "double commbench_loop(void) { return 0; }\nconst void *commbench_in_place(void) { return 0; }\n")
    subprocess.run([_mpicc(), "-shared", "-fPIC", "-o", str(target), str(source)], check=True)
    os.chown(target, OTHER_UID, OTHER_UID)
    proc = _run("sweep", "all_reduce", "--backend", "mpi", "--timing", "c-loop", "-b", "8", "-e", "8", "--iters", "2",
                env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr
    assert f"refuses the library {target}: it belongs to uid {OTHER_UID}" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()


@needs_root
def test_a_build_folder_of_another_user_or_writable_by_others_is_refused(tmp_path, monkeypatch):
    from commbench import CommbenchError
    from commbench.measure.backends.c_loop import build_c_loop

    folder = tmp_path / "cache" / "commbench"
    folder.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    os.chown(folder, OTHER_UID, OTHER_UID)
    with pytest.raises(CommbenchError, match=f"refuses the folder {folder}: it belongs to uid {OTHER_UID}"):
        build_c_loop()
    os.chown(folder, os.geteuid(), os.getegid())
    folder.chmod(0o777)
    with pytest.raises(CommbenchError, match=r"others can write it \(mode 0777\)"):
        build_c_loop()


@needs_mpi
def test_the_c_loop_build_is_private_to_this_user(tmp_path, monkeypatch):
    """Built under a permissive umask (002), the library is still writable by this user only, in a
    folder made 0700."""
    from commbench.measure.backends.c_loop import build_c_loop

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = os.umask(0o002)
    try:
        lib = build_c_loop()
    finally:
        os.umask(old)
    assert lib.stat().st_uid == os.geteuid() and lib.stat().st_mode & 0o022 == 0
    assert lib.parent.stat().st_mode & 0o077 == 0


# ---- nothing left behind ----------------------------------------------------------------------

def _shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _left_in_shm(before: set[str], wait_s: float = 15.0) -> set[str]:
    """Entries /dev/shm gained that stay: other sessions' runs may hold theirs for a moment, a leak stays."""
    deadline = time.monotonic() + wait_s
    while True:
        left = {e for e in _shm_entries() - before if e.startswith(("sm_segment", "vader_segment", "commbench-mpi"))}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@needs_mpi
@pytest.mark.parametrize("how", ["finishes", "rank 1 killed"])
def test_c_loop_and_mpi_runs_leave_no_shared_memory_or_session_folder(tmp_path, how):
    """A private TMPDIR (where Open MPI puts its ompi.* / prte.* session folders and commbench its
    private folders) is empty afterwards, and so is a private backing folder this process's own
    MPI would use; nothing this run made stays in /dev/shm."""
    tmp, backing = tmp_path / "tmp", tmp_path / "backing"
    tmp.mkdir()
    backing.mkdir()
    env = {"TMPDIR": str(tmp), "OMPI_MCA_btl_sm_backing_directory": str(backing)}
    before = _shm_entries()
    if how == "finishes":
        proc = _run("sweep", "all_reduce", "--backend", "mpi", "--timing", "c-loop", "-b", "8", "-e", "1K", "--iters", "3",
                    env=env)
        assert proc.returncode == 0, proc.stderr
    else:
        out = tmp_path / "killed.csv"
        proc = subprocess.Popen([*COMMBENCH, "sweep", "all_reduce", "--backend", "mpi", "--timing", "c-loop", "-b", "8",
                                 "-e", "64M", "--out", str(out), "--timeout", "10"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        os.kill(_mpi_rank_pid(proc, 1), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "rank 1 died" in err, err
    assert os.listdir(tmp) == [] and os.listdir(backing) == []
    assert _left_in_shm(before) == set()


# ---- one supervision contract -----------------------------------------------------------------

def _rank_pids(proc, backend: str) -> list[int]:
    if backend == "mpi":
        return [_mpi_rank_pid(proc, r) for r in (0, 1)]
    return [p for p in _descendants(proc.pid)
            if b"multiprocessing" in open(f"/proc/{p}/cmdline", "rb").read()
            and b"resource_tracker" not in open(f"/proc/{p}/cmdline", "rb").read()]


@pytest.mark.parametrize("backend", ["gloo", pytest.param("mpi", marks=needs_mpi)])
def test_a_second_sigint_with_a_frozen_rank_keeps_the_rows_and_stops_every_rank_within_a_second(tmp_path, backend):
    out = tmp_path / "twice.csv"
    proc = _start_sweep(backend, out)
    _wait_for_rows(out, proc, backend)
    ranks = _rank_pids(proc, backend)
    everything = _descendants(proc.pid)
    os.kill(ranks[-1], signal.SIGSTOP)  # a frozen rank: only SIGKILL ends it
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - started
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped by SIGINT" in err, err
    assert took < 1.0 + 4.0  # STOP_GRACE_S plus saving the rows on a loaded 2-core host
    assert _alive(ranks) == [], err  # the ranks (the frozen one too) are gone when the command returns
    time.sleep(2)  # multiprocessing's resource tracker leaves once it sees its parent gone
    assert _alive(everything) == [], [open(f"/proc/{p}/cmdline").read() for p in _alive(everything)]
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["complete"] is False and "stopped by SIGINT" in meta["error"]
    assert len(pd.read_csv(out)) >= 2


def test_sigint_during_start_up_exits_130_not_1(tmp_path):
    """Before any world exists (imports, option checks): one line, exit 130, no traceback."""
    proc = subprocess.Popen([*COMMBENCH, "sweep", "all_reduce", "--max-bytes", "64", "--iters", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the interpreter's start-up or commbench's imports
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err


@needs_mpi
def test_a_rank_frozen_before_the_first_row_ends_the_run_within_the_timeout(tmp_path):
    out = tmp_path / "frozen.csv"
    proc = _start_sweep("mpi", out, "--timeout", "5")
    deadline = time.monotonic() + 60
    from tests.test_reliability import _world_dir

    while time.monotonic() < deadline:  # freeze rank 1 as soon as it exists: long before its first row
        folder = _world_dir(proc)
        if folder and os.path.exists(f"{folder}/rank1.pid"):
            pid = int(open(f"{folder}/rank1.pid").read())
            break
        time.sleep(0.02)
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 2 and "rank 1 is stopped" in err, err
    assert took < 5 + 8  # --timeout, not STARTUP_S + --timeout (65 s)


@needs_mpi
def test_a_rank_frozen_before_it_writes_its_pid_file_ends_the_run_within_the_timeout(tmp_path):
    """Frozen as soon as mpiexec starts it (before its pid file, so only the process tree shows it):
    --timeout 5 ends the run in about 5 s, not the 60 s start-up allowance + 5 s (issue 24)."""
    from commbench.measure.supervise import process_state

    out = tmp_path / "early.csv"
    proc = _start_sweep("mpi", out, "--timeout", "5")
    deadline, ranks = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(ranks) < 2:
        ranks = [p for p in _descendants(proc.pid) if b"mpi_world" in open(f"/proc/{p}/cmdline", "rb").read()]
        time.sleep(0.01)
    os.kill(ranks[-1], signal.SIGSTOP)
    assert process_state(ranks[-1]) in ("T", "t")
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 2 and "no progress within 5 s" in err and "stopped (SIGSTOP or a debugger)" in err, err
    assert took < 5 + 8, err
    assert not out.exists()


@needs_mpi
def test_a_rank_dying_after_the_table_is_complete_changes_nothing(tmp_path, monkeypatch, cli):
    """Rank 1 SIGKILLs itself once rank 0 has handed over the whole table: the sweep is whole and
    checked, so it is printed and saved as complete, exit 0 (was: 137 and no message)."""
    from commbench.measure import sweeps as sweep
    from tests.faults import die_when_done

    real = sweep.sweep_job
    monkeypatch.setattr(sweep, "sweep_job", lambda *a, **k: die_when_done(1, real(*a, **k)))
    out = tmp_path / "late.csv"
    result = cli("sweep", "all_reduce", "--backend", "mpi", "-b", "8", "-e", "64", "--iters", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out).msg_bytes) == [8, 8, 16, 16, 32, 32, 64, 64]
    assert json.loads(Path(f"{out}.meta.json").read_text())["complete"] is True


def test_replay_and_validate_save_their_finished_rows_when_a_rank_dies(tmp_path, monkeypatch, cli):
    from commbench.measure import replays as replay, sweeps as sweep
    from tests.faults import _exit_job, exit_job

    monkeypatch.setattr(sweep, "sweep_job", exit_job(1, 2))
    out = tmp_path / "validate.csv"
    result = cli("fabric", "validate", "--expect", "loopback", "--max-bytes", "1K", "--iters", "2", "--timeout", "5",
                 "--out", out)
    assert result.exit_code == 2 and "after 2 finished rows" in result.output, result.output
    assert list(pd.read_csv(out).msg_bytes) == [8, 16]
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["complete"] is False and meta["verdict"] is None and "rank 1 exited with code 17" in meta["error"]

    def dying_replay(calls_by_phase, iters, warmup, wire, world_size):
        import functools

        return functools.partial(_dying_replay, calls_by_phase, iters, warmup, wire, world_size)

    monkeypatch.setattr(replay, "replay_job", dying_replay)
    out = tmp_path / "replay.csv"
    result = cli("trace", "debug-tiny", "--batch", "4", "--isl", "32", "--osl", "8", "--replay", "--iters", "2",
                 "--phase", "decode", "--timeout", "5", "--out", out)
    assert result.exit_code == 2 and "rank 1 exited with code 17" in result.output, result.output
    saved = pd.read_csv(out)
    assert len(saved) >= 1 and "wire_us_per_step_200gbe" in saved.columns
    assert json.loads(Path(f"{out}.meta.json").read_text())["complete"] is False


def _dying_replay(calls_by_phase, iters, warmup, wire, world_size, backend, on_row):
    """The replay, with rank 1 exiting (status 17) once its part of every call is done, before the
    table is handed over: rank 0 has streamed its rows, then finds rank 1 gone."""
    from commbench.measure.replays import _replay

    frame = _replay(calls_by_phase, iters, warmup, wire, world_size, backend, on_row)
    if backend.rank == 1:
        os._exit(17)
    return frame


# ---- values checked wherever they are measured -----------------------------------------------

@pytest.mark.parametrize("backend", ["gloo", pytest.param("mpi", marks=needs_mpi)])
def test_replay_checks_every_call_on_every_rank(tmp_path, monkeypatch, cli, backend):
    """A rank whose results read back one element off: every site of the replay counts exactly that
    one wrong element (rank 1's check; rank 0's is clean), and the run fails."""
    from commbench.measure import replays as replay
    from tests.faults import corrupt_replay_job

    monkeypatch.setattr(replay, "replay_job", corrupt_replay_job(1))
    out = tmp_path / "corrupt.json"
    args = ["trace", "debug-tiny", "--batch", "4", "--isl", "32", "--osl", "8", "--replay", "--iters", "2",
            "--phase", "decode", "--backend", backend, "--json", "--out", out]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "wrong values in the replay's correctness check" in result.output
    rows = json.loads(out.read_text())["rows"]
    sites = [r for r in rows if r["site"] != "step"]
    # debug-tiny tp=2 decode: embedding, 4 layers x (o_proj, mlp) all-reduces, the logits gather: each
    # site's one distinct call is checked once on rank 1, which sees its first element off
    assert [r["wrong"] for r in sites] == [1] * len(sites) and len(sites) == 4
    step = next(r for r in rows if r["site"] == "step")
    assert step["wrong"] == len(sites)
    # the message counts each wrong value once: the sites', not again the step row that totals them
    assert f"{len(sites)} wrong values in the replay's" in result.output


def test_an_uncorrupted_replay_counts_no_wrong_value(cli):
    result = cli("trace", "debug-tiny", "--mode", "pp", "--batch", "4", "--isl", "32", "--osl", "8", "--replay",
                 "--iters", "2", "--phase", "decode", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert {r["wrong"] for r in rows} == {0}


def _sweep_table(path: Path, wrong: list[int]):
    sizes = [8 * 4**i for i in range(len(wrong))]
    rows = [{"collective": "all_reduce", "msg_bytes": s, "ranks": 2, "time_us_p50": 20 + s / 1e3,
             "time_us_min": 19 + s / 1e3, "busbw_gbps": s / (20 + s / 1e3) / 1e3, "wrong": w} for s, w in zip(sizes, wrong)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fit_validate_and_predict_refuse_rows_with_wrong_values_unless_allowed(tmp_path, cli):
    table = _sweep_table(tmp_path / "bad.csv", [0, 3, 0, 0, 1])
    for args in (("fabric", "fit", table), ("fabric", "validate", "--expect", "1gbit", "--sweep", table),
                 ("predict", "debug-tiny", "--fabric", table, "--batch", "1", "--mode", "tp")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "2 of 5 rows have wrong values (wrong > 0) (msg_bytes 32, 2,048)" in result.output
        assert "--allow-wrong" in result.output
    assert cli("fabric", "fit", table, "--allow-wrong").exit_code == 0
    assert cli("predict", "debug-tiny", "--fabric", table, "--batch", "1", "--mode", "tp", "--allow-wrong").exit_code == 0


def test_a_validate_fail_says_which_band_and_why(tmp_path, cli):
    """A saved 1 Gbit-like sweep judged against 200GbE: the bandwidth band fails, and the verdict says
    which band, its sizes, the measured value against the threshold and the diagnosis; a wrong
    value (allowed in) is a reason of its own."""
    sizes = [2**k for k in range(3, 25)]
    rows = [{"collective": "all_reduce", "msg_bytes": s, "ranks": 2, "time_us_p50": 30 + s * 1e6 / 0.125e9,
             "time_us_min": 30 + s * 1e6 / 0.125e9, "wrong": 1 if s == 1024 else 0} for s in sizes]
    table = tmp_path / "slow.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    result = cli("fabric", "validate", "--expect", "200gbe", "--sweep", table, "--allow-wrong", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    reasons = doc["reasons"]
    band = next(r for r in reasons if r.startswith("band bandwidth-bound"))
    assert f"({2**22}-{2**24} B)" in band and "below the threshold 21.25" in band  # 0.85 x 25 GB/s
    assert "consistent with a 1 GbE interface" in band
    assert any(r.startswith("1 wrong values in the correctness pass at 1,024 B") for r in reasons)
    text = cli("fabric", "validate", "--expect", "200gbe", "--sweep", table, "--allow-wrong").output
    assert "FAIL because band bandwidth-bound" in text


@needs_mpi
def test_folders_a_killed_parent_left_are_removed_by_the_next_run(tmp_path):
    """SIGKILL to the parent runs no cleanup: its private folders (row journal, session folders, the
    /dev/shm segment folder) stay until the next embedded world of this user removes them; folders
    whose maker still runs are left alone."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([*COMMBENCH, "sweep", "all_reduce", "--backend", "mpi", "-b", "1M", "-e", "64M",
                             "--iters", "200"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _mpi_rank_pid(proc, 1)  # the world is up and has journaled a row
    shm = [e for e in os.listdir("/dev/shm") if e.startswith("commbench-mpi-")
           and (Path("/dev/shm", e, "owner.pid").read_text().strip() == str(proc.pid))]
    proc.kill()
    proc.wait()
    left = [p.name for p in tmp_path.glob("commbench-mpi-*")]
    assert len(left) == 1 and len(shm) == 1  # what the kill left behind
    alive = tmp_path / "commbench-mpi-alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))  # a maker that still runs: kept
    run = _run("sweep", "all_reduce", "--backend", "mpi", "-b", "8", "-e", "8", "--iters", "2", env={"TMPDIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.glob("commbench-mpi-*")) == ["commbench-mpi-alive"]
    assert not os.path.exists(f"/dev/shm/{shm[0]}")
