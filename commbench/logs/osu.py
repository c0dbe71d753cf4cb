"""OSU micro-benchmarks (5.x-7.x) and OMB-Py text output, read as commbench tables.

Sources: OSU Micro-Benchmarks, mvapich.cse.ohio-state.edu/benchmarks (`c/util/osu_util.h` and
`osu_util.c` print the headers and rows; `c/mpi/pt2pt/osu_latency.c`, `osu_bw.c`, `osu_bibw.c`,
`c/mpi/collective/osu_allreduce.c` ...), OMB-Py (same site, `python/` of the tarball):
- header `# OSU MPI[-CUDA|-ROCM|...] <Test name> Test vX.Y` (OMB-Py: `# OMB Python MPI <name> Test`),
  then `# Size  <figure columns>`; `-f`/`--full` adds Min, Max Latency (over ranks) and Iterations;
- pt2pt tests run on exactly 2 processes; osu_latency prints the one-way latency (half the round
  trip, us); osu_bw prints MB/s (1e6 B) of a window of back-to-back messages one way, osu_bibw the
  sum of both directions: bandwidths, not a time per message, kept as bandwidth_MBps;
- CUDA buffers: `-d cuda` (`# OSU MPI-CUDA ...`), pt2pt `D D` (`# Send Buffer on DEVICE (D) ...`);
- `-c` (validation, 7.x `osu_util.c`): a last `Validation` column of `Pass` / `Fail`, kept as `wrong`
  (0 / 1) and a note naming the sizes that failed; a row with more figures than its header is
  refused (it belongs to another tool: a run ends where a nccl-tests block begins);
- a run is one header's rows; OMB 7's `-T` list (a new `# Datatype:`) or sizes starting over split it;
- Size is per process: osu_allgather and osu_alltoall send `size` to each peer, so nccl-tests' S is
  size x n; osu_allreduce, osu_bcast and osu_reduce_scatter print the whole buffer (S = size).
OSU prints no rank count: it comes from Intel MPI's start-up lines (`[0] MPI startup(): 0 pid host
{cpus}`, I_MPI_DEBUG >= 4), the launcher line (`mpirun -np 8`, `srun -n 8`, `-N 2 --ntasks-per-node 4`),
else --ranks, else 2 with the assumption printed and kept in the metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from commbench.collectives import get_collective
from commbench.logs.common import LogTable, ReadOptions, RunRef, clean_lines, launcher_processes, number, refuse

HEADER = re.compile(r"^#\s*(OSU MPI(?:-(\w+))?|OMB Python MPI)[\s_]+(.+?)\s+Test(?:\s+v(\S+))?\s*$")  # MPI_Put: '_'
HEADER_ANYWHERE = re.compile(r"#\s*(OSU MPI|OMB Python MPI)")  # anywhere: after a launcher prefix too
FIGURE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|N/A|n/a|-?nan|inf")
OTHER_TOOL = re.compile(r"^#\s*(nThread \d+ nGpus|Collective test starting:|nccl-tests version)")  # nccl-tests begins
OSU_BINARY = re.compile(r"^(osu_\w+|run\.py)$")
STARTUP_RANK = re.compile(r"^\[\d+\]\s+MPI startup\(\):\s+(?P<rank>\d+)\s+\d+\s+(?P<host>\S+)\s+\{")
MCW_RANK = re.compile(r"^\[(?P<host>[^:\]]+):\d+\]\s+MCW rank (?P<rank>\d+) (?:bound|is not bound)")
MV2_RANK = re.compile(r"^RANK:\s*(?P<rank>\d+)\s+CPU_SET:")
# normalised test name (lower case, letters only, "latency" dropped) -> (test, collective, S = size x n)
TESTS = {"": ("osu_latency", "send_recv", False), "bandwidth": ("osu_bw", "send_recv", False),
         "bidirectionalbandwidth": ("osu_bibw", "send_recv_bidir", False),
         "allreduce": ("osu_allreduce", "all_reduce", False), "allgather": ("osu_allgather", "all_gather", True),
         "alltoall": ("osu_alltoall", "all_to_all", True),
         "alltoallpersonalizedexchange": ("osu_alltoall", "all_to_all", True),
         "broadcast": ("osu_bcast", "broadcast", False), "bcast": ("osu_bcast", "broadcast", False),
         "reducescatter": ("osu_reduce_scatter", "reduce_scatter", False)}
PT2PT = {"osu_latency", "osu_bw", "osu_bibw"}


def looks_like(text: str) -> bool:
    return bool(HEADER_ANYWHERE.search(text))


def _columns(line: str) -> list[str]:
    """The figure columns of a `# Size ...` header: 'avg', 'min', 'max', 'iterations', 'bandwidth', ..."""
    names = re.split(r"\s{2,}", line.lstrip("#").strip())[1:]
    if len(names) <= 1:  # a page scrape that collapsed the blanks: the known column names, in order
        names = [m.group(0) for m in re.finditer(r"(?:Avg|Min|Max|P\d+)\s*(?:Tail\s*)?Lat(?:ency)?(?:\s*\(us\))?|"
                                                 r"Iterations|Validation|Bandwidth(?:\s*\(MB/s\))?|MB/s|Latency",
                                                 line.lstrip("#").strip())]
    out = []
    for name in names:
        low = name.lower()
        out.append("iterations" if "iteration" in low else "validation" if "validation" in low
                   else "bandwidth" if "bandwidth" in low or "mb/s" in low else "min" if low.startswith("min") else "max" if low.startswith("max")
                   else re.sub(r"[^a-z0-9]", "", low.split()[0]) if re.match(r"p\d+", low) else "avg")
    return out or ["avg"]


def _context(lines: list[str]) -> dict:
    """What a stretch of the log says about the processes: start-up or binding lines (rank, host), and
    the first launcher line that runs an OSU binary."""
    context = {"startup": [], "startup_from": "", "command": None, "processes": None}
    for line in lines:
        text = line.strip()
        for pattern, said in ((STARTUP_RANK, "Intel MPI's start-up lines"), (MCW_RANK, "Open MPI's --report-bindings lines"),
                              (MV2_RANK, "MVAPICH's CPU affinity lines")):
            if m := pattern.match(text):
                context["startup"].append((int(m.group("rank")), m.groupdict().get("host") or ""))
                context["startup_from"] = said
                break
        else:
            if not text.startswith("#") and context["command"] is None:
                procs, _, command = launcher_processes(line, OSU_BINARY)
                if command:
                    context["command"], context["processes"] = command, procs
    return context


def read(path: Path, text: str, opts: ReadOptions) -> list[RunRef]:
    lines = clean_lines(text)
    starts = [i for i, line in enumerate(lines) if HEADER.match(line.strip())]
    if not starts:
        raise refuse(path, "OSU / OMB-Py output without its '# OSU MPI ... Test' header line: cut off or garbled")
    whole = _context(lines)
    runs = []  # (the run's lines, its context)
    for k, start in enumerate(starts, 1):
        end = starts[k] if k < len(starts) else len(lines)
        end = next((i for i in range(start + 1, end) if OTHER_TOOL.match(lines[i].strip())), end)  # a mixed file
        # each run's own launcher or start-up lines (those since the previous run), else the file's
        own = _context(lines[starts[k - 2] + 1 if k > 1 else 0:start]) if len(starts) > 1 else whole
        context = {key: own[key] if own["startup"] or own["command"] else whole[key] for key in whole}
        runs += [(segment, context) for segment in _segments(lines, start, end)]
    refs = []
    for k, (segment, context) in enumerate(runs, 1):
        test = _test(segment[0].strip())
        refs.append(RunRef(k, len(runs), test[1] if test else None,
                           lambda s=segment, k=k, c=context: _table(path, s, c, k, len(runs), opts)))
    return refs


def _segments(lines: list[str], start: int, end: int) -> list[list[str]]:
    """One header's lines as runs: a new `# Datatype:` after rows (OMB 7's `-T` list of types) or a size
    that falls (the sweep again) starts another, under the same header and column line."""
    segments, current, columns, last, rows = [], [lines[start]], None, -1, False
    for line in lines[start + 1:end]:
        text, size = line.strip(), re.match(r"(\d+)\s", line.strip() + " ")
        fresh = text.startswith("#") and re.match(r"#\s*Datatype:", text) and rows
        if fresh or (size and columns and int(size.group(1)) < last and FIGURE.fullmatch((text.split() + ["", ""])[1])):
            segments.append(current)
            current, last, rows = [lines[start]] + ([] if fresh else [columns]), -1, False
        if re.match(r"#\s*Size\b", text):
            columns = line
        elif size and columns and FIGURE.fullmatch((text.split() + ["", ""])[1]):
            last, rows = int(size.group(1)), True
        current.append(line)
    return segments + [current]


def _test(header: str):
    m = HEADER.match(header)
    key = re.sub(r"[^a-z]", "", m.group(3).lower()).replace("latency", "")
    return TESTS.get(key)


def _scan(path: Path, lines: list[str], tool: str, opts: ReadOptions) -> tuple[list, dict]:
    """The (size, {column: figure}) rows under a header, and what the header lines say."""
    header = HEADER.match(lines[0].strip())
    variant = header.group(2)
    said = {"columns": None, "notes": [], "elided": False, "zero": 0, "datatype": None,
            "buffers": "device (CUDA)" if variant and variant.upper() == "CUDA" else ("device" if variant else "host")}
    rows = []
    for raw in lines[1:]:
        line = raw.strip()
        if line.startswith("#"):
            if re.match(r"#\s*Size\b", line):
                said["columns"] = _columns(line)
            elif m := re.match(r"#\s*Datatype:\s*(\S+?)\.?$", line):
                said["datatype"] = m.group(1)
            elif re.search(r"Buffer on (DEVICE|MANAGED|HOST)", line):  # pt2pt D D, H H, M M (-d cuda|rocm)
                said["buffers"] = line.lstrip("# ").strip()
            continue
        if line in ("...", "\u2026"):
            said["elided"] = True
            continue
        fields, columns = line.split(), said["columns"]
        if not fields or not re.fullmatch(r"\d+", fields[0]) or columns is None:
            continue
        if len(fields) > 1 and not FIGURE.fullmatch(fields[1]):  # `1 more process has sent help message ...` (Open MPI)
            continue
        if len(fields) - 1 > len(columns):
            raise refuse(path, f"{tool} row {line[:80]!r} has {len(fields) - 1} figures, the header "
                               f"'{' '.join(columns)}' {len(columns)}: not a row of this test")
        if len(fields) - 1 < len(columns):
            if opts.partial:
                said["notes"].append(f"last row ({fields[0]} B) cut off: left out")
                continue
            raise refuse(path, f"{tool} row {line[:80]!r} has {len(fields) - 1} figures, the header {len(columns)}: "
                               f"cut off? ({opts.opt('partial')} reads the complete rows)")
        try:
            values = dict(zip(columns, (_figure(c, x) for c, x in zip(columns, fields[1:]))))
        except ValueError:
            raise refuse(path, f"cannot read the {tool} row {line[:80]!r}: a figure is not a number") from None
        if int(fields[0]) == 0:
            said["zero"] += 1
            continue
        rows.append((int(fields[0]), values))
    return rows, said


def _figure(column: str, text: str) -> float:
    """A printed figure; the `-c` Validation column's Pass / Fail as 0 / 1 wrong results."""
    if column == "validation":
        if text not in ("Pass", "Fail"):
            raise ValueError(text)
        return float(text == "Fail")
    return number(text)


def _row(name: str, collective: str, per_peer: bool, ranks: int, size: int, values: dict) -> dict:
    """One table row: S in nccl-tests' convention, and the figures the test prints."""
    msg = size * ranks if per_peer else size
    row = {"collective": collective, "msg_bytes": msg, "ranks": ranks, "osu_size_bytes": size}
    if name in ("osu_bw", "osu_bibw"):
        mbps = values.get("bandwidth", values.get("avg"))
        per_direction = mbps / 2 if name == "osu_bibw" else mbps
        row.update({"bandwidth_MBps": mbps, "algbw_gbps": per_direction / 1e3, "busbw_gbps": per_direction / 1e3})
    else:
        coll, t = get_collective(collective), values.get("avg")
        timed = t is not None and t > 0  # a 0.00 latency (below the print resolution) has no bandwidth
        row.update({"time_us_p50": t, "time_us": t, "time_us_mean": t,
                    "algbw_gbps": coll.algbw_gbps(msg, t * 1e-6) if timed else float("nan"),
                    "busbw_gbps": coll.busbw_gbps(msg, t * 1e-6, ranks) if timed else float("nan")})
        if "min" in values:
            row["time_us_rank_min"] = values["min"]  # min over ranks of each rank's mean, not a sample
        if "max" in values:
            row["time_us_rank_max"] = values["max"]
        row.update({f"time_us_{key}": value for key, value in values.items() if re.fullmatch(r"p\d+", key)})
    if "iterations" in values:
        row["iterations"] = int(values["iterations"])
    if "validation" in values:
        row["wrong"] = values["validation"]  # -c: 1 where OSU printed Fail
    return row


def _table(path: Path, lines: list[str], context: dict, k: int, total: int, opts: ReadOptions) -> LogTable:
    where = f" run {k}/{total}" if total > 1 else ""
    family, _, title, version = HEADER.match(lines[0].strip()).groups()
    test = _test(lines[0].strip())
    if test is None:
        known = sorted({t for t, _, _ in TESTS.values()})
        raise refuse(path, f"{family} {title} Test: commbench reads {', '.join(known)} (latency, bandwidth and the "
                           "collectives it has)")
    name, collective, per_peer = test
    tool = "OMB-Py" if family.startswith("OMB") else "OSU"
    rows, said = _scan(path, lines, tool, opts)
    if not rows:
        raise refuse(path, f"{tool} output with no result rows ({name}{where}: truncated, or the run failed)")
    ranks, ranks_from, assumed = _ranks(name, context, opts)
    if opts.ranks is not None and not ranks_from.startswith(("an assumption", opts.opt("ranks"))) and opts.ranks != ranks:
        raise refuse(path, f"{opts.opt('ranks')} {opts.ranks} disagrees with {ranks_from} ({ranks} ranks)")
    out = [_row(name, collective, per_peer, ranks, size, values) for size, values in rows]
    notes = said["notes"] + ([f"{said['zero']} 0-byte row skipped (nothing moved)"] if said["zero"] else []) + (
        ["rows elided in the file ('...')"] if said["elided"] else []) + (
        ["osu_bibw MB/s counts both directions: algbw_gbps is one direction (half)"] if name == "osu_bibw" else []) + (
        [f"validation (-c) printed Fail at OSU size {', '.join(str(r['osu_size_bytes']) for r in out if r.get('wrong'))} B"]
        if any(r.get("wrong") for r in out) else [])
    bandwidth = name in ("osu_bw", "osu_bibw")
    meta = {"tool": tool, "tool_version": version or ("OMB-Py" if tool == "OMB-Py" else None), "format": f"{tool} text",
            "test": name, "collective": collective, "collective_from": f"the header '{lines[0].strip()}'",
            "ranks": ranks, "ranks_from": ranks_from, "assumptions": [assumed] if assumed else [],
            "hosts": list(dict.fromkeys(h for _, h in context["startup"] if h)), "command": context["command"], "run": k,
            "runs": total, "buffers": said["buffers"], "datatype": said["datatype"],
            "timing": ("bandwidth MB/s (1e6 B/s), a window of back-to-back messages" if bandwidth
                       else "OSU mean latency per iteration (averaged over ranks)"
                       + ("; one-way (half the round trip)" if name == "osu_latency" else "")),
            "complete": True, "notes": notes + ([assumed] if assumed else []), "file": str(path)}
    tail = "; ".join([name, assumed or f"{ranks} ranks from {ranks_from}",
                      "bandwidth MB/s" if bandwidth else "mean latency", *notes])
    return LogTable(pd.DataFrame(out), meta, f"{tool} {collective} log {path.name}{where} ({tail})")


def _ranks(name: str, context: dict, opts: ReadOptions) -> tuple[int, str, str]:
    """(ranks, where from, the assumption made where nothing says: '' when none)."""
    if name in PT2PT:
        return 2, f"{name} (a point-to-point test runs on exactly 2 processes)", ""
    if context["startup"]:
        return len({r for r, _ in context["startup"]}), context["startup_from"], ""
    if context["processes"]:
        return context["processes"], "the launcher line", ""
    if opts.ranks is not None:
        return opts.ranks, f"{opts.opt('ranks')} (the log does not say)", ""
    return 2, "an assumption", (f"read as 2 ranks: the log shows no launcher line or MPI start-up lines "
                                f"({opts.opt('ranks')} N sets the count)")
