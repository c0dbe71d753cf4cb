"""The click group and what every command module shares: the table printer, output helpers, the
plan and workload options, and the world runner with its progress bar."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

import click
from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from commbench import CommbenchError

# Wide tables stay readable when piped (rich assumes 80 columns off a terminal). Under mpiexec
# the output is forwarded through a pseudo-terminal of 80 columns: treat it as piped.
_UNDER_MPI = "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ
console = Console(width=200 if _UNDER_MPI or not sys.stdout.isatty() else None,
                  force_terminal=False if _UNDER_MPI else None, highlight=False)


class CommbenchGroup(click.Group):
    """Turns CommbenchError into one line on stderr and exit status 2; a stop signal (SIGINT, SIGTERM,
    SIGHUP) at any point, start-up included, into one line and exit 130 for SIGINT, 2 for the others
    (commbench.measure.supervise: a second signal while the first one's rows are saved is ignored)."""

    def invoke(self, ctx):
        import signal

        from commbench.measure.supervise import Stopped, reset_stop, stop_signals

        reset_stop()
        try:
            with stop_signals(ignore_after_stop=True):
                return super().invoke(ctx)
        except Stopped as stop:
            click.echo(f"commbench: stopped by {stop}", err=True)
            ctx.exit(130 if stop.signum == signal.SIGINT else 2)
        except CommbenchError as exc:
            click.echo(f"commbench: error: {exc}", err=True)
            ctx.exit(130 if getattr(exc, "signum", None) == signal.SIGINT else 2)


OUTPUT_FORMATS = ("table", "tsv", "csv")
OUTPUT = {"format": None}  # set by `commbench --format`; None: a table on a terminal, TSV when piped


HEADLINE_COLUMNS = {"msg_bytes", "time_us_p50", "busbw_gbps", "wrong", "model", "mode", "batch", "output_tok_s",
                    "published_tok_s", "error_pct", "value", "predicted", "site", "calls", "status", "band", "measured",
                    "placement", "bimodal", "near_floor"}
"""Columns a narrow terminal keeps longest."""


def output_format() -> str:
    return OUTPUT["format"] or ("table" if sys.stdout.isatty() and not _UNDER_MPI else "tsv")


def _cell(value, fmt: str | None) -> str:
    if fmt and (value is None or (isinstance(value, float) and value != value)):
        return ""
    if fmt:
        return fmt.format(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool without importing numpy
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _columns(frame) -> tuple[list, dict, dict]:
    """(column names, values per column, numeric per column) of a DataFrame or a list of row dicts
    (the trace prints records, so `commbench trace` never imports pandas)."""
    if isinstance(frame, list):
        names = list(dict.fromkeys(k for row in frame for k in row))
        values = {c: [row.get(c) for row in frame] for c in names}
        numeric = {c: all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None)
                   and any(v is not None for v in vals) for c, vals in values.items()}
        return names, values, numeric
    names = list(frame.columns)
    return names, {c: list(frame[c]) for c in names}, {c: pd.api.types.is_numeric_dtype(frame[c]) for c in names}


def _delimited(names: list, values: dict, sep: str) -> str:
    """Rows as TSV/CSV with full-precision values (what pandas' to_csv writes), via the csv module."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow(names)
    for i in range(len(values[names[0]]) if names else 0):
        writer.writerow(["" if values[c][i] is None else values[c][i] for c in names])
    return buf.getvalue()


def print_frame(frame, title: str = "", formats: dict | None = None) -> None:
    """Print a table (a DataFrame or a list of row dicts): a rich table on a terminal (columns that
    do not fit are dropped whole, never cut, and named in the caption), plain TSV or CSV with
    full-precision values when piped or asked (`commbench --format`), so awk and cut read it; the
    title becomes a `#` comment line."""
    fmt = output_format()
    if fmt in ("tsv", "csv"):
        if title:
            click.echo(f"# {' '.join(str(title).split())}")
        sep = "\t" if fmt == "tsv" else ","
        if isinstance(frame, list):
            names, values, _ = _columns(frame)
            click.echo(_delimited(names, values, sep), nl=False)
        else:
            click.echo(frame.to_csv(sep=sep, index=False, lineterminator="\n"), nl=False)
        return
    formats = formats or {}
    names, values, numeric = _columns(frame)
    cells = {col: [_cell(v, formats.get(col)) for v in values[col]] for col in names}
    widths = {col: max([len(str(col))] + [len(c) for c in cells[col]]) + 3 for col in names}
    shown = list(names)
    # drop the columns that matter least first (from the right), the headline ones last
    droppable = [c for c in reversed(shown[1:]) if c not in HEADLINE_COLUMNS] + \
        [c for c in reversed(shown[1:]) if c in HEADLINE_COLUMNS]
    while droppable and sum(widths[c] for c in shown) + 1 > console.width:
        shown.remove(droppable.pop(0))
    hidden = [c for c in names if c not in shown]
    caption = f"not shown at {console.width} columns: {', '.join(map(str, hidden))} (commbench --format tsv shows all)" \
        if hidden else None
    # text from files and configs (names, saved error messages) is shown as it is, never read as rich markup
    table = Table(title=escape(str(title)), title_justify="left", header_style="bold", caption=caption,
                  caption_justify="left")
    for col in shown:
        table.add_column(escape(str(col)), justify="right" if numeric[col] else "left", no_wrap=True, overflow="ignore")
    for i in range(len(values[names[0]]) if names else 0):
        table.add_row(*(escape(cells[col][i]) for col in shown))
    console.print(table)


def _parse_csv_ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CommbenchError(f"{name} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise CommbenchError(f"{name} must be comma-separated positive integers, got {text!r}")
    return values


@click.group(cls=CommbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="commbench")
@click.option("--format", "output", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="Tables as table, tsv or csv (default: table on a terminal, tsv when piped).")
def main(output):
    """commbench: should this model use tensor or pipeline parallelism on this fabric, and why?

    \b
    Example:
      commbench trace gpt-oss-120b --mode pp
      commbench --format tsv sweep all_reduce | awk '{print $1, $NF}'
    """
    OUTPUT["format"] = output


# ---------------------------------------------------------------------------------------------
def _save_or_print(frame: pd.DataFrame, title: str, as_json: bool, out: str | None, meta: dict,
                   formats: dict | None = None, drop: tuple = (), json_extra: dict | None = None) -> None:
    """Save `frame` with `meta` to `out`, and print it as a table or as {"rows": [...], **json_extra}."""
    from commbench.results import environment_metadata, save_table

    if out:
        save_table(frame, out, environment_metadata(**meta))
    if as_json:
        click.echo(dumps({"rows": _records(frame), **(json_extra or {})}))
    else:
        print_frame(frame.drop(columns=[c for c in drop if c in frame.columns]), title, formats)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows for --json: missing values become null (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _strict(value):
    """A JSON-safe copy: numpy scalars as Python numbers, infinities and NaN as null (RFC 8259 has
    neither), tuples as lists; anything else unknown as its text."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def dumps(obj, **kwargs) -> str:
    """Strict JSON for --json: parsers that reject Infinity and NaN read every commbench document,
    and every document says its schema version and the environment it was made in."""
    if isinstance(obj, dict) and "schema_version" not in obj:
        from commbench.results import SCHEMA_VERSION, environment_metadata

        obj = {"schema_version": SCHEMA_VERSION, **obj, "environment": environment_metadata()}
    return json.dumps(_strict(obj), allow_nan=False, **kwargs)


def workload_options(f):
    f = click.option("--token-budget", type=int, default=8192, show_default=True,
                     help="Chunked-prefill token budget per engine step (vLLM max_num_batched_tokens).")(f)
    f = click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")(f)
    f = click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")(f)
    f = click.option("--scenario", default="balanced", show_default=True,
                     help="Workload preset: balanced 1024/1024, prefill-heavy 8192/1024, decode-heavy 1024/8192.")(f)
    return f


def plan_options(f):
    """MODEL and the parallel plan (--mode, --tp, --pp, --dp), shared by trace and compute."""
    f = click.option("--dp", type=int, default=None, help="Data-parallel replicas with expert parallelism (mode ep; default 2).")(f)
    f = click.option("--pp", type=int, default=None, help="Pipeline-parallel size (default 2 in pp mode, 1 otherwise).")(f)
    f = click.option("--tp", type=int, default=None, help="Tensor-parallel size (default 2 in tp mode, 1 otherwise).")(f)
    f = click.option("--mode", default="tp", show_default=True, help="Parallel pattern: tp, pp or ep (expert parallel).")(f)
    return click.argument("model")(f)


def log_options(f=None, *, clash: bool = False):
    """--collective, --ranks, --run, --partial for the commands that read a nccl-tests / OSU log
    (commbench.logs): what the log does not say, and which of its runs. A command whose own
    --collective / --ranks mean something else (`fabric validate`) takes --log-collective /
    --log-ranks instead (clash=True). Every log read inside the command sees them."""
    import functools

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, log_collective=None, log_ranks=None, log_run=None, log_partial=False, **kwargs):
            from commbench.logs import reading_options

            spelling = {"collective": "--log-collective", "ranks": "--log-ranks"} if clash else {}
            with reading_options(collective=log_collective, ranks=log_ranks, run=log_run, partial=log_partial,
                                 spelling=spelling, announce=lambda note: click.echo(f"note: {note}", err=True)):
                return func(*args, **kwargs)

        names = ("--log-collective",) if clash else ("--collective", "--log-collective")
        wrapper = click.option("--partial", "log_partial", is_flag=True,
                               help="Read a log without its closing lines (cut off or pasted in part) as a partial sweep.")(wrapper)
        wrapper = click.option("--run", "log_run", type=int, default=None,
                               help="Which run of a log of several (1-based; a loop of *_perf commands, -N repeats).")(wrapper)
        wrapper = click.option(*(("--log-ranks",) if clash else ("--ranks", "--log-ranks")), "log_ranks", type=int,
                               default=None, help="Ranks of a log that does not say (no '# Rank' lines, OSU).")(wrapper)
        return click.option(*names, "log_collective", default=None,
                            help="Collective of a log that does not say (old nccl-tests, no X_perf in its name); in a "
                                 "log of several collectives, the runs of this one.")(wrapper)

    return decorate(f) if f is not None else decorate


def engine_options(f):
    """How the serving engine runs a step (runner_options.RunnerOptions): generation, CUDA graphs, MoE kernel, all2all."""
    f = click.option("--all2all", default="allgather_reducescatter", show_default=True,
                     help="Mode ep: how MoE layers exchange tokens: allgather_reducescatter (vLLM 0.11's default) "
                          "or all_to_all (DeepEP / pplx kernels).")(f)
    f = click.option("--moe-kernel", default="triton", show_default=True,
                     help="MXFP4 MoE kernel (its hidden-size padding): triton, marlin, flashinfer-trtllm, flashinfer-cutlass.")(f)
    f = click.option("--cuda-graphs/--eager", "cuda_graphs", default=True, show_default=True,
                     help="CUDA graphs pad a step's tokens up to the next capture size; --eager runs them as they are.")(f)
    return click.option("--engine", default="vllm-v1", show_default=True,
                        help="Engine generation: vllm-v1 (vLLM 0.11.0, the review's) or vllm-v2 (current model runner).")(f)


@contextlib.contextmanager
def row_progress(total_rows: int, description: str, row_label=lambda row: "", on_row=None):
    """A progress bar on stderr (one step per finished row) on the reporting rank; yields the on_row
    to hand to a measuring call (commbench.measure.sweep / replay, fabric.validate.validate)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from commbench.measure.launcher import launcher_rank

    if launcher_rank()[0] != 0:
        yield None
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=total_rows, last="")

    def finished(row):
        progress.update(task, advance=1, last=row_label(row))
        if on_row is not None:
            on_row(row)

    with progress:
        yield finished


def save_partial(failure, out: str | None, meta: dict, rename: dict | None = None):
    """The rows a failed or stopped run finished (WorldFailed.rows), saved to --out with complete:
    false and the error in the metadata (the same for sweep, replay and validate); the frame, or
    None when no row finished."""
    from commbench.results import environment_metadata, save_table

    if not failure.rows:
        return None
    partial = pd.DataFrame(failure.rows).rename(columns=rename or {})
    if out:
        save_table(partial, out, environment_metadata(**meta, launcher=failure.launcher, complete=False,
                                                      error=str(failure)))
    return partial
