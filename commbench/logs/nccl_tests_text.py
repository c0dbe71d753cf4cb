"""nccl-tests text output (every 2.x version), split into runs, each read as a commbench sweep table.

Sources: the printing code of github.com/NVIDIA/nccl-tests, `src/common.cu` (header, Rank lines,
footer, `Collective test starting/concluded`) and `src/util.cu` (the result rows: nccl_tests_rows, with
the columns of each version). What else changed: 2.13.4+ Rank lines have `Group`; 2.16.7+ `# Collective
test starting: X_perf` (`_mpi` for the MPI build); 2.17.4+ `# nccl-tests version V nccl-headers=H
nccl-library=L` and `# Collective test concluded`.
The collective: the `Collective test starting` line, else the echoed command (`all_reduce_perf -b`),
else a known `X_perf` anywhere in the file name, else busbw/algbw where it identifies it (all_reduce,
or reduce_scatter with an op; nccl_tests_ratio: said in meta["assumptions"], printed), else --collective.
Ranks: the `# Rank` lines (one per GPU: `-g 8` in one process prints 8), else the echoed command
(launcher processes x -t x -g), else --ranks. A run is one `# nThread` header and its rows; rows whose
size falls (`-N` repeats; any repeat where minBytes = maxBytes) or whose type or op changes (`-d all`,
`-o all`) start a new run. Rows of 0 bytes (`-b` below one element per
rank) move nothing and are skipped with a note. `time_us_p50` is nccl-tests' time: the mean per
iteration over `iters` back-to-back calls, averaged over ranks (`-a 1`; `-a 0/2/3` from the echoed
command: rank 0, min, max, said in the timing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from commbench.collectives import get_collective
from commbench.logs import nccl_tests_ratio
from commbench.logs.nccl_tests_lines import _NAMES, NCCL_TESTS, PERF_IN_NAME
from commbench.logs.nccl_tests_lines import command as _command
from commbench.logs.nccl_tests_lines import footer as _footer
from commbench.logs.nccl_tests_lines import header_settings as _header_settings
from commbench.logs.nccl_tests_rows import REDOPS, ROW, TIMESTAMP, TYPE_BYTES
from commbench.logs.nccl_tests_rows import figures as _figures
from commbench.logs.nccl_tests_rows import layout as _layout
from commbench.logs.nccl_tests_rows import LEFT_OUT, UNSURE
from commbench.logs.nccl_tests_rows import rejoin as _rejoin
from commbench.logs.nccl_tests_rows import unwrap as _unwrap
from commbench.logs.common import (LogTable, ReadOptions, RunRef, clean_lines, launcher_processes, number, ranks_from_ratio,
                                   refuse)

RANK_LINE = re.compile(r"^#\s*Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?(?:Pid\s+(\d+)\s+)?on\s+(\S+)\s+device\s+(\d+)")
NTHREAD = re.compile(r"^#\s*nThread\s+(\d+)\s+nGpus\s+(\d+)")
OVER_RANKS = {0: "rank 0's time (-a 0)", 1: "averaged over ranks", 2: "the minimum over ranks (-a 2)",
              3: "the maximum over ranks (-a 3)"}  # -a, --average (src/common.cu; default 1)
HEADER_BY = re.compile(r"^\s*(\d+): \s*#\s*nThread|\[[^\]\s]*?\d+,(\d+)\]<stdout>:\s*#\s*nThread", re.M)
START_ANYWHERE = re.compile(r"#\s*(nThread \d+ nGpus|Collective test starting:|nccl-tests version)")


def looks_like(text: str) -> bool:
    return bool(re.search(r"#\s*nThread \d+ nGpus|#\s*size\s+count\s+type|#\s*Avg bus bandwidth\s*:|"
                          r"#\s*Collective test starting:", text))


@dataclass
class _Run:
    pre: dict = field(default_factory=dict)  # version, starting collective, command lines before the header
    header: bool = False
    threads: int = 1
    gpus: int = 1
    settings: dict = field(default_factory=dict)
    ranks: list = field(default_factory=list)  # (rank, pid, host, group)
    rank_lines_elided: bool = False
    columns: list | None = None
    rows: list = field(default_factory=list)
    zero_rows: int = 0
    footer: float | None = None
    concluded: bool = False
    left_out: list = field(default_factory=list)  # sizes of rows an INFO line cut and nothing finished
    wrap_unsure: int = 0  # the size of a row followed by figures that could not be joined to it
    failure: str = ""  # nccl-tests' own `Test NCCL failure common.cu:N '...'` line, where the run died
    cycle: int = 0


def _parse(lines: list[str]) -> tuple[list[_Run], dict]:
    runs: list[_Run] = []
    pending: dict = {}
    info = {"nccl_version": None, "commands": []}
    current: _Run | None = None

    def new_run(**kw) -> _Run:
        nonlocal current, pending
        current = _Run(pre=kw.pop("pre", pending), **kw)
        pending = {}
        runs.append(current)
        return current

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if " NCCL INFO " in line or " NCCL WARN " in line:
            version = re.search(r"NCCL version (\S+)", line)
            if version and not info["nccl_version"]:
                info["nccl_version"] = version.group(1)
            continue
        if line.startswith(UNSURE):  # a hard-wrapped row that cannot be joined for sure: refused when read
            if current is not None:
                current.wrap_unsure = current.wrap_unsure or int(line[len(UNSURE):])
            continue
        if line.startswith(LEFT_OUT) and current is not None:  # cut by an INFO line, never finished: noted
            current.left_out.append(line[len(LEFT_OUT):])
            continue
        if line.startswith("#"):
            _comment(line, current, pending, new_run)
            continue
        if line in ("...", "…") and current is not None and current.header and not current.rows:
            current.rank_lines_elided = True
            continue
        if m := re.match(r"NCCL version (\S+)", line):
            info["nccl_version"] = info["nccl_version"] or m.group(1)
            continue
        row = ROW.match(line)
        if row is None and current is not None and not current.failure and re.search(r"Test (?:NCCL |CUDA )?failure", line):
            current.failure = line[:120]
        if row is None:
            if command := _command(line):
                pending["command"] = command
                info["commands"].append(command["line"])
            continue
        _add_row(current if current is not None else new_run(), row, line, new_run)
        current = runs[-1]
    for earlier, later in zip(reversed(runs[:-1]), reversed(runs[1:])):  # -N repeats share the one footer
        if later.cycle == earlier.cycle + 1 and earlier.footer is None:
            earlier.footer, earlier.concluded = later.footer, later.concluded
    return runs, info


def _comment(line: str, current: _Run | None, pending: dict, new_run) -> None:
    """A `#` line: the version and starting lines (kept for the next run), the header (a new run), Rank
    lines, the column header, the footer and the concluding line."""
    if m := re.match(r"#\s*nccl-tests version (\S+)(?:.*nccl-library=(\d+))?", line):
        pending["version"], pending["library"] = m.group(1), m.group(2)
    elif m := re.match(r"#\s*Collective test starting:\s*(\S+)", line):
        pending["starting"] = m.group(1)
    elif m := NTHREAD.match(line):
        new_run(header=True, threads=int(m.group(1)), gpus=int(m.group(2)), settings=_header_settings(line))
    elif m := RANK_LINE.match(line):
        (current or new_run()).ranks.append((int(m.group(1)), int(m.group(3) or 0), m.group(4), int(m.group(2) or 0)))
    elif re.match(r"#\s*size\s+count\s+type\b", line):
        run = current if current is not None and not current.rows and current.footer is None else new_run()
        run.columns = line.lstrip("#").split()
    elif (m := re.match(r"#\s*Avg bus bandwidth\s*:\s*(\S+)", line)) and current is not None:
        current.footer = _footer(m.group(1))
    elif re.match(r"#\s*Collective test concluded", line) and current is not None:
        current.concluded = True


def _add_row(run: _Run, row: re.Match, line: str, new_run) -> None:
    size, count, dtype, rest = int(row.group(1)), int(row.group(2)), row.group(3), row.group(4)
    stamp = TIMESTAMP.search(" " + rest)
    rest = TIMESTAMP.sub(" ", " " + rest)
    tokens = rest.split()
    redop = tokens.pop(0) if tokens and tokens[0] in REDOPS else ""
    if run.footer is not None:  # rows after a footer with no new header: a run of their own
        run = new_run(header=run.header, threads=run.threads, gpus=run.gpus, ranks=list(run.ranks),
                      columns=run.columns, pre=dict(run.pre))
    if size == 0:
        run.zero_rows += 1
        return
    if run.rows:
        last = run.rows[-1]
        single = run.settings.get("minBytes", -1) == run.settings.get("maxBytes")  # -b X -e X -N 3: a row a run
        if size < last["msg_bytes"] or size == last["msg_bytes"] and single or (dtype, redop) != (last["type"], last["redop"]):
            run = new_run(header=run.header, threads=run.threads, gpus=run.gpus, ranks=list(run.ranks),
                          columns=run.columns, pre=dict(run.pre), settings=run.settings, cycle=run.cycle + 1,
                          footer=None)
    run.rows.append({"msg_bytes": size, "count": count, "type": dtype, "redop": redop, "tokens": tokens,
                     "timestamp": " ".join(stamp.groups()) if stamp else None, "line": line})


def _rows(run: _Run, path: Path, partial: bool) -> tuple[list[dict], list[str]]:
    notes, rows = [], []
    for i, row in enumerate(run.rows):
        tokens = list(row["tokens"])
        if row["count"] and row["msg_bytes"] % (row["count"] * TYPE_BYTES.get(row["type"], 1)):  # S = count x size x k
            notes.append(f"a row of {row['msg_bytes']} B whose count {row['count']} {row['type']} does not fit it "
                         "(a garbled line): left out")
            continue
        layout = _layout(run.columns, len(tokens))
        if layout is None:
            raise refuse(path, f"cannot read the nccl-tests row {row['line'][:90]!r}: {len(tokens)} figures after the "
                               "type, expected 8 (16 with -I 1), or a root column before them")
        has_root, names = layout
        want = len(names) * 2 + has_root
        if len(tokens) != want:
            if len(tokens) < want and i == len(run.rows) - 1 and partial:
                notes.append(f"last row ({row['msg_bytes']} B) cut off: left out")
                continue
            if len(tokens) < want and i == len(run.rows) - 1:
                raise refuse(path, f"the last row ({row['msg_bytes']} B) is cut off: the log is truncated "
                                   f"(--partial reads the {len(run.rows) - 1} complete rows)")
            raise refuse(path, f"cannot read the nccl-tests row {row['line'][:90]!r}: {len(tokens)} figures, "
                               f"the column header has {want}")
        if has_root:
            tokens = tokens[1:]
        try:
            out = {"msg_bytes": row["msg_bytes"], "count": row["count"], "type": row["type"], "redop": row["redop"],
                   **_figures(names, tokens[:len(names)], "", row["type"]),
                   **_figures(names, tokens[len(names):], "_in_place", row["type"])}
        except ValueError:
            raise refuse(path, f"cannot read the nccl-tests row {row['line'][:90]!r}: a figure is not a number") from None
        if row["timestamp"]:
            out["timestamp"] = row["timestamp"]
        rows.append(out)
    return rows, notes


def _collective(run: _Run, path: Path, opts: ReadOptions, runs: int) -> tuple[str | None, str]:
    """(nccl-tests name, where from) for a run; (None, '') where nothing says."""
    if run.pre.get("starting"):
        m = re.match(rf"({_NAMES})_perf", Path(run.pre["starting"]).name)
        if m:
            return m.group(1), "the 'Collective test starting' line"
        return run.pre["starting"], "the 'Collective test starting' line"
    command = run.pre.get("command")
    if command and command["collective"]:
        return command["collective"], "the echoed command"
    m = PERF_IN_NAME.search(path.name)
    if m and runs == 1:
        return m.group(1), "the file name"
    if opts.collective is None and (found := _inferred(run, opts)):
        return found
    return None, ""


def _ranks(run: _Run, opts: ReadOptions) -> tuple[int | None, str]:
    if run.ranks:
        if len({r[0] for r in run.ranks}) != len(run.ranks):
            return None, "the '# Rank' lines repeat a rank"
        groups = {r[3] for r in run.ranks}
        if len(groups) > 1:  # NCCL_TESTS_SPLIT: each group its own communicator; the rows are rank 0's group's
            first = run.ranks[0][3]
            return sum(r[3] == first for r in run.ranks), f"the '# Rank' lines of group {first} (NCCL_TESTS_SPLIT)"
        return len(run.ranks), "the '# Rank' lines"
    command = run.pre.get("command")
    if command:
        threads, gpus = command["threads"], command["gpus"]
        if not command["launched"]:
            return threads * gpus, f"the echoed command (one process, -t {threads} -g {gpus})"
        if command["processes"]:
            return command["processes"] * threads * gpus, (f"the echoed command ({command['processes']} processes "
                                                           f"x -t {threads} -g {gpus})")
    return None, ""


def read(path: Path, text: str, opts: ReadOptions) -> list[RunRef]:
    """Every run in the log, each to be read when chosen (a bad run refuses only if it is read)."""
    printers = {a or b for a, b in HEADER_BY.findall(text)}
    if len(printers) > 1:  # without MPI every process is its own world of one and prints it all
        raise refuse(path, f"nccl-tests output where processes {', '.join(sorted(printers, key=int))} each printed a "
                           "'# nThread' header: each ran alone (nccl-tests built without MPI=1, or started without "
                           "MPI), not one run of them all; keep one process's lines (e.g. `grep '^0: '`) to read one")
    runs, info = _parse(_unwrap(_rejoin(clean_lines(text))))
    runs = [r for r in runs if r.rows or r.header or r.columns is not None]
    if not runs:
        raise refuse(path, "nccl-tests output with no run in it (no '# nThread' header and no result rows)")
    refs = []
    for k, run in enumerate(runs, 1):
        name = _collective(run, path, opts, len(runs))[0]
        said = (NCCL_TESTS.get(name) or f"{name}_perf") if name else None  # a program commbench lacks: its own name
        refs.append(RunRef(k, len(runs), said,
                           lambda run=run, k=k: _table(run, k, len(runs), path, info, opts)))
    return refs


def _table(run: _Run, k: int, total: int, path: Path, info: dict, opts: ReadOptions) -> LogTable:
    where = f" run {k}/{total}" if total > 1 else ""
    if not run.rows:
        raise refuse(path, f"nccl-tests output{where} with no result rows (truncated, or the run failed)")
    name, coll_from = _collective(run, path, opts, total)
    if name is None:
        collective, coll_from = _given_collective(run, path, opts, where)
    else:
        collective = NCCL_TESTS.get(name)
        if collective is None:
            other = f"; {opts.opt('run')} N or {opts.opt('collective')} NAME reads another run of the file" if total > 1 else ""
            raise refuse(path, f"nccl-tests {name}_perf{where}: commbench has no {name!r} collective; it reads "
                               f"{', '.join(k_ + '_perf' for k_, v in NCCL_TESTS.items() if v)}{other}")
    if run.wrap_unsure:
        raise refuse(path, f"nccl-tests output{where}: the {run.wrap_unsure} B row goes on over the next line(s) (hard-"
                           "wrapped by a page or `fold`) and no one way of joining them gives the header's columns; "
                           "unwrap the rows")
    rows, notes = _rows(run, path, opts.partial)
    ranks, ranks_from = _checked_ranks(run, rows, collective, coll_from, path, opts, where)
    if run.footer is None:
        if not opts.partial:
            why = f"the run failed ({run.failure!r})" if run.failure else "cut off or pasted in part"
            raise refuse(path, f"nccl-tests {collective} output{where} without its '# Avg bus bandwidth' footer: {why} "
                               f"({opts.opt('partial')} reads the {len(rows)} rows it has)")
        notes.append("no '# Avg bus bandwidth' footer: read as partial")
    if run.left_out:
        notes.append(f"row(s) of {', '.join(run.left_out)} B cut by an NCCL INFO line and not finished in the log: left out")
    if run.zero_rows:
        notes.append(f"{run.zero_rows} 0-byte rows skipped (nothing moved)")
    if not rows:
        raise refuse(path, f"nccl-tests {collective} output{where} with no rows above 0 bytes")
    if run.cycle:
        notes.append(f"repeat {run.cycle + 1} of the same header (-N, -d all or -o all)")
    if any(r["wrong"] != r["wrong"] for r in rows):
        notes.append("#wrong N/A (validation off, -c 0)")
    if bad := [str(r["msg_bytes"]) for r in rows  # >= 1: not <= 2.12's `error` column, a max error like 2e-07
               if max(r["wrong"], r.get("wrong_in_place", 0)) >= 1]:
        notes.append(f"#wrong above 0 (results failed validation) at {', '.join(bad)} B")
    inferred = [f"{collective} {coll_from}"] if coll_from.startswith("inferred") else []
    frame = pd.DataFrame(rows)
    frame.insert(0, "collective", collective)
    frame.insert(2, "ranks", ranks)
    frame["time_us_mean"] = frame["time_us"]
    frame["time_us_p50"] = frame.pop("time_us_p50_iter") if "time_us_p50_iter" in frame else frame["time_us"]
    meta = _meta(run, info, path, k, total, frame, notes) | {
        "collective": collective, "collective_from": coll_from, "ranks": ranks, "ranks_from": ranks_from,
        "assumptions": inferred}
    tail = "; ".join([f"{ranks} ranks from {ranks_from}", "out-of-place times", *inferred, *notes])
    return LogTable(frame, meta, f"nccl-tests {collective} log {path.name}{where} ({tail})")


def _checked_ranks(run: _Run, rows: list, collective: str, coll_from: str, path: Path, opts: ReadOptions,
                   where: str) -> tuple[int, str]:
    """(ranks, where from): the log's, else --ranks; refused where neither says, where they disagree, or
    where busbw/algbw does not fit the collective at that count."""
    ranks, ranks_from = _ranks(run, opts)
    implied = ranks_from_ratio(collective, [(r["algbw_gbps"], r["busbw_gbps"]) for r in rows])
    if ranks is None:
        if opts.ranks is None:
            elided = " (the Rank lines are elided: '...')" if run.rank_lines_elided else ""
            hint = f"; busbw/algbw says {implied} for {collective}" if implied else ""
            raise refuse(path, f"nccl-tests {collective} output{where} without its '# Rank' lines{elided}: the rank "
                               f"count is not in the log{hint}; {opts.opt('ranks')} N reads it")
        ranks, ranks_from = opts.ranks, f"{opts.opt('ranks')} (the log does not say)"
    elif opts.ranks is not None and opts.ranks != ranks:
        raise refuse(path, f"{opts.opt('ranks')} {opts.ranks} disagrees with {ranks_from} ({ranks} ranks)")
    if implied is not None and implied != ranks:
        raise refuse(path, f"nccl-tests {collective} output{where}: {ranks} ranks from {ranks_from}, but busbw/algbw "
                           f"in the rows says {implied}; the log is inconsistent")
    if not nccl_tests_ratio.fits(pairs := _pairs(run), factor := get_collective(collective).busbw_factor(ranks)):
        raise refuse(path, f"nccl-tests output{where}: busbw/algbw = {max(pairs)[1] / max(pairs)[0]:.3f}, but {collective} "
                           f"on {ranks} ranks ({coll_from}; {ranks_from}) prints {factor:.3f}: not this collective or "
                           "rank count")
    return ranks, ranks_from


def _given_collective(run: _Run, path: Path, opts: ReadOptions, where: str) -> tuple[str, str]:
    """The user's --collective for a run the log does not name (refused where absent, unknown, or
    contradicted by what busbw/algbw identifies)."""
    from commbench.collectives import COLLECTIVES

    if opts.collective is None:
        hint = nccl_tests_ratio.hint(_pairs(run), ranks_from_ratio("all_reduce", _pairs(run)),
                                     {row["redop"] for row in run.rows})
        raise refuse(path, f"nccl-tests output{where} that does not say which collective it ran (no 'Collective test "
                           f"starting' line, echoed command or X_perf file name){hint}; {opts.opt('collective')} "
                           f"NAME reads it ({', '.join(COLLECTIVES)})")
    if opts.collective not in COLLECTIVES:
        raise refuse(path, f"{opts.opt('collective')} {opts.collective!r}: valid: {', '.join(COLLECTIVES)}")
    found = _inferred(run, opts)
    if found and found[0] != opts.collective:
        raise refuse(path, f"{opts.opt('collective')} {opts.collective} disagrees with the log{where}: {found[1]}")
    return opts.collective, f"{opts.opt('collective')} (the log does not say)"


def _meta(run: _Run, info: dict, path: Path, k: int, total: int, frame: pd.DataFrame, notes: list) -> dict:
    """What the log says about a run besides its rows: tool and NCCL versions, hosts, command, settings."""
    library = run.pre.get("library")
    nccl = info["nccl_version"] or (f"{int(library) // 10000}.{int(library) // 100 % 100}.{int(library) % 100}"
                                    if library else None)
    command = (run.pre.get("command") or {}).get("line") or (info["commands"][0] if len(info["commands"]) == 1 else None)
    per_iter = "time_us_p99" in frame
    over_ranks = OVER_RANKS.get((run.pre.get("command") or {}).get("average", 1), OVER_RANKS[1])
    meta = {"tool": "nccl-tests", "tool_version": run.pre.get("version") or "before 2.17.4 (no version line)",
            "format": "nccl-tests text", "nccl_version": nccl, "hosts": list(dict.fromkeys(r[2] for r in run.ranks)),
            "command": command, "run": k, "runs": total, "threads": run.threads, "gpus_per_thread": run.gpus,
            "iters": run.settings.get("iters"), "warmup": run.settings.get("warmup iters"),
            "validation": run.settings.get("validation"),
            "timing": f"nccl-tests mean per iteration (back-to-back calls, {over_ranks})"
                      + ("; min/max/p99 of the iterations from -I 1" if per_iter else ""),
            "avg_busbw_gbps": run.footer, "complete": run.footer is not None, "notes": notes, "file": str(path)}
    if run.footer is None:
        meta["error"] = "the log ends without its footer"
    return meta


def _pairs(run: _Run) -> list[tuple[float, float]]:
    return nccl_tests_ratio.pairs([row["tokens"] for row in run.rows], lambda n: _layout(run.columns, n))


def _inferred(run: _Run, opts: ReadOptions) -> tuple[str, str] | None:
    """all_reduce / reduce_scatter where busbw/algbw at the log's rank count pins it (nccl_tests_ratio)."""
    ranks, ranks_from = _ranks(run, opts) if _ranks(run, opts)[0] else (opts.ranks, opts.opt("ranks"))
    found = nccl_tests_ratio.identify(_pairs(run), {row["redop"] for row in run.rows}, ranks)
    return (found[0], f"{found[1]} (n from {ranks_from})") if found else None
