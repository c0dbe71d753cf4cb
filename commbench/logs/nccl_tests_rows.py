"""nccl-tests result rows: the figures of one row, in every layout nccl-tests has printed.

Sources: github.com/NVIDIA/nccl-tests `src/common.cu` (the row's head: size, count, type, op, root) and
`src/util.cu` (the figures). One placement's figures are `time algbw busbw #wrong` (<= 2.12: `error`,
the largest deviation, not a count), then with `-I 1` (2.19.2+) the iterations' min, max, p99 and cv%;
out-of-place first, then in-place; `-S 1` adds a timestamp at the end. Under NCCL_DEBUG=INFO a row can
arrive in two pieces (rejoin).
"""

from __future__ import annotations

import re

from commbench.logs.common import number

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([a-z][a-z0-9_]*)\s+(.*)$")
TIMESTAMP = re.compile(r"\s(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2})(?=\s|$)")
REDOPS = {"sum", "prod", "max", "min", "avg", "mulsum", "premulsum", "none"}
EXTRA_COLUMNS = (("p50", "time_us_p50_iter"), ("p99", "time_us_p99"), ("p95", "time_us_p95"), ("min", "time_us_min"),
                 ("max", "time_us_max"), ("cv", "cv_pct"))
# <= 2.12 printed the largest deviation from the expected result in an `error` column and counted a
# failure where it exceeded DeltaMaxValue(type) (src/common.cu): 1e-2 half/bfloat16, 1e-5 float, 1e-12
# double, 1e-200 (any deviation) for integers. `wrong` is that verdict (0/1); `max_error` keeps the figure.
ERROR_TOLERANCE = {"half": 1e-2, "bfloat16": 1e-2, "float": 1e-5, "double": 1e-12}
PER_ITER_DEFAULT = ("min", "max", "p99", "cv")  # -I 1 column order (src/util.cu, 2.19.2+) where no header names them

SPLIT_ROW = re.compile(rf"^(\s*\d+\s+\d+\s+[a-z][a-z0-9_]*(?:\s+(?:{'|'.join(REDOPS)}))?(?:\s+-?\d+)?)\s*"
                       r"(\S*:\d+:\d+ \[\d+\] NCCL (?:INFO|WARN) .*)$")
FIGURES = re.compile(r"^\s*(?:[-+]?\d*\.?\d+(?:e[-+]?\d+)?|N/A|-?nan)(?:\s+\S+)+$")


def rejoin(lines: list[str]) -> list[str]:
    """Rows split by NCCL_DEBUG=INFO: nccl-tests prints a row's size, count, type, op and root, then times
    it, and NCCL's first-launch lines (`NCCL INFO Launch mode Parallel`) land there, so the row's head
    ends a line glued to the INFO text and its figures start the next line. Joined back here."""
    out, head = [], None
    for line in lines:
        if m := SPLIT_ROW.match(line):
            head = m.group(1)
            out.append(m.group(2))
            continue
        if head is not None and line.strip() and " NCCL INFO " not in line and " NCCL WARN " not in line:
            if FIGURES.match(line) and not ROW.match(line.strip()):
                line = f"{head}  {line.strip()}"
            head = None
        out.append(line)
    return out


def layout(columns: list | None, n_tokens: int) -> tuple[bool, list[str]] | None:
    """(has root, names of one placement's figures) from the column header, else from the count."""
    if columns:
        names = [c for c in columns if c not in ("size", "count", "type", "redop") and "stamp" not in c and c != "date"]
        has_root = bool(names) and names[0] == "root"
        names = names[1:] if has_root else names
        times = [i for i, c in enumerate(names) if c in ("time", "cputime", "cpu_time")]
        if len(times) == 2 and times[0] == 0 and times[1] * 2 == len(names):
            return has_root, names[:times[1]]
    has_root = n_tokens % 2 == 1
    width = (n_tokens - has_root) // 2
    if width == 4:
        return has_root, ["time", "algbw", "busbw", "#wrong"]
    if width == 8:
        return has_root, ["time", "algbw", "busbw", "#wrong", *PER_ITER_DEFAULT]
    return None


def figures(names: list[str], values: list[str], suffix: str, dtype: str) -> dict:
    starred = values[3].endswith("*")  # `1e+00*`: nccl-tests marking an error above its threshold
    values = [*values[:3], values[3].rstrip("*"), *values[4:]]
    out = {f"time_us{suffix}": number(values[0]), f"algbw_gbps{suffix}": number(values[1]),
           f"busbw_gbps{suffix}": number(values[2]), f"wrong{suffix}": number(values[3])}
    error = out[f"wrong{suffix}"]
    if names[3] == "error" or 0 < error < 1:  # <= 2.12: the max deviation (a count is never between 0 and 1)
        out[f"max_error{suffix}"] = error
        out[f"wrong{suffix}"] = error if error != error else float(starred or error > ERROR_TOLERANCE.get(dtype, 0.0))
    for name, value in zip(names[4:], values[4:]):
        key = next((col for tag, col in EXTRA_COLUMNS if tag in name.lower()), f"iter_{name.strip('%#')}")
        out[key + suffix] = number(value)
    return out
