#!/usr/bin/env python3
"""Read every file under a folder of tool outputs the way commbench does, and say what each is.

    scripts/check_tool_outputs.py DIR [--collective NAME] [--ranks N] [--partial]

One row per run read (a file of several runs gives one row each, numbered k/N), or one row with the
one-line refusal for a file commbench does not read: format, collective, ranks (and where they come
from), sizes, the figure at the largest size (busbw for nccl-tests, the mean latency or the bandwidth
for OSU), notes. The options are what the commands take for a log that does not say. Exit status 0;
never a traceback (an unexpected error is one row too, marked `BUG`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _size(n: float) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{int(n // scale)}{unit}"
    return f"{int(n)}"


def _figure(frame, meta) -> str:
    last = frame.sort_values("msg_bytes").iloc[-1]
    if "bandwidth_MBps" in frame and last.get("bandwidth_MBps") == last.get("bandwidth_MBps"):
        return f"{last['bandwidth_MBps']:.2f} MB/s"
    if meta.get("tool") == "nccl-tests":
        return f"busbw {last['busbw_gbps']:.2f} GB/s ({last['time_us_p50']:g} us)"
    return f"{last['time_us_p50']:g} us"


def _row(path: Path, table) -> dict:
    frame, meta = table.frame, table.meta
    missing = [c for c in ("collective", "msg_bytes", "ranks") if c not in frame.columns]
    if missing or frame.empty:
        return {"file": path.name, "format": "REFUSED", "note": f"a table without {', '.join(missing) or 'rows'}: not a "
                f"commbench sweep table (sweep --out writes collective, msg_bytes, ranks, time_us_p50) nor a tool log"}
    runs = meta.get("runs") or 1
    return {"file": path.name + (f" [{meta['run']}/{runs}]" if runs > 1 else ""),
            "format": meta.get("format", "commbench table"), "collective": meta.get("collective", ""),
            "ranks": f"{meta.get('ranks')} ({meta.get('ranks_from', 'table')})",
            "sizes": f"{len(frame)}: {_size(frame.msg_bytes.min())}-{_size(frame.msg_bytes.max())}",
            "largest_size_figure": _figure(frame, meta),
            "note": "; ".join(dict.fromkeys([*(meta.get("assumptions") or []), *(meta.get("notes") or [])]))}


def _refused(name: str, exc: Exception) -> dict:
    from commbench import CommbenchError

    if isinstance(exc, CommbenchError):
        return {"file": name, "format": "REFUSED", "note": str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)}
    return {"file": name, "format": "BUG", "note": f"{type(exc).__name__}: {exc}"}


def rows_for(path: Path, options: dict) -> list[dict]:
    """One row per run of the file (each read on its own: one bad run does not hide the others)."""
    from commbench.logs import log_runs, read_log

    try:
        refs = log_runs(path, **options)
        if refs is None:
            return [_row(path, table) for table in read_log(path, **options)]
    except Exception as exc:  # noqa: BLE001 - the check reports what breaks, one line per file
        return [_refused(path.name, exc)]
    out = []
    for ref in refs:
        name = path.name + (f" [{ref.number}/{ref.total}]" if ref.total > 1 else "")
        try:
            out.append(_row(path, ref.read()))
        except Exception as exc:  # noqa: BLE001
            out.append(_refused(name, exc))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--collective", default=None)
    parser.add_argument("--ranks", type=int, default=None)
    parser.add_argument("--partial", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"check_tool_outputs: {folder}: not a folder", file=sys.stderr)
        return 2
    options = {"collective": args.collective, "ranks": args.ranks, "partial": args.partial or None}
    rows = [row for path in sorted(p for p in folder.rglob("*") if p.is_file()) for row in rows_for(path, options)]
    columns = ("file", "format", "collective", "ranks", "sizes", "largest_size_figure", "note")
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(row.get(c, "")) for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
