"""nccl-tests `-J FILE.json` output, JSON versions 1-3, read as commbench sweep tables.

Schema from the writer, github.com/NVIDIA/nccl-tests `src/util.cu` (jsonOutputInit, writeDeviceReport,
writeBenchmarkLine*, writePerIterReport, writeResultFooter), called from `src/common.cu`:
- one object: version, start_time, args (argv), env, nccl_version (e.g. 22809 = 2.28.9), config,
  results[], out_of_bounds, average_bus_bandwidth (v1 up to nccl-tests 2.17.8 misspells it
  `average_bus_bandwidith` / `bandwidith`), errors, end_time (only when the run closed normally);
- booleans are the strings "true"/"false"; NaN is the string "nan"; `nwrong` is null with `-c 0`;
  `time` is `cpu_time` with `-C 1`; `root` is a space-padded string;
- results[]: size (nccl-tests' S), count, type, redop, out_of_place / in_place {time (us), alg_bw,
  bus_bw (GB/s), nwrong}; v2+ with `-I 1`: out_of_place_per_iter / in_place_per_iter {min_us,
  max_us, avg_us, p50_us, p95_us, p99_us, stdev_us, cv_pct, times_us[], skipped_iterations (v3)};
- config.devices lists one entry per PROCESS (the first Rank line of each), so ranks =
  len(devices) x nthreads x ngpus;
- the collective is only in args[0] (the program, X_perf); `-N` repeats the size sweep in results.
Where per-iteration figures are present, time_us_p50 is their p50 and samples_us the iterations after
the skipped ones; else time_us_p50 is nccl-tests' mean per iteration (as in the text output).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from commbench.collectives import get_collective
from commbench.logs import nccl_tests_ratio
from commbench.logs.common import LogTable, ReadOptions, RunRef, ranks_from_ratio, refuse
from commbench.logs.nccl_tests_lines import NCCL_TESTS, PERF_BINARY

VERSIONS = (1, 2, 3)
BARE_NUMBER = re.compile(r"([:\[,]\s*)(-?(?:inf|nan))(?=\s*[,}\]])")
FOOTER_KEYS = (("average_bus_bandwidth", "bandwidth"), ("average_bus_bandwidith", "bandwidith"))


def looks_like(doc) -> bool:
    return isinstance(doc, dict) and "results" in doc and "config" in doc and "version" in doc


def _num(value) -> float:
    if value is None or value == "nan" or value == "-nan":
        return math.nan
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(value)


def _bool(value) -> bool | None:
    return {"true": True, "false": False, True: True, False: False}.get(value)


def _placement(result: dict, key: str, suffix: str) -> dict:
    body = result.get(key)
    if not isinstance(body, dict):
        return {}
    time = body.get("time", body.get("cpu_time"))
    out = {f"time_us{suffix}": _num(time), f"algbw_gbps{suffix}": _num(body.get("alg_bw")),
           f"busbw_gbps{suffix}": _num(body.get("bus_bw")), f"wrong{suffix}": _num(body.get("nwrong"))}
    per_iter = result.get(f"{key}_per_iter")
    if isinstance(per_iter, dict):
        for src, dst in (("p50_us", "time_us_p50"), ("p99_us", "time_us_p99"), ("p95_us", "time_us_p95"),
                         ("min_us", "time_us_min"), ("max_us", "time_us_max"), ("cv_pct", "cv_pct")):
            if src in per_iter:
                out[dst + suffix] = _num(per_iter[src])
        times = per_iter.get("times_us")
        if isinstance(times, list):
            skip = int(per_iter.get("skipped_iterations") or 0)
            out["samples_us" + suffix] = [_num(t) for t in times[skip:]]
    return out


def read(path: Path, doc: dict, opts: ReadOptions) -> list[RunRef]:
    version = doc.get("version")
    if version not in VERSIONS:
        raise refuse(path, f"nccl-tests -J JSON version {version!r}: this reader knows versions "
                           f"{', '.join(map(str, VERSIONS))} (nccl-tests 2.17.3 to 2.19.6)")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    results = doc.get("results") if isinstance(doc.get("results"), list) else []
    args = [a for a in doc.get("args") or [] if isinstance(a, str)]
    program = Path(args[0]).name if args else ""
    m = PERF_BINARY.match(program)
    name = m.group(1) if m else None
    # split the results into runs: sizes falling (-N repeats) or type/op changing (-d all, -o all)
    runs: list[list[dict]] = []
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("size"), int):
            continue
        last = runs[-1][-1] if runs else None
        if last is None or result["size"] < last["size"] or (result.get("type"), result.get("redop")) != (
                last.get("type"), last.get("redop")):
            runs.append([])
        runs[-1].append(result)
    if not runs:
        raise refuse(path, "nccl-tests -J JSON with no results (the run failed or was cut off before the first size)")
    refs = []
    for k, rows in enumerate(runs, 1):
        refs.append(RunRef(k, len(runs), NCCL_TESTS.get(name) if name else None,
                           lambda rows=rows, k=k: _table(path, doc, config, args, name, rows, k, len(runs), opts)))
    return refs


def _table(path, doc, config, args, name, results, k, total, opts: ReadOptions) -> LogTable:
    from commbench.collectives import COLLECTIVES

    where = f" run {k}/{total}" if total > 1 else ""
    if name is None:
        if opts.collective is None:
            raise refuse(path, f"nccl-tests -J JSON whose program (args[0] = {args[0] if args else None!r}) is no known "
                               f"X_perf; {opts.opt('collective')} NAME reads it ({', '.join(COLLECTIVES)})")
        collective, coll_from = opts.collective, f"{opts.opt('collective')} (the file does not say)"
    else:
        collective, coll_from = NCCL_TESTS.get(name), "args[0]"
        if collective is None:
            raise refuse(path, f"nccl-tests {name}_perf: commbench has no {name!r} collective")
    devices = config.get("devices") if isinstance(config.get("devices"), list) else []
    ranks, ranks_from = _ranks(path, config, devices, opts)
    rows, zero = _rows(path, results, opts)
    if not rows:
        raise refuse(path, f"nccl-tests -J JSON{where} with no results above 0 bytes")
    footer = next((doc[key][inner] for key, inner in FOOTER_KEYS
                   if isinstance(doc.get(key), dict) and inner in doc[key]), None)
    notes = [f"{zero} 0-byte rows skipped (nothing moved)"] if zero else []
    complete = footer is not None and "end_time" in doc
    if not complete:
        if not opts.partial:
            raise refuse(path, f"nccl-tests -J JSON without its average_bus_bandwidth footer or end_time: the run was "
                               f"cut off ({opts.opt('partial')} reads the {len(rows)} results it has)")
        notes.append("no footer: read as partial")
    implied = ranks_from_ratio(collective, [(r["algbw_gbps"], r["busbw_gbps"]) for r in rows
                                            if r["algbw_gbps"] == r["algbw_gbps"]])
    if implied is not None and implied != ranks:
        raise refuse(path, f"nccl-tests -J JSON: {ranks} ranks from {ranks_from}, but busbw/algbw says {implied}")
    pairs = [(r["algbw_gbps"], r["busbw_gbps"]) for r in rows]
    if not nccl_tests_ratio.fits(pairs, factor := get_collective(collective).busbw_factor(ranks)):
        raise refuse(path, f"nccl-tests -J JSON{where}: busbw/algbw = {max(pairs)[1] / max(pairs)[0]:.3f}, but "
                           f"{collective} on {ranks} ranks ({coll_from}; {ranks_from}) prints {factor:.3f}")
    frame = pd.DataFrame(rows)
    frame.insert(0, "collective", collective)
    frame.insert(2, "ranks", ranks)
    frame["time_us_mean"] = frame["time_us"]
    per_iter = "time_us_p50" in frame
    if not per_iter:
        frame["time_us_p50"] = frame["time_us"]
    if any(r["wrong"] != r["wrong"] for r in rows):
        notes.append("nwrong null (validation off, -c 0)")
    if bad := [str(r["msg_bytes"]) for r in rows if r["wrong"] > 0 or r.get("wrong_in_place", 0) > 0]:
        notes.append(f"nwrong above 0 (results failed validation) at {', '.join(bad)} B")
    meta = _meta(doc, config, args, devices, path, k, total, per_iter, complete, footer, notes) | {
        "collective": collective, "collective_from": coll_from, "ranks": ranks, "ranks_from": ranks_from}
    if not complete:
        meta["error"] = "the JSON ends without its footer"
    tail = "; ".join([f"{ranks} ranks from {ranks_from}", "p50 of iterations" if per_iter else "out-of-place times",
                      *notes])
    return LogTable(frame, meta, f"nccl-tests -J {collective} JSON {path.name}{where} ({tail})")


def _ranks(path: Path, config: dict, devices: list, opts: ReadOptions) -> tuple[int, str]:
    """config.devices (one per process) x nthreads x ngpus, else --ranks; refused where neither says."""
    threads, gpus = int(config.get("nthreads") or 1), int(config.get("ngpus") or 1)
    if devices:
        ranks, ranks_from = len(devices) * threads * gpus, (f"config.devices ({len(devices)} processes x "
                                                            f"{threads} threads x {gpus} GPUs)")
        if opts.ranks is not None and opts.ranks != ranks:
            raise refuse(path, f"{opts.opt('ranks')} {opts.ranks} disagrees with {ranks_from} ({ranks} ranks)")
        return ranks, ranks_from
    if opts.ranks is None:
        raise refuse(path, f"nccl-tests -J JSON without config.devices: the rank count is not in the file; "
                           f"{opts.opt('ranks')} N reads it")
    return opts.ranks, f"{opts.opt('ranks')} (the file does not say)"


def _rows(path: Path, results: list[dict], opts: ReadOptions) -> tuple[list[dict], int]:
    """The results as table rows (0-byte ones counted and left out)."""
    rows, zero = [], 0
    for result in results:
        if result["size"] == 0:
            zero += 1
            continue
        try:
            row = {"msg_bytes": result["size"], "count": result.get("count"), "type": result.get("type"),
                   "redop": result.get("redop"), **_placement(result, "out_of_place", ""),
                   **_placement(result, "in_place", "_in_place")}
        except ValueError as exc:
            raise refuse(path, f"nccl-tests -J JSON result of {result['size']} B: {exc.args[0]!r} is not a number") from None
        if "time_us" not in row:
            if opts.partial:
                continue
            raise refuse(path, f"nccl-tests -J JSON result of {result['size']} B without its out_of_place figures: cut "
                               f"off ({opts.opt('partial')} reads the complete ones)")
        rows.append(row)
    return rows, zero


def _meta(doc, config, args, devices, path, k, total, per_iter, complete, footer, notes) -> dict:
    """What the file says about the run besides its rows."""
    nccl = doc.get("nccl_version")
    hosts = list(dict.fromkeys(d.get("hostname") for d in devices if isinstance(d, dict) and d.get("hostname")))
    meta = {"tool": "nccl-tests", "tool_version": f"-J JSON v{doc['version']}", "format": "nccl-tests -J JSON",
            "nccl_version": f"{nccl // 10000}.{nccl // 100 % 100}.{nccl % 100}" if isinstance(nccl, int) else None,
            "hosts": hosts, "command": " ".join(args) or None, "run": k, "runs": total,
            "iters": config.get("iterations"), "warmup": config.get("warmup_iters"),
            "validation": config.get("validation"), "per_iter_timing": _bool(config.get("per_iter_timing")),
            "start_time": doc.get("start_time"), "end_time": doc.get("end_time"),
            "timing": ("p50 of the per-iteration times (-I 1); time_us_mean is nccl-tests' mean" if per_iter else
                       "nccl-tests mean per iteration (back-to-back calls, averaged over ranks)"),
            "avg_busbw_gbps": _num(footer) if footer is not None else None, "complete": complete, "notes": notes,
            "file": str(path)}
    return meta


def parse(text: str):
    """The JSON document, or None where the text is not one JSON object."""
    try:
        doc = json.loads(text)
    except ValueError:  # a bare `inf` / `nan` printed by %g (a 0.00 us time) is quoted, as nccl-tests quotes "nan"
        try:
            doc = json.loads(BARE_NUMBER.sub(r'\1"\2"', text))
        except (ValueError, RecursionError):
            return None
    except RecursionError:  # nested deeper than the reader goes: not a nccl-tests document
        return None
    return doc if isinstance(doc, dict) else None


def parse_all(text: str) -> list | None:
    """Every JSON document in `text`, one after another (`cat a.json b.json`), or None where it is not that."""
    decoder, docs, pos = json.JSONDecoder(), [], 0
    try:
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                return docs or None
            doc, pos = decoder.raw_decode(text, pos)
            docs.append(doc)
    except (ValueError, RecursionError):
        return None
