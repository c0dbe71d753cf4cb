"""Measurements from the tools users already run, read into commbench's sweep table.

Detected by content, whatever the file is called:
- nccl-tests text output (`all_reduce_perf -b 8 -e 128M -f 2 -g 1 > log.txt`, any collective): the
  out-of-place block gives time_us_p50 (nccl-tests' mean per iteration), algbw and busbw; the
  in-place block is kept as time_us_in_place / busbw_gbps_in_place; ranks are the `# Rank` lines;
  the collective comes from the `Collective test starting:` line or the file name (X_perf);
- OSU micro-benchmarks text output (osu_latency, osu_allreduce, osu_allgather, osu_bcast,
  osu_reduce_scatter, osu_alltoall): the size column and the average latency; osu_latency is
  one-way (send_recv). OSU does not print the rank count: read as 2 ranks, said in the source line;
- a commbench table (CSV/JSON/Parquet written by `sweep --out`).
read_sweep returns (frame, metadata, source) where source says which format it read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from commbench import CommbenchError
from commbench.collectives import get_collective

NCCL_TESTS = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
              "alltoall": "all_to_all", "broadcast": "broadcast", "sendrecv": "send_recv_bidir"}
OSU_TESTS = {"latency": "send_recv", "allreduce": "all_reduce", "allgather": "all_gather", "broadcast": "broadcast",
             "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all"}
EXPECTED = ("a commbench sweep table (.csv/.json/.parquet from sweep --out), nccl-tests text output "
            "(all_reduce_perf ...) or OSU text output (osu_latency, osu_allreduce ...)")


def read_sweep(path: str | Path) -> tuple[pd.DataFrame, dict, str]:
    """The sweep in `path` as a commbench sweep table, its metadata, and which format it was."""
    path = Path(path)
    if not path.is_file():
        raise CommbenchError(f"{path}: no such file")
    head = path.read_bytes()[:4096]
    if b"\0" in head:
        raise CommbenchError(f"{path}: not text; expected {EXPECTED}")
    text = head.decode(errors="replace")
    if "# OSU" in text:
        return _osu(path)
    if "nThread" in text or "out-of-place" in text or "Avg bus bandwidth" in text:
        return _nccl_tests(path)
    if path.suffix in (".csv", ".json", ".parquet"):
        from commbench.results import load_table

        frame, meta = load_table(path)
        return frame, meta, f"commbench table {path.name}"
    raise CommbenchError(f"{path}: unknown format; expected {EXPECTED}")


def _collective_from(text: str, path: Path, table: dict, tool: str) -> str:
    if tool == "OSU":
        match = re.search(r"# OSU MPI\S* (.*?)Test", text)
        title = re.sub(r"[^a-z]", "", (match.group(1) if match else "").lower()).replace("latency", "")
        name = next((key for key in table if key.replace("_", "") in title and key != "latency"), "latency" if title == "" else title)
    else:
        match = re.search(r"Collective test starting:\s*(\w+?)_perf", text) or re.search(r"(\w+?)_perf", path.name)
        name = match.group(1) if match else ""
    if name not in table:
        raise CommbenchError(f"{path}: cannot tell which {tool} test this is (found {name or 'nothing'!r}); "
                             f"known: {', '.join(table)}")
    return table[name]


def _nccl_tests(path: Path):
    text = path.read_text(errors="replace")
    collective = _collective_from(text, path, NCCL_TESTS, "nccl-tests")
    ranks = len(re.findall(r"^#\s+Rank\s+\d+", text, re.MULTILINE))
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or line.lstrip().startswith("#") or not fields[0].isdigit():
            continue
        # size count type [redop root] time algbw busbw #wrong time algbw busbw #wrong
        numeric_tail = fields[-8:]
        try:
            size = int(fields[0])
            t_out, alg_out, bus_out, wrong_out, t_in, alg_in, bus_in, wrong_in = (
                float(x) if x not in ("N/A",) else float("nan") for x in numeric_tail)
        except ValueError:
            raise CommbenchError(f"{path}: cannot read the nccl-tests row {line.strip()!r}") from None
        rows.append({"collective": collective, "msg_bytes": size, "count": int(fields[1]), "type": fields[2],
                     "ranks": ranks, "time_us_p50": t_out, "time_us": t_out, "algbw_gbps": alg_out,
                     "busbw_gbps": bus_out, "wrong": int(wrong_out) if wrong_out == wrong_out else 0,
                     "time_us_in_place": t_in, "busbw_gbps_in_place": bus_in})
    if not ranks:
        raise CommbenchError(f"{path}: nccl-tests output without its '# Rank' lines (truncated?); cannot tell the rank count")
    if not rows:
        raise CommbenchError(f"{path}: nccl-tests output with no result rows (truncated, or the run failed)")
    if "Avg bus bandwidth" not in text:
        raise CommbenchError(f"{path}: nccl-tests output without its '# Avg bus bandwidth' footer: the run was cut off")
    meta = {"tool": "nccl-tests", "collective": collective, "ranks": ranks, "timing": "nccl-tests mean per iteration",
            "complete": True}
    return pd.DataFrame(rows), meta, f"nccl-tests {collective} log {path.name} ({ranks} ranks, out-of-place times)"


def _osu(path: Path):
    text = path.read_text(errors="replace")
    collective = _collective_from(text, path, OSU_TESTS, "OSU")
    coll = get_collective(collective)
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or line.startswith("#") or not fields[0].isdigit():
            continue
        try:
            size, latency = int(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            raise CommbenchError(f"{path}: cannot read the OSU row {line.strip()!r}") from None
        if size == 0:
            continue  # osu_latency's 0-byte row: no bytes to fit
        msg = size * 2 if coll.gathers else size  # OSU sizes are per process; nccl-tests S is the gathered total at n = 2
        rows.append({"collective": collective, "msg_bytes": msg, "ranks": 2, "time_us_p50": latency, "time_us": latency,
                     "algbw_gbps": coll.algbw_gbps(msg, latency * 1e-6), "busbw_gbps": coll.busbw_gbps(msg, latency * 1e-6, 2),
                     "wrong": 0})
    if not rows:
        raise CommbenchError(f"{path}: OSU output with no result rows (truncated, or the run failed)")
    meta = {"tool": "OSU", "collective": collective, "ranks": 2, "timing": "OSU average latency", "complete": True}
    return pd.DataFrame(rows), meta, f"OSU {collective} log {path.name} (read as 2 ranks: OSU does not print the count)"
