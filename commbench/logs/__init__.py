"""Measurements from the tools users already run, read into commbench sweep tables.

Detected by content, whatever the file is called (one module per tool):
- nccl-tests text output, every 2.x version (`nccl_tests_text`);
- nccl-tests `-J` JSON, versions 1-3 (`nccl_tests_json`);
- OSU micro-benchmarks 5.x-7.x and OMB-Py text output (`osu`); a file holding OSU and nccl-tests
  output gives the runs of both;
- a commbench table (CSV/JSON/Parquet written by `sweep --out`).
Any of them gzip / bzip2 / xz compressed (`x.log.gz`), with a UTF-8 or UTF-16 byte-order mark, CRLF
line ends or terminal colour codes.

    read_log(path, collective=None, ranks=None, run=None, partial=None) -> list[LogTable]
        every run in the file (a loop of *_perf commands, -N repeats: each its own table, never
        mixed), or run N (1-based); `collective` keeps the runs of that collective where the file
        names them and is used where it does not; `ranks` where the file does not say.
    read_sweep(path, ...) -> (frame, metadata, source)
        one table for the commands that fit, judge and report: the file's one run, run N, or all
        runs when each is a different collective; else a one-line refusal naming --run.
Bad input (missing, empty, binary, truncated, unknown, or a figure the log does not give) is one
CommbenchError line; the CLI prints it and exits 2 before writing anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from commbench import CommbenchError
from commbench.logs.common import LogTable, ReadOptions, RunRef, current_options, reading_options

__all__ = ["LogTable", "RunRef", "log_runs", "provenance", "read_log", "read_sweep", "reading_options", "EXPECTED"]

EXPECTED = ("a commbench sweep table (.csv/.json/.parquet from sweep --out), nccl-tests text or -J JSON output "
            "(all_reduce_perf ...), or OSU / OMB-Py text output (osu_latency, osu_allreduce ...)")
VLLM_KEYS = ("request_throughput", "output_throughput", "mean_ttft_ms")


COMPRESSED = ((b"\x1f\x8b", "gzip", "gzip"), (b"BZh", "bzip2", "bz2"), (b"\xfd7zXZ\x00", "xz", "lzma"))
MAX_INFLATED = 1 << 30  # a log inflated past 1 GiB is not read (a decompression bomb, or not a log)
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # terminal colours / titles (ECMA-48 CSI, OSC)


def _inflate(path: Path, data: bytes) -> bytes:
    """A gzip / bzip2 / xz file's content (`app.log.gz`), else the bytes as they are."""
    for magic, name, module in COMPRESSED:
        if data.startswith(magic):
            import importlib

            try:
                with importlib.import_module(module).open(path, "rb") as stream:
                    data = stream.read(MAX_INFLATED + 1)
            except (OSError, EOFError, ValueError) as exc:
                raise CommbenchError(f"{path.name}: {name}-compressed but does not decompress ({exc}); "
                                     f"expected {EXPECTED}") from None
            if len(data) > MAX_INFLATED:
                raise CommbenchError(f"{path.name}: decompresses to more than 1 GiB; not a log commbench reads")
            return data
    return data


def _text(path: Path) -> str:
    """The file as text: decompressed (gzip, bzip2, xz), a byte-order mark honoured (UTF-8, and the
    UTF-16 that Windows PowerShell's `>` writes), terminal colour codes removed."""
    if not path.is_file():
        raise CommbenchError(f"{path}: no such file")
    try:
        data = _inflate(path, path.read_bytes())
    except OSError as exc:  # permission denied, a device, a file vanishing mid-read
        raise CommbenchError(f"{path.name}: not readable ({exc.strerror or exc})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise CommbenchError(f"{path.name}: not text (a UTF-16 byte-order mark, then bytes that are not "
                                 f"UTF-16); expected {EXPECTED}") from None
    data = ANSI.sub(b"", data.removeprefix(b"\xef\xbb\xbf")).rstrip(b"\0")  # NUL padding: a node died mid-write
    if not data.strip():
        raise CommbenchError(f"{path.name}: empty file; expected {EXPECTED}")
    head = data[:65536]
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    if b"\0" in head or control > len(head) // 100:
        raise CommbenchError(f"{path.name}: not text (binary data); expected {EXPECTED}")
    return data.decode("utf-8", errors="replace")


def _refs(path: Path, opts: ReadOptions) -> list[RunRef] | None:
    """The runs of a tool log, or None where the file is a commbench table."""
    from commbench.logs import nccl_tests_json, nccl_tests_text, osu

    if path.suffix == ".parquet":
        return None
    text = _text(path)
    if text.lstrip().startswith("{"):
        doc = nccl_tests_json.parse(text)
        if nccl_tests_json.looks_like(doc):
            return nccl_tests_json.read(path, doc, opts)
        if doc is not None and any(key in doc for key in VLLM_KEYS) or text.lstrip().startswith("{") and \
                all(key in text for key in VLLM_KEYS[:2]):
            raise CommbenchError(f"{path.name}: a `vllm bench serve` result, not a sweep: give it to "
                                 "`commbench accuracy --published` or `predict --published`")
        docs = nccl_tests_json.parse_all(text) if doc is None else None
        if docs and len(docs) > 1 and all(nccl_tests_json.looks_like(d) for d in docs):  # `cat a.json b.json`
            return _numbered(path, [nccl_tests_json.read(path, d, opts) for d in docs],
                             f"the file holds {len(docs)} -J JSON documents one after another")
        if doc is None and ('"nccl_version"' in text or '"results"' in text and '"config"' in text):
            raise CommbenchError(f"{path.name}: nccl-tests -J JSON that does not parse: cut off mid-write "
                                 "(nccl-tests closes it even on errors; was it copied in part?)")
    if osu.looks_like(text) and nccl_tests_text.looks_like(text):
        return _mixed(path, text, opts)
    if osu.looks_like(text):
        return osu.read(path, text, opts)
    if nccl_tests_text.looks_like(text):
        return nccl_tests_text.read(path, text, opts)
    if path.suffix == ".csv" or path.suffix == ".json" and isinstance(nccl_tests_json.parse(text), dict) and \
            "rows" in nccl_tests_json.parse(text):
        return None
    raise CommbenchError(f"{path.name}: unknown format; expected {EXPECTED}")


def _mixed(path: Path, text: str, opts: ReadOptions) -> list[RunRef]:
    """A file holding OSU and nccl-tests output (a job script running both): each tool's runs, numbered
    through the file in the order the tools first appear (each reader skips the other tool's lines)."""
    from commbench.logs import nccl_tests_text, osu

    first_osu = osu.HEADER_ANYWHERE.search(text)
    first_nccl = nccl_tests_text.START_ANYWHERE.search(text)
    try:
        groups = [osu.read(path, text, opts), nccl_tests_text.read(path, text, opts)]
    except CommbenchError:  # `# OSU MPI` mentioned but no OSU run (or no nccl-tests run): the tool that ran
        return osu.read(path, text, opts) if first_osu and not first_nccl else nccl_tests_text.read(path, text, opts)
    if first_nccl and first_osu and first_nccl.start() < first_osu.start():
        groups.reverse()
    return _numbered(path, groups, "the file holds both OSU and nccl-tests output")


def _numbered(path: Path, groups: list[list[RunRef]], note: str) -> list[RunRef]:
    """Runs read by several readers (or from several documents) numbered through the file."""
    refs = [ref for group in groups for ref in group]
    total = len(refs)
    return [RunRef(k, total, ref.collective, lambda ref=ref, k=k: _renumbered(path, ref.read(), k, total, note))
            for k, ref in enumerate(refs, 1)]


def _renumbered(path: Path, table: LogTable, k: int, total: int, note: str) -> LogTable:
    meta = {**table.meta, "run": k, "runs": total, "notes": [*table.meta.get("notes", []), note]}
    source = re.sub(r" run \d+/\d+", "", table.source).replace(f" {path.name} (", f" {path.name} run {k}/{total} (", 1)
    return LogTable(table.frame, meta, source)


def _describe(refs: list[RunRef]) -> str:
    return ", ".join(f"{r.number}: {r.collective or '?'}" for r in refs)


def _choose(path: Path, refs: list[RunRef], opts: ReadOptions) -> list[RunRef]:
    if opts.run is not None:
        if not 1 <= opts.run <= len(refs):
            raise CommbenchError(f"{path.name}: {opts.opt('run')} {opts.run}: the file holds {len(refs)} "
                                 f"run{'s' if len(refs) > 1 else ''} ({_describe(refs)})")
        refs = [refs[opts.run - 1]]
    if opts.collective is not None and any(r.collective for r in refs):
        kept = [r for r in refs if r.collective in (opts.collective, None)]
        if not kept:
            said = "runs " + _describe(refs) if len(refs) > 1 else f"the log says {refs[0].collective}"
            raise CommbenchError(f"{path.name}: {opts.opt('collective')} {opts.collective} is not in the file ({said})")
        refs = kept
    return refs


def log_runs(path: str | Path, collective: str | None = None, ranks: int | None = None,
             partial: bool | None = None) -> list[RunRef] | None:
    """The runs of a tool log before any is read (number, total, the collective the log names, and
    `.read()` for its LogTable: a bad run refuses only when read); None for a commbench table."""
    path = Path(path)
    return _refs(path, current_options(collective, ranks, None, partial))


def read_log(path: str | Path, collective: str | None = None, ranks: int | None = None, run: int | None = None,
             partial: bool | None = None) -> list[LogTable]:
    """Every run of a tool log (or the chosen ones) as its own table; see the module docstring."""
    path = Path(path)
    opts = current_options(collective, ranks, run, partial)
    refs = _refs(path, opts)
    if refs is None:
        from commbench.results import load_table

        frame, meta = load_table(path)
        return [LogTable(frame, meta, f"commbench table {path.name}")]
    tables = [ref.read() for ref in _choose(path, refs, opts)]
    for table in tables:
        if opts.announce and (table.meta.get("assumptions") or table.meta.get("notes")):
            opts.announce(f"read {table.source}")
    return tables


def read_sweep(path: str | Path, collective: str | None = None, ranks: int | None = None, run: int | None = None,
               partial: bool | None = None) -> tuple[pd.DataFrame, dict, str]:
    """One sweep table from `path`: its only run, the chosen run, or every run where each is a
    different collective (fits are per collective, so nothing is mixed); its metadata and source."""
    path = Path(path)
    opts = current_options(collective, ranks, run, partial)
    tables = read_log(path, collective, ranks, run, partial)
    if len(tables) > 1:
        names = [t.meta["collective"] for t in tables]
        if len(set(names)) < len(names):
            runs = ", ".join(f"{t.meta['run']}: {t.meta['collective']} {t.meta['ranks']} ranks" for t in tables)
            raise CommbenchError(f"{path.name} holds {len(tables)} runs of the same collective ({runs}); "
                                 f"choose one with {opts.opt('run')} N")
    for table in tables:
        if "time_us_p50" not in table.frame.columns and table.meta.get("test") in ("osu_bw", "osu_bibw"):
            raise CommbenchError(f"{path.name}: {table.meta['test']} gives a bandwidth (MB/s of a window of "
                                 "back-to-back messages), not a time per message: fits and judgements need osu_latency; "
                                 "`scripts/check_tool_outputs.py` shows it")
    if len(tables) == 1:
        return tables[0].frame, tables[0].meta, tables[0].source
    frame = pd.concat([t.frame.assign(run=t.meta["run"]) for t in tables], ignore_index=True)
    first = tables[0].meta
    meta = {**first, "collective": ", ".join(t.meta["collective"] for t in tables),
            "ranks": first["ranks"] if len({t.meta["ranks"] for t in tables}) == 1 else None,
            "run": None, "runs_read": [t.meta for t in tables], "notes": [n for t in tables for n in t.meta["notes"]],
            "hosts": list(dict.fromkeys(h for t in tables for h in t.meta.get("hosts", [])))}
    source = f"{len(tables)} runs of {path.name}: " + "; ".join(t.source.split(" log ", 1)[0] + f" ({t.meta['ranks']} "
                                                               f"ranks)" for t in tables)
    return frame, meta, source


def provenance(meta: dict) -> str | None:
    """One sentence saying where a table read from a log came from (tool, version, hosts, ranks,
    command, what was assumed), for reports; None for a table commbench measured itself."""
    if meta.get("tool") not in ("nccl-tests", "OSU", "OMB-Py"):
        return None
    hosts = meta.get("hosts") or []
    parts = [f"read from a {meta['tool']} log ({meta.get('format', meta['tool'])}, version "
             f"{meta.get('tool_version') or 'not in the log'}"
             + (f", NCCL {meta['nccl_version']}" if meta.get("nccl_version") else "") + ")",
             f"{meta.get('collective')} on {meta.get('ranks')} ranks ({meta.get('ranks_from', '?')})",
             f"hosts {', '.join(hosts)}" if hosts else "host names not in the log",
             f"timing: {meta.get('timing', '?')}"]
    if meta.get("runs", 1) > 1 and meta.get("run"):
        parts.append(f"run {meta['run']} of {meta['runs']} in the file")
    text = "; ".join(parts) + "."
    if meta.get("command"):
        text += f" The log shows the command `{meta['command']}`."
    if meta.get("notes"):
        text += " Notes: " + "; ".join(meta["notes"]) + "."
    return text
