"""nccl-tests result rows: the figures of one row, in every layout nccl-tests has printed.

Sources: github.com/NVIDIA/nccl-tests `src/common.cu` (the row's head: size, count, type, op, root) and
`src/util.cu` (the figures), by version:
- <= 2.12: `size count type redop time algbw busbw error time algbw busbw error` (all_gather/alltoall:
  no or an empty `redop`); `error` is the largest deviation (`2e-07`; wrong only above ERROR_TOLERANCE,
  or where nccl-tests starred it) or `N/A`;
- 2.13+: `size count type redop root time algbw busbw #wrong time algbw busbw #wrong`; `N/A` in #wrong
  when validation is off (`-c 0`) or not defined (in-place alltoall/sendrecv);
- 2.17.6+: `-S 1` adds a `YYYY-MM-DD HH:MM:SS` timestamp to each row;
- 2.19.2+: `-I 1` adds the iterations' min, max, p99, cv% after EACH placement's four, so the in-place
  time is the 9th figure, not the 5th: the column header line says where each is.
Under NCCL_DEBUG=INFO a row can arrive in two pieces (rejoin); a copy hard-wrapped by a page or `fold`
in several (unwrap).
"""

from __future__ import annotations

import itertools
import re

from commbench.logs.common import number
from commbench.logs.nccl_tests_ratio import REDUCTIONS

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([a-z][a-z0-9_]*)\s+(.*)$")
TIMESTAMP = re.compile(r"\s(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2})(?=\s|$)")
REDOPS = REDUCTIONS | {"none"}  # the op column: a reduction, or `none` (2.13+, collectives without one)
EXTRA_COLUMNS = (("p50", "time_us_p50_iter"), ("p99", "time_us_p99"), ("p95", "time_us_p95"), ("min", "time_us_min"),
                 ("max", "time_us_max"), ("cv", "cv_pct"))
# <= 2.12 printed the largest deviation from the expected result in an `error` column and counted a
# failure where it exceeded DeltaMaxValue(type) (src/common.cu): 1e-2 half/bfloat16, 1e-5 float, 1e-12
# double, 1e-200 (any deviation) for integers. `wrong` is that verdict (0/1); `max_error` keeps the figure.
ERROR_TOLERANCE = {"half": 1e-2, "bfloat16": 1e-2, "float": 1e-5, "double": 1e-12}
# nccl-tests' type names (src/common.cu test_typenames) -> bytes per element; S = count x bytes x (1 or n)
TYPE_BYTES = {"int8": 1, "uint8": 1, "f8e4m3": 1, "f8e5m2": 1, "half": 2, "bfloat16": 2, "int32": 4, "uint32": 4,
              "float": 4, "int64": 8, "uint64": 8, "double": 8}
PER_ITER_DEFAULT = ("min", "max", "p99", "cv")  # -I 1 column order (src/util.cu, 2.19.2+) where no header names them

INFO_START = re.compile(r"^([A-Za-z][\w.\-]*):\d+:\d+ \[\d+\] NCCL (?:INFO|WARN) ")  # host:pid:tid [dev], at column 0
RANK_HOST = re.compile(r"^#\s*Rank\s+\d+\s.*?\bon\s+(\S+)\s+device\b")  # the hosts of the Rank lines
ROW_HEAD = re.compile(r"^\s*\d+\s+\d+\s+[a-z][a-z0-9_]*(?:\s|$)")  # size, count, type: a row's start


def rejoin(lines: list[str]) -> list[str]:
    """Rows split by NCCL_DEBUG=INFO. nccl-tests prints a row in pieces (its head, then each placement's
    figures, timed in between) into a buffered stdout, while NCCL writes whole INFO lines (first-launch
    `Launch mode Parallel`, lazy `Channel ... via P2P` connections, other processes' lines): one can land
    anywhere in a row, glued to the row's first part, with the rest of the row on a later line. The
    INFO line's host (one that starts INFO lines elsewhere in the log, or of a Rank line) marks where the row
    stops; the first part and the next line that is not INFO are joined where exactly one join (a
    blank or none) gives a whole row under the column header; where none does, the row is left out
    (said), where both do, it is marked UNSURE (refused). The INFO lines follow the joined row."""
    hosts = {m.group(1) for line in lines if (m := INFO_START.match(line) or RANK_HOST.match(line.strip()))}
    if not any(" NCCL INFO " in line or " NCCL WARN " in line for line in lines):
        return lines
    glued = re.compile("(?:" + "|".join(map(re.escape, sorted(hosts, key=len, reverse=True))) +
                       r"):\d+:\d+ \[\d+\] NCCL (?:INFO|WARN) ")
    out, head, held, other, columns = [], None, [], 0, None
    for line in lines:
        text = line.strip()
        if HEADER.match(text):
            columns = text.lstrip("#").split()
        m = glued.search(line)
        if m and m.start() and re.match(r"\s*\d", line):  # a row's first part, then an INFO line
            out += _left_out(head) + held
            head, held, other = line[:m.start()], [line[m.start():]], 0
            continue
        if head is None or not text or glued.match(text):
            (out if head is None else held).append(line)
            continue
        joins = {f: t for sep in ("", " ") if (f := _figures_of(t := head + sep + line.lstrip(), columns))}
        if len(joins) == 1 or len(joins) > 1:
            out += [next(iter(joins.values()))] if len(joins) == 1 else [head, UNSURE + head.split()[0]]
            out += held
        elif ROW.match(text) or text.startswith("#") or other >= 2:
            out += _left_out(head) + [*held, line]
        else:  # the rest of a long INFO line wrapped onto the next (`mode Parallel`)
            other += 1
            held.append(line)
            continue
        head, held = None, []
    return out + _left_out(head) + held


def _left_out(head: str | None) -> list[str]:
    """The marker for a row whose rest never came (said in the run's notes), or nothing."""
    return [LEFT_OUT + head.split()[0]] if head else []


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


UNSURE = "#commbench: wrapped row, unsure "  # what unwrap leaves where no single join fits
LEFT_OUT = "#commbench: row left out "  # what rejoin leaves for a row cut by an INFO line and never finished
TAIL = re.compile(r"(?:[-+]?\d*\.?\d*(?:e[-+]?\d+)?\*?|N/A|N/?|/?A|-?nan|n?an?|[\d:-]+)")  # a figure or a piece of one
HEADER = re.compile(r"#\s*size\s+count\s+type\b")


def _tail(line: str) -> bool:
    return bool(line.strip()) and all(TAIL.fullmatch(t) for t in line.split())


def _figures_of(text: str, columns: list | None) -> tuple | None:
    """The figures of a joined row as printed, where they fit the header (or the count) and all read."""
    row = ROW.match(text.strip())
    if row is None:
        return None
    tokens = TIMESTAMP.sub(" ", " " + row.group(4)).split()
    tokens = tokens[1:] if tokens and tokens[0] in REDOPS else tokens
    found = layout(columns, len(tokens))
    if not found or len(tokens) != len(found[1]) * 2 + found[0]:
        return None
    try:
        [number(t.rstrip("*")) for t in tokens]
    except ValueError:
        return None
    return tuple(row.groups()[:3]) + tuple(tokens)


def unwrap(lines: list[str]) -> list[str]:
    """Rows hard-wrapped by a narrow page or `fold`: a row line followed by lines of figures (or pieces of
    figures: `55` / `.00`, a cut timestamp) is joined back where exactly one way of joining the pieces
    (a blank or none at each cut) gives the row the header's columns and every figure reads; where none
    or several do, the row is marked UNSURE (refused when its run is read), never guessed."""
    out, columns, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if HEADER.match(line.strip()):
            columns = line.strip().lstrip("#").split()
        j = i + 1
        while ROW_HEAD.match(line) and j < len(lines) and j - i <= 4 and _tail(lines[j]):
            j += 1
        if j == i + 1:
            out.append(line)
            i += 1
            continue
        pieces = [p.strip("\r\n") for p in lines[i:j]]
        joined = {}
        for seps in itertools.product(("", " "), repeat=len(pieces) - 1):
            text = pieces[0] + "".join(sep + piece for sep, piece in zip(seps, pieces[1:]))
            if (figures := _figures_of(text, columns)) is not None:
                joined.setdefault(figures, text)
        out.append(next(iter(joined.values())) if len(joined) == 1 else line)
        if len(joined) != 1:
            out.append(UNSURE + line.split()[0])
        i = j
    return out
