"""What every log reader shares: the table a log becomes (LogTable), the reading options a user
gives where the log does not say (--collective, --ranks, --run, --partial), the launcher prefixes
stripped from every line, and the rank count a launcher command line states.

Prefixes (removed wherever they occur, since a tool that prints a row in pieces gets one per piece):
- Open MPI `mpirun --tag-output`: `[1,0]<stdout>:` (Open MPI 5 / PRRTE: `[prterun-host-12@1,0]<stdout>:`);
- `kubectl logs --timestamps` / `docker logs -t`: `2024-07-19T10:00:00.123456789Z ` at the start of a line;
  Open MPI `--timestamp-output`: the date before the first tag;
- Slurm `srun -l` / `--label`: `0: ` (`03: ` with padding) at the start of a line;
- Intel MPI / MPICH `mpirun -l` / `-prepend-rank`: `[0] ` where it also precedes a tool's `#` line;
- pdsh / clush / dsh: `node-01: ` (a host name) before lines where it also precedes a tool's `#` line.

Launchers read for the process count (tokens before the benchmark's own binary):
`mpirun`/`mpiexec` `-np N`, `-n N`, `--np N`, `-c N`; `-npernode Y`/`--npernode Y`/`-N Y`/`--map-by ppr:Y:node`
with `-host a,b`; Open MPI `-H a:8,b:8` alone (the slots, 16);
`srun -n N` / `--ntasks=N`, or `-N X` / `--nodes=X` with `--ntasks-per-node=Y` (X x Y; `-N2`, `-n16` glued); any other
wrapper (`$SUBMIT_CMD -n 4 osu_allreduce`) with `-n N` / `-np N`; `jsrun -n S -a T` (S x T), `flux run -n N`,
`horovodrun -np N`.
"""

from __future__ import annotations

import contextvars
import math
import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from commbench import CommbenchError
from commbench.collectives import get_collective

TAG_OUTPUT = re.compile(r"\[[^\]\s]*?\d+,\d+\]<std(?:out|err|diag)>:")
SRUN_LABEL = re.compile(r"^\s*\d+: ")
STAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})? ")  # kubectl/docker logs -t
RANK_PREFIX = re.compile(r"^\[\d+\] ")  # Intel MPI / MPICH `mpirun -l`, `-prepend-rank`: `[0] `
HOST_PREFIX = re.compile(r"^([A-Za-z][\w.\-]*): ")  # pdsh / clush / dsh: `node-01: ` (a host name, then ': ')
LAUNCHERS = {"mpirun", "mpiexec", "mpiexec.hydra", "orterun", "prterun", "srun", "aprun", "jsrun", "prun", "flux",
             "horovodrun"}
OPEN_MPI_STYLE = {"mpirun", "mpiexec", "mpiexec.hydra", "orterun", "prterun", "prun"}  # where -c N is -np N


@dataclass(frozen=True)
class LogTable:
    """One run read from a log: a commbench sweep table, what the log says about it, and one line
    saying what was read (printed by the commands, with every assumption in it)."""

    frame: pd.DataFrame
    meta: dict
    source: str


@dataclass(frozen=True)
class RunRef:
    """One run of a log before it is read: its number (1-based) of `total`, the collective the log
    names for it (None where it does not say), and `read()` to build its LogTable."""

    number: int
    total: int
    collective: str | None
    read: Callable[[], LogTable]


@dataclass(frozen=True)
class ReadOptions:
    """What the user says where the log does not: the collective, the rank count, which run of a
    file of several (1-based), and whether a log without its closing lines is read as partial."""

    collective: str | None = None
    ranks: int | None = None
    run: int | None = None
    partial: bool = False
    spelling: dict = field(default_factory=dict)  # a command whose --collective means something else
    announce: Callable[[str], None] | None = None  # where a command prints what was assumed (stderr)

    def opt(self, name: str) -> str:
        return self.spelling.get(name, f"--{name}")


_OPTIONS: contextvars.ContextVar[ReadOptions] = contextvars.ContextVar("commbench_log_options", default=ReadOptions())


@contextmanager
def reading_options(**kwargs):
    """Set the reading options for the log reads inside the block (the CLI's --collective, --ranks,
    --run, --partial reach the readers that fabric fit, validate, predict and report call)."""
    token = _OPTIONS.set(ReadOptions(**kwargs))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def current_options(collective=None, ranks=None, run=None, partial=None) -> ReadOptions:
    """The options in force: explicit arguments first, else the ones the CLI set."""
    base = _OPTIONS.get()
    return ReadOptions(collective if collective is not None else base.collective,
                       ranks if ranks is not None else base.ranks,
                       run if run is not None else base.run,
                       partial if partial is not None else base.partial, base.spelling, base.announce)


def _host_prefixes(lines: list[str]) -> set[str]:
    """The `host: ` prefixes of a pdsh / clush / dsh fan-out (`node-01: # nThread ...`): a word that
    precedes a tool's own `#` line. Only those words are stripped, wherever they occur."""
    found = set()
    for line in lines:
        m = HOST_PREFIX.match(line)
        if m and line[m.end():].lstrip().startswith("#"):
            found.add(m.group(1))
    return found


def clean_lines(text: str) -> list[str]:
    """The log's lines without launcher prefixes (tag-output anywhere, srun labels at the start, the
    `[0] ` of mpirun -l and the `host: ` of pdsh/clush where such a prefix comes before a tool's `#` line)."""
    lines = []
    for line in text.splitlines():
        line = STAMP_PREFIX.sub("", line)
        tag = TAG_OUTPUT.search(line)  # what precedes the first tag is --timestamp-output's date
        line = TAG_OUTPUT.sub("", line[tag.start():]) if tag else line
        label = SRUN_LABEL.match(line)
        if label:
            line = line[label.end():]
        lines.append(line.rstrip("\r\n"))  # trailing blanks kept: where a hard-wrapped row was cut
    if any(RANK_PREFIX.match(line) and line[RANK_PREFIX.match(line).end():].startswith("#") for line in lines):
        lines = [RANK_PREFIX.sub("", line, count=1) for line in lines]  # one level: `[0] [0] MPI startup()` keeps one
    hosts = _host_prefixes(lines)
    if hosts:
        lines = [line[m.end():] if (m := HOST_PREFIX.match(line)) and m.group(1) in hosts else line for line in lines]
        lines = [line[label.end():] if (label := SRUN_LABEL.match(line)) else line for line in lines]
    return lines


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False)
    except ValueError:
        return line.split()


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d+", text or "") else None


def _option(opts: list[str], names: tuple) -> int | None:
    """The integer value of the first of `names` in `opts` (`-n 4`, `-n4`, `--nrs=4`)."""
    for i, tok in enumerate(opts):
        for name in names:
            if tok == name and i + 1 < len(opts) and _int(opts[i + 1]) is not None:
                return int(opts[i + 1])
            if tok.startswith(name) and _int(tok[len(name):].lstrip("=")) is not None:
                return int(tok[len(name):].lstrip("="))
    return None


def launcher_processes(line: str, binary: re.Pattern) -> tuple[int | None, bool, str]:
    """(processes, launched, command) from a command line that runs a benchmark binary: the process
    count its launcher states (None where it does not say), whether a launcher or wrapper precedes
    the binary at all, and the command from the launcher (or binary) on."""
    tokens = _tokens(line)
    at = next((i for i, t in enumerate(tokens) if binary.search(Path(t).name)), None)
    if at is None:
        return None, False, ""
    start = next((i for i, t in enumerate(tokens[:at]) if Path(t.lstrip("!")).name in LAUNCHERS), None)  # !: Jupyter
    if start is None:  # a wrapper variable (`$SUBMIT_CMD -n 4 osu_allreduce`); a bare `$` is a shell prompt
        start = next((i for i, t in enumerate(tokens[:at]) if t.startswith("$") and len(t) > 1), None)
    command = " ".join(tokens[start if start is not None else at:])
    if start is None:
        return None, False, command
    launcher = Path(tokens[start].lstrip("!")).name
    is_srun = launcher == "srun"
    opts, nodes, per_node, hosts = tokens[start + 1:at], None, None, None
    if launcher == "jsrun":  # -n resource sets x -a tasks per set (IBM Spectrum LSF jsrun; -c is CPUs per set)
        sets, tasks = _option(opts, ("-n", "--nrs")), _option(opts, ("-a", "--tasks_per_rs")) or 1
        return (sets * tasks if sets else None), True, command
    for i, tok in enumerate(opts):
        name, _, inline = tok.partition("=")
        glued = re.fullmatch(r"(-[nN])(\d+)", tok)  # -n16, -N2
        if glued:
            name, inline = glued.groups()
        value = inline or (opts[i + 1] if i + 1 < len(opts) else "")
        if name in ("-np", "-n", "--np", "--n", "--ntasks") and _int(value) is not None:
            return int(value), True, command
        if name == "-c" and launcher in OPEN_MPI_STYLE and _int(value) is not None:  # srun -c: CPUs per task
            return int(value), True, command
        if name in ("-N", "--nodes") and _int(value) is not None:
            nodes = int(value)
        if name in ("--ntasks-per-node", "-npernode", "--npernode", "-ppn", "--ppn") and _int(value) is not None:
            per_node = int(value)
        if name == "--map-by" and (ppr := re.fullmatch(r"ppr:(\d+):node\S*", value)):
            per_node = int(ppr.group(1))
        if name in ("-host", "--host", "-H", "-hosts", "--hosts") and value:
            hosts = [h for h in value.split(",") if h]
    if is_srun and nodes and per_node:
        return nodes * per_node, True, command
    if not is_srun and hosts and (per_node or nodes):  # Open MPI's -N is per node
        return len(hosts) * (per_node or nodes), True, command
    slots = [re.fullmatch(r"[^:]+:(\d+)", h) for h in hosts or []]
    if not is_srun and slots and all(slots):  # Open MPI `-H a:8,b:8` without -np: as many processes as slots
        return sum(int(m.group(1)) for m in slots), True, command
    return None, True, command


def ranks_from_ratio(collective: str, rows: list[tuple[float, float]]) -> int | None:
    """The rank count that busbw / algbw = factor(n) pins down, or None where it does not (factor 1
    for every n, or rounding leaves more than one n). Each pair is (algbw, busbw) in GB/s as the log
    prints them (two decimals): the pair with the largest algbw has the smallest relative rounding."""
    kind = get_collective(collective).bus_factor_kind
    rows = [(alg, bus) for alg, bus in rows if math.isfinite(alg) and math.isfinite(bus)]  # `inf` at a 0.00 us time
    if kind == "one" or not rows:
        return None
    alg, bus = max(rows)
    if not alg or alg < 1:
        return None
    lo, hi = (bus - 0.005) / (alg + 0.005), (bus + 0.005) / (alg - 0.005)
    candidates = [n for n in range(1, 4097) if lo <= get_collective(collective).busbw_factor(n) <= hi]
    return candidates[0] if len(candidates) == 1 else None


def number(text: str) -> float:
    """A figure as printed: `N/A` (no check, -c 0) and `nan` read as NaN."""
    return float("nan") if text in ("N/A", "n/a", "-nan", "nan") else float(text)


def refuse(path: Path, message: str) -> CommbenchError:
    return CommbenchError(f"{path.name}: {message}")
