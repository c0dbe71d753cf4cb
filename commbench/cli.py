"""The click layer: thin wrappers over the library. Every command's help ends with an example."""

from __future__ import annotations

import json
import re
import os
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from commbench import CommbenchError

# Wide tables stay readable when piped (rich assumes 80 columns off a terminal). Under mpiexec
# the output is forwarded through a pseudo-terminal of 80 columns: treat it as piped.
_UNDER_MPI = "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ
console = Console(width=200 if _UNDER_MPI or not sys.stdout.isatty() else None,
                  force_terminal=False if _UNDER_MPI else None)


class CommbenchGroup(click.Group):
    """Turns CommbenchError into one line on stderr and exit status 2; keeps the command's own
    arguments (ctx.meta["commbench.argv"]) for the mpiexec relaunch of the embedded MPI world."""

    def parse_args(self, ctx, args):
        ctx.meta["commbench.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CommbenchError as exc:
            click.echo(f"commbench: error: {exc}", err=True)
            ctx.exit(2)


def print_frame(frame: pd.DataFrame, title: str = "", formats: dict | None = None) -> None:
    """Render a DataFrame as a rich table; floats get a compact format unless `formats` names one."""
    formats = formats or {}
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = row[col]
            if col in formats and (value is None or (isinstance(value, float) and value != value)):
                cells.append("")
            elif col in formats:
                cells.append(formats[col].format(value))
            elif isinstance(value, (bool, np.bool_)):
                cells.append("yes" if value else "no")
            elif isinstance(value, float):
                cells.append(f"{value:,.3f}" if abs(value) < 1e4 else f"{value:,.0f}")
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
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
def main():
    """commbench: should this model use tensor or pipeline parallelism on this fabric, and why?

    \b
    Example:
      commbench trace gpt-oss-120b --mode pp
    """


# ---------------------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """List the shipped model cards (layers, hidden, heads, experts, weight format).

    \b
    Example:
      commbench models
      commbench models show gpt-oss-120b
    """
    if ctx.invoked_subcommand is None:
        from commbench.model_card import load_model_card, shipped_models

        frame = pd.DataFrame([load_model_card(n).summary() for n in shipped_models()])
        print_frame(frame, "Shipped model cards (model_traces/)")


@models.command("show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the card and derived sizes as JSON.")
def models_show(model, as_json):
    """Show one model card: config fields and derived sizes. MODEL is a name or a config.json path.

    \b
    Example:
      commbench models show gpt-oss-120b
    """
    from commbench.model_card import load_model_card

    card = load_model_card(model)
    info = {
        **card.summary(),
        "total_params": card.total_params,
        "active_params": card.active_params,
        "attention_params_per_layer": card.attention_params_per_layer,
        "params_per_expert": card.params_per_expert,
        "moe_layers": card.num_moe_layers,
        "sliding_window": card.sliding_window,
        "kv_bytes_per_token_per_layer": card.kv_bytes_per_token_per_layer,
        "activation_dtype": card.activation_dtype,
        "weight_bytes_per_param": card.weight_bytes_per_param,
        "source": card.source,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    print_frame(pd.DataFrame({"field": list(info), "value": [str(v) for v in info.values()]}), f"Model card {card.name}")


# ---------------------------------------------------------------------------------------------
def workload_options(f):
    f = click.option("--token-budget", type=int, default=8192, show_default=True,
                     help="Chunked-prefill token budget per engine step (vLLM max_num_batched_tokens).")(f)
    f = click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")(f)
    f = click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")(f)
    f = click.option("--scenario", default="balanced", show_default=True,
                     help="Workload preset: balanced 1024/1024, prefill-heavy 8192/1024, decode-heavy 1024/8192.")(f)
    return f


def plan_options(f):
    """MODEL and the parallel plan (--mode, --tp, --pp), shared by trace and compute."""
    f = click.option("--pp", type=int, default=None, help="Pipeline-parallel size (default 2 in pp mode, 1 in tp mode).")(f)
    f = click.option("--tp", type=int, default=None, help="Tensor-parallel size (default 2 in tp mode, 1 in pp mode).")(f)
    f = click.option("--mode", default="tp", show_default=True, help="Parallel pattern: tp or pp.")(f)
    return click.argument("model")(f)


@main.command()
@plan_options
@click.option("--batch", type=int, default=1, show_default=True, help="Concurrent requests.")
@workload_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (inputs, ops, totals; with --replay, rows).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the op rows as CSV.")
@click.option("--replay", is_flag=True, help="Run the traced ops for real, in engine order, per step kind.")
@click.option("--backend", default="gloo", show_default=True, help="Replay backend: gloo, mpi, nccl or cupy.")
@click.option("--phase", default="both", show_default=True, help="Replay prefill, decode or both.")
@click.option("--iters", type=int, default=3, show_default=True, help="Replayed steps timed per phase.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed steps per phase.")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="Seconds per replayed row before a peer counts as dead.")
@click.option("--link", default="200gbe", show_default=True, help="Link for the replay's wire-time column.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the replay table (.csv/.json/.parquet) with metadata.")
def trace(model, mode, tp, pp, batch, scenario, isl, osl, token_budget, as_json, csv_path, replay, backend, phase,
          iters, warmup, timeout_s, link, out):
    """The exact communication of MODEL under TP or PP: every site per prefill chunk and decode step.

    MODEL is a shipped name (see `commbench models`) or a path to a Hugging Face config.json.

    \b
    Example:
      commbench trace gpt-oss-120b --mode pp
      commbench trace gpt-oss-120b --mode tp --batch 128 --scenario balanced --json
      commbench trace gpt-oss-120b --mode tp --batch 128 --replay
    """
    from commbench.model_card import load_model_card
    from commbench.plan import ParallelPlan
    from commbench.results import atomic_write, check_output_path
    from commbench.trace import make_trace
    from commbench.workload import Workload

    if csv_path:
        check_output_path(csv_path, (".csv",))
    card = load_model_card(model)
    plan = ParallelPlan.for_mode(card, mode, tp=tp, pp=pp)
    workload = Workload.from_options(batch, scenario, isl, osl, token_budget)
    result = make_trace(plan, workload)
    if replay:
        _replay(result, backend, phase, iters, warmup, timeout_s, link, out, as_json)
        return
    if csv_path:
        atomic_write(Path(csv_path), lambda p: result.ops_frame().to_csv(p, index=False))
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=float))
        return
    w = workload
    console.print(f"[bold]{card.name}[/] {plan.describe()}  batch {w.batch}, {w.scenario} ISL {w.isl} / OSL {w.osl}, "
                  f"token budget {w.token_budget}")
    ops = result.ops_frame()
    for phase, shape in result.steps.items():
        unit = "micro-batch step" if plan.pp > 1 else "step"
        frame = ops[ops.phase == phase].drop(columns=["phase", "count", "wire_bytes_per_rank", "group_size"])
        print_frame(frame, f"{phase}: one {unit} of {shape.tokens:g} tokens, {shape.sampled:g} sampled",
                    {"msg_bytes": "{:,.0f}", "wire_us_200gbe": "{:,.1f}", "wire_us_pcie5x16": "{:,.1f}"})
    print_frame(result.totals_frame(), f"Totals (whole run: {w.batch} requests x ({w.isl} in + {w.osl} out), "
                f"{result.run_totals['steps']:,} engine steps)",
                {"msg_bytes": "{:,.0f}", "wire_bytes_per_rank": "{:,.0f}", "calls": "{:,.2f}"})
    console.print("wire time = S x busbw factor / link rate (bandwidth only; per-call latency excluded). "
                  "200gbe = 25 GB/s, pcie5x16 = 63 GB/s per direction.")


def _replay(result, backend, phase, iters, warmup, timeout_s, link, out, as_json):
    from commbench.links import parse_link
    from commbench.replay import replay_job, replay_plan, total_steps
    from commbench.results import check_output_path, environment_metadata, save_table
    from commbench.backends import check_backend

    check_backend(backend)
    phases = {"both": ("prefill", "decode"), "prefill": ("prefill",), "decode": ("decode",)}.get(phase)
    if phases is None:
        raise CommbenchError(f"unknown phase {phase!r}; valid: prefill, decode, both")
    if iters < 1 or warmup < 0:
        raise CommbenchError(f"need iters >= 1 and warmup >= 0; got {iters}, {warmup}")
    link_profile = parse_link(link)
    if out:
        check_output_path(out)
    calls, wire = replay_plan(result, link_profile, phases)
    plan = result.plan
    ran = _run_job(replay_job(calls, iters, warmup, wire, plan.world_size), total_steps(calls),
                   f"replaying {plan.model.name} {plan.describe()}", backend, plan.world_size, timeout_s,
                   lambda row: f"{row['phase']} {row['site']}")
    if ran is None:
        return
    frame, launcher, _ = ran
    hosts = frame.attrs.get("hosts", [])
    frame = frame.rename(columns={"wire_us_per_step": f"wire_us_per_step_{link_profile.name}"})
    if out:
        save_table(frame, out, environment_metadata(command="trace --replay", **result.inputs, backend=backend, hosts=hosts,
                                                    launcher=launcher, iters=iters, warmup=warmup, link=link_profile.name))
    if as_json:
        click.echo(json.dumps({**result.inputs, "backend": backend, "rows": _records(frame)},
                              default=_json_default))
        return
    w = result.workload
    print_frame(frame, f"Replay of {plan.model.name} {plan.describe()}, batch {w.batch} {w.scenario}: one engine step "
                f"per phase on {backend} ({launcher}), p50 of {iters}; float32 buffers of the traced sizes",
                {"msg_bytes": "{:,.0f}", "measured_us_per_step": "{:,.1f}", "isolated_us_per_step": "{:,.1f}",
                 f"wire_us_per_step_{link_profile.name}": "{:,.1f}"})
    console.print("measured: inside the replayed step; isolated: calls x the same call timed alone; "
                  f"wire: calls x S x busbw factor / {link_profile.name} rate.", highlight=False)


# ---------------------------------------------------------------------------------------------
MAX_MESSAGE_BYTES = 1 << 40
"""Largest message a size option accepts (1 TiB); the embedded world's memory bounds it further."""


def _parse_bytes(text: str) -> int:
    """Bytes with an optional K, M, G suffix (powers of 1024): finite, positive, at most MAX_MESSAGE_BYTES."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    t = text.strip().upper().rstrip("B")
    suffix = t[-1] if t and t[-1] in units else ""
    try:
        number = float(t[: len(t) - len(suffix)])
    except ValueError:
        number = float("nan")
    if not (number > 0) or number * units[suffix] > MAX_MESSAGE_BYTES:
        raise CommbenchError(f"bad size {text!r}; use a positive number of bytes up to 1 TiB with an optional K, M or G "
                             "suffix, e.g. 64M")
    return int(number * units[suffix])


def _check_embedded_memory(max_bytes: int, ranks: int, backend: str) -> None:
    """An embedded world's buffers (input and output per rank, n slots for gathers) must fit in this host."""
    from commbench.hardware import host_memory_bytes
    from commbench.launcher import detect

    if detect() is not None or backend not in ("gloo", "mpi"):
        return  # a launcher's world: its ranks' memory is theirs to know
    need = 3 * max_bytes * ranks
    have = host_memory_bytes()
    if need > have:
        raise CommbenchError(f"--max-bytes {max_bytes:,} needs about {need / 2**30:.1f} GiB for {ranks} local ranks' "
                             f"buffers; this host has {have / 2**30:.1f} GiB available")


def _run_job(job, total_rows: int, description: str, backend: str, ranks: int, timeout_s: float,
             row_label=lambda row: "", options: dict | None = None):
    """commbench.world.run_job with a progress bar (one step per finished row, on stderr) on the
    reporting rank; the mpiexec relaunch re-runs this command's own arguments."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from commbench.launcher import launcher_rank
    from commbench.world import run_job

    argv = click.get_current_context().find_root().meta.get("commbench.argv", [])
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=total_rows, last="")
    if launcher_rank()[0] != 0:
        return run_job(job, backend, ranks, timeout_s, argv, total_rows, None, options)
    with progress:
        return run_job(job, backend, ranks, timeout_s, argv, total_rows,
                       lambda row: progress.update(task, advance=1, last=row_label(row)), options)


def _add_theory_columns(frame: pd.DataFrame, link_profile) -> None:
    """busbw as percent of PCIe Gen5 x4 and x16 always, of --link and its theory time when given."""
    from commbench.links import LINKS, theory_time_s

    links = [LINKS["pcie5x4"], LINKS["pcie5x16"]] + ([link_profile] if link_profile is not None else [])
    for link in dict.fromkeys(links):
        frame[f"busbw_pct_{link.name}"] = frame["busbw_gbps"] / link.bandwidth_gbps * 100
    if link_profile is not None and len(frame):
        frame[f"theory_us_{link_profile.name}"] = [
            theory_time_s(c, s, int(n), link_profile) * 1e6 for c, s, n in zip(frame.collective, frame.msg_bytes, frame.ranks)]


def _measure(collective, sizes, backend, ranks, iters, warmup, timeout_s, timing="blocking", options=None):
    """A sweep through _run_job."""
    from commbench import sweep as sweep_module

    return _run_job(sweep_module.sweep_job(collective, sizes, iters, warmup, timing), len(sizes),
                    f"{collective}: {len(sizes)} sizes on {backend}", backend, ranks, timeout_s,
                    lambda row: f"{row['msg_bytes']:,} B {row['time_us_p50']:,.1f} us", options)


@main.command()
@click.argument("collective")
@click.option("--min-bytes", default="8", show_default=True, help="Smallest message (S), e.g. 8, 4K.")
@click.option("--max-bytes", default="4M", show_default=True, help="Largest message (S), e.g. 64M.")
@click.option("--backend", default="gloo", show_default=True,
              help="gloo (torch.distributed, CPU), mpi (mpi4py), nccl (torch.distributed, CUDA) or cupy (CuPy's NCCL).")
@click.option("--ranks", type=int, default=2, show_default=True, help="Local ranks of the embedded world.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed iterations per size.")
@click.option("--timing", default="blocking", show_default=True,
              help="blocking (a barrier before every timed call) or back-to-back (nccl-tests: mean of iters calls).")
@click.option("--mpi-buffers", default="host", show_default=True,
              help="mpi backend: host (numpy) or cuda (device buffers; needs a CUDA-aware MPI).")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed iterations per size.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per collective before a peer counts as dead.")
@click.option("--link", default=None, help="Add busbw as percent of a link: 200gbe, 100gbe, pcie5x4, pcie5x16, or a rate like 1gbit.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the tidy table (.csv/.json/.parquet) with environment metadata.")
def sweep(collective, min_bytes, max_bytes, backend, ranks, iters, timing, mpi_buffers, warmup, timeout_s, link, as_json,
          out):
    """nccl-tests-style size sweep of COLLECTIVE.

    COLLECTIVE: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv (one-way,
    rank 0 to rank 1, as PP sends) or send_recv_bidir (nccl-tests' ring shift).

    With no launcher it starts its own local world (the embedded default: 2 ranks on loopback, no
    GPU, no cluster); under torchrun or mpiexec it joins that world and rank 0 reports.

    \b
    Example:
      commbench sweep all_reduce --min-bytes 8 --max-bytes 64M
      commbench sweep send_recv --backend mpi
      mpiexec -n 2 -host a,b commbench sweep all_reduce --backend mpi
      torchrun --nnodes 2 --nproc-per-node 1 --rdzv-endpoint HOST:29500 -m commbench sweep all_reduce --backend nccl
    """
    from commbench.results import check_output_path, environment_metadata, save_table
    from commbench.sweep import check_sweep_choices, sizes_between
    from commbench.world import WorldFailed
    from commbench.timing import TIMING_MODES

    check_sweep_choices(collective, backend)
    if mpi_buffers not in ("host", "cuda"):
        raise CommbenchError(f"unknown --mpi-buffers {mpi_buffers!r}; valid: host, cuda")
    if mpi_buffers == "cuda":
        if backend != "mpi":
            raise CommbenchError(f"--mpi-buffers cuda goes with --backend mpi, not {backend}")
        import torch

        if not torch.cuda.is_available():
            raise CommbenchError("--mpi-buffers cuda needs a CUDA device; use host buffers on CPU")
    if timing not in TIMING_MODES:
        raise CommbenchError(f"unknown timing mode {timing!r}; valid: {', '.join(TIMING_MODES)}")
    if ranks < 2 or iters < 1 or warmup < 0:
        raise CommbenchError(f"need ranks >= 2, iters >= 1, warmup >= 0; got {ranks}, {iters}, {warmup}")
    from commbench.links import parse_link

    link_profile = parse_link(link) if link else None
    if out:
        check_output_path(out)
    sizes = sizes_between(_parse_bytes(min_bytes), _parse_bytes(max_bytes))
    _check_embedded_memory(sizes[-1] if sizes else 0, ranks, backend)
    meta = dict(backend=backend, ranks=ranks, iters=iters, warmup=warmup, collective=collective, timing=timing,
                mpi_buffers=mpi_buffers if backend == "mpi" else None)
    try:
        result = _measure(collective, sizes, backend, ranks, iters, warmup, timeout_s, timing,
                          {"buffers": mpi_buffers} if backend == "mpi" else None)
    except WorldFailed as failure:  # keep what finished, say so, and still fail
        if failure.rows:
            partial = pd.DataFrame(failure.rows)
            if out:
                save_table(partial, out, environment_metadata(**meta, launcher=failure.launcher, complete=False,
                                                              error=str(failure)))
            print_frame(partial.drop(columns=["samples_us", "collective", "time_us"]), f"{collective}: the {len(partial)} sizes "
                        f"that finished before the failure" + (f" (saved to {out})" if out else ""))
        raise
    if result is None:
        return
    frame, launcher, ranks = result
    meta.update(ranks=ranks, hosts=frame.attrs.get("hosts", []))
    _add_theory_columns(frame, link_profile)
    if out:
        save_table(frame, out, environment_metadata(**meta, launcher=launcher, complete=True))
    if as_json:
        click.echo(json.dumps({"rows": _records(frame)}, default=_json_default))
    else:
        pct = {c: "{:.3g}" for c in frame.columns if c.startswith("busbw_pct_")}
        print_frame(frame.drop(columns=["samples_us", "collective", "time_us"]), f"{collective}, {backend}, {ranks} ranks ({launcher}), "
                    f"{iters} iterations (time = max over ranks per iteration; busbw_pct_*: percent of that link's rate)",
                    {"algbw_gbps": "{:.4f}", "busbw_gbps": "{:.4f}", "time_us_p50": "{:,.1f}", "time_us_min": "{:,.1f}",
                     "time_us_max": "{:,.1f}", "time_us_p99": "{:,.1f}", **pct,
                     **{c: "{:,.1f}" for c in frame.columns if c.startswith("theory_us_")}})
    if frame["wrong"].sum():
        raise CommbenchError(f"{int(frame['wrong'].sum())} wrong values in the correctness pass")


# ---------------------------------------------------------------------------------------------
def _save_or_print(frame: pd.DataFrame, title: str, as_json: bool, out: str | None, meta: dict,
                   formats: dict | None = None, drop: tuple = ()) -> None:
    from commbench.results import environment_metadata, save_table

    if out:
        save_table(frame, out, environment_metadata(**meta))
    if as_json:
        click.echo(json.dumps({"rows": _records(frame)}, default=_json_default))
    else:
        print_frame(frame.drop(columns=[c for c in drop if c in frame.columns]), title, formats)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows for --json: missing values become null (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _json_default(value):
    if isinstance(value, float) or hasattr(value, "__float__"):
        return float(value)
    return str(value)


@main.command("hardware")
def hardware_cmd():
    """List the hardware profiles (hardware/*.toml): memory, bandwidth, peak FLOP/s, default fabric.

    \b
    Example:
      commbench hardware
    """
    from commbench.hardware import load_hardware, shipped_hardware

    print_frame(pd.DataFrame([load_hardware(n).summary() for n in shipped_hardware()]),
                "Hardware profiles (peaks from spec sheets; `--hardware local` measures this machine)")


@main.command()
@plan_options
@click.option("--stage", type=int, default=0, show_default=True, help="Pipeline stage whose layers to build.")
@click.option("--batch", type=int, default=8, show_default=True, help="Sequences in the decode step.")
@click.option("--prefill-tokens", type=int, default=512, show_default=True, help="Tokens in the prefill chunk.")
@click.option("--context", type=int, default=1024, show_default=True, help="Cached tokens each sequence attends to.")
@click.option("--iters", type=int, default=3, show_default=True, help="Timed iterations per layer and phase.")
@click.option("--device", default=None, help="torch device (default: cuda if present, else cpu).")
@click.option("--gemm-tokens", default="1,4,16,64,256,1024", show_default=True,
              help="Token counts of the GEMM-efficiency curve (the MLP up-projection at the model's shape).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the table (.csv/.json/.parquet); "
              "predict --hardware FILE composes with it.")
def compute(model, mode, tp, pp, stage, batch, prefill_tokens, context, iters, device, gemm_tokens, as_json, out):
    """Measure one rank's per-stage compute at MODEL's own layer shapes on this device.

    Builds one layer of each kind the stage holds (TP shard or PP layer range) with random
    weights, times a prefill chunk and a decode step, and scales by the stage's layer count.
    Then a GEMM-efficiency curve over --gemm-tokens and the eager per-op launch cost: with --out,
    `predict --hardware compute.csv` uses all three.

    \b
    Example:
      commbench compute gpt-oss-120b --mode tp --batch 128
      commbench compute debug-tiny --mode pp --out compute.csv
    """
    from commbench.compute import launch_row, measure_gemm_curve, measure_launch_cost, measure_stage
    from commbench.model_card import load_model_card
    from commbench.plan import ParallelPlan
    from commbench.results import check_output_path

    for name, value in (("batch", batch), ("prefill-tokens", prefill_tokens), ("iters", iters)):
        if value < 1:
            raise CommbenchError(f"--{name} must be >= 1, got {value}")
    if context < 0:
        raise CommbenchError(f"--context must be >= 0, got {context}")
    tokens = _parse_csv_ints(gemm_tokens, "--gemm-tokens")
    if device is not None:
        import torch

        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise CommbenchError(f"unknown --device {device!r}; valid: cpu, cuda, cuda:N")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CommbenchError(f"--device {device} needs CUDA; this torch sees no GPU (use --device cpu)")
    if out:
        check_output_path(out)
    plan = ParallelPlan.for_mode(load_model_card(model), mode, tp=tp, pp=pp)
    with console.status(f"building {plan.model.name} stage {stage} layers") as status:
        frame = measure_stage(plan, stage, prefill_tokens, batch, context, iters=iters, device=device,
                              progress=lambda msg: status.update(f"timing {msg}"))
        status.update("timing the GEMM-efficiency curve and the eager launch cost")
        dev = frame.device.iloc[0]
        frame = pd.concat([frame, measure_gemm_curve(plan, tokens, iters, device=dev),
                           pd.DataFrame([launch_row(plan, measure_launch_cost(device=dev), dev)])], ignore_index=True)
    _save_or_print(frame, f"{plan.model.name} {plan.describe()}: stage {stage}, one rank, on {frame.device.iloc[0]} "
                   f"(bf16 weights; quantised formats not emulated)", as_json, out,
                   {"command": "compute", "model": model, "mode": mode, "stage": stage, "batch": batch,
                    "prefill_tokens": prefill_tokens, "context": context, "iters": iters},
                   {"time_ms_per_layer": "{:,.3f}", "stage_ms": "{:,.2f}", "bytes_per_layer": "{:,.0f}",
                    "flops_per_layer": "{:.3g}", "effective_gbps": "{:.2f}", "effective_tflops": "{:.3f}"},
                   drop=("samples_ms", "model", "tp", "pp"))


def _predict_options(f):
    f = click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the table (.csv/.json/.parquet) with metadata.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")(f)
    f = click.option("--fabric", default=None, help="Fabric profile name (fabrics/), a .toml, or a saved sweep .csv to fit "
                     "(default: the hardware profile's).")(f)
    f = click.option("--hardware", default="dgx-spark", show_default=True,
                     help="Hardware profile: dgx-spark, h100, h200, rtx-pro-6000, local, a .toml, or a compute --out table.")(f)
    return f


@main.command()
@click.argument("models")
@_predict_options
@click.option("--mode", default="both", show_default=True, help="both (tp and pp), or a comma list of tp, pp, tp+pp.")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size in tp and tp+pp modes (default 2).")
@click.option("--pp", type=int, default=None, help="Pipeline-parallel size in pp and tp+pp modes (default 2).")
@click.option("--batch", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated concurrencies.")
@click.option("--scenario", default="balanced", show_default=True, help="Comma-separated presets, or all.")
@click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")
@click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")
@click.option("--token-budget", type=int, default=8192, show_default=True, help="Chunked-prefill token budget per step.")
@click.option("--published", "published_file", type=click.Path(dir_okay=False), default=None,
              help="Your measured figures to set beside the predictions, with the error: a `vllm bench serve "
                   "--save-result` JSON, or a table (model, tp, pp, batch, isl, osl, metric, value).")
@click.option("--recipe", default="checkpoint", show_default=True,
              help="How the engine serves the model (recipes/): weight formats, KV-cache dtype, CUDA graphs or eager.")
def predict(models, hardware, fabric, as_json, out, mode, tp, pp, batch, scenario, isl, osl, token_budget,
            published_file, recipe):
    """Predict output tok/s, TTFT and TPOT of full runs, TP and PP side by side.

    MODELS is one name or config.json, or several comma-separated. Rows with a published figure
    (../shared/reference/calibration.md) show it and the error.

    \b
    Example:
      commbench predict gpt-oss-120b --hardware dgx-spark --mode both --batch 1,2,4,8,16,32,64,128 --scenario balanced
      commbench predict llama-3.1-8b-instruct --hardware dgx-spark --fabric sweep.csv
      commbench predict llama-3.1-8b-instruct --published my-measurements.csv
    """
    from commbench.compute import resolve_hardware
    from commbench.explain import parse_modes, parse_scenarios, pp_over_tp, predict_grid
    from commbench.fabric import load_fabric
    from commbench.published import load_figures
    from commbench.results import check_output_path

    modes, scenarios = parse_modes(mode), parse_scenarios(scenario)
    batches = _parse_csv_ints(batch, "--batch")
    if out:
        check_output_path(out)
    hw = resolve_hardware(hardware)
    fab = load_fabric(fabric or hw.fabric)
    names = [m.strip() for m in models.split(",") if m.strip()]
    published = load_figures(published_file) if published_file else None
    frame = predict_grid(names, hw, fab, modes, batches, scenarios, isl, osl, token_budget, tp, pp, published, recipe)
    shown = ["model", "mode", "tp", "pp", "batch", "scenario", "output_tok_s", "ttft_ms", "tpot_ms",
             "published_tok_s", "error_pct", "fits_memory"]
    _save_or_print(frame, f"Predicted full runs on {hw.name} over {fab.name} (breakdown by term: --json, --out or "
                   f"commbench explain)", as_json, out,
                   {"command": "predict", "models": names, "hardware": hw.name, "fabric": fab.name,
                    "fabric_segments": fab.to_frame().to_dict(orient="records"), "scenarios": scenarios,
                    "token_budget": token_budget, "recipe": recipe},
                   {"output_tok_s": "{:,.1f}", "ttft_ms": "{:,.0f}", "tpot_ms": "{:,.1f}",
                    "published_tok_s": "{:.2f}", "error_pct": "{:+.1f}"},
                   drop=tuple(c for c in frame.columns if c not in shown))
    if {"tp", "pp"} <= set(modes) and not as_json:
        table = pp_over_tp(frame).pivot_table(index=["model", "scenario"], columns="batch", values="pp_over_tp")
        rows = [{"model": model_name, "scenario": scen, **{f"b{b}": f"{v:.2f}" for b, v in cells.items()}}
                for (model_name, scen), cells in table.iterrows()]
        print_frame(pd.DataFrame(rows), "PP / TP output tok/s (above 1: PP ahead)")
    if not frame.fits_memory.all() and not as_json:
        bad = frame[~frame.fits_memory]
        console.print(f"[yellow]warning:[/] {len(bad)} rows need more than {hw.memory_gb:g} GB per rank (weights + KV): "
                      f"{', '.join(f'{r.model} {r.mode} b{r.batch}' for r in bad.itertuples())[:300]}")


@main.command("explain")
@click.argument("model")
@click.option("--hardware", default="dgx-spark", show_default=True, help="Hardware profile (see `commbench hardware`).")
@click.option("--fabric", default=None, help="Fabric profile or sweep file (default: the hardware profile's).")
@click.option("--batch", type=int, default=128, show_default=True, help="Concurrency to explain beside batch 1.")
@click.option("--scenario", default="balanced", show_default=True, help="Workload preset.")
@click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")
@click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...], \"sentences\": [...]} as JSON.")
def explain_cmd(model, hardware, fabric, batch, scenario, isl, osl, as_json):
    """Why TP or PP wins for MODEL: per-token time by term at batch 1 and BATCH, in numbers and words.

    \b
    Example:
      commbench explain gpt-oss-120b --hardware dgx-spark --batch 128
    """
    from commbench.compute import resolve_hardware
    from commbench.explain import TERM_COLUMNS, explain
    from commbench.fabric import load_fabric

    hw = resolve_hardware(hardware)
    grid, lines, evidence = explain(model, hw, load_fabric(fabric or hw.fabric), batch, scenario, isl, osl)
    if as_json:
        click.echo(json.dumps({"rows": _records(grid), "evidence": _records(evidence), "sentences": lines},
                              default=_json_default))
        return
    cols = ["mode", "batch", "output_tok_s", "tpot_ms", "ttft_ms", *TERM_COLUMNS]
    print_frame(grid[cols], f"{model}: time per output token by term (ms)",
                {"output_tok_s": "{:,.1f}", "tpot_ms": "{:,.1f}", "ttft_ms": "{:,.0f}",
                 **{c: "{:.3f}" for c in TERM_COLUMNS}})
    print_frame(evidence, f"TP - PP gap at batch {batch} by term, ms per decode step, on each fabric",
                {c: "{:.2f}" for c in evidence.columns[1:]})
    for line in lines:
        console.print(line, highlight=False)


@main.command()
@click.option("--published", "published_files", multiple=True, type=click.Path(dir_okay=False),
              help="Your own figures instead of the shipped set: `vllm bench serve --save-result` JSON files or "
                   "figure tables (repeat the option, or pass a shell glob after it).")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--fabric", default=None, help="Fabric for rows across boxes (default: each row's hardware profile's).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\", \"summary\", \"winners\", \"findings\"} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the per-row table (.csv/.json/.parquet).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.md, a predicted-vs-measured plot and the tables into this folder.")
def accuracy(published_files, more_files, fabric, as_json, out, report_dir):
    """Every published figure against its prediction: error per row, MAPE per source, TP/PP winners.

    The shipped set (published/figures.csv) holds the independent single-Spark decode curves and the
    two-Spark review rows, each with its source; rows a constant was chosen on are marked `tuned`.

    \b
    Example:
      commbench accuracy
      commbench accuracy --published results/*.json
    """
    from commbench.accuracy import accuracy_table, combine, findings, summary, winner_agreement
    from commbench.fabric import load_fabric
    from commbench.hardware import load_hardware
    from commbench.published import load_figures, shipped_figures
    from commbench.results import check_output_path

    if out:
        check_output_path(out)
    files = list(published_files) + list(more_files)
    figures = combine([load_figures(f) for f in files]) if files else shipped_figures()
    fab = load_fabric(fabric or load_hardware(figures.hardware.iloc[0]).fabric)
    table = accuracy_table(figures, fab)
    summ, winners, checks = summary(table), winner_agreement(table), findings(fab)
    if report_dir:
        from commbench.report import write_accuracy_report

        write_accuracy_report(report_dir, table, summ, winners, checks, fab, files)
    if as_json:
        click.echo(json.dumps({"schema_version": 1, "fabric": fab.name, "rows": _records(table), "summary": _records(summ),
                               "winners": _records(winners), "findings": _records(checks)}, default=_json_default))
    else:
        shown = table.drop(columns=["citation", "role", "hardware"])
        print_frame(shown, f"Predicted vs published ({fab.name} across boxes)",
                    {"value": "{:,.2f}", "predicted": "{:,.2f}", "error_pct": "{:+.1f}"})
        print_frame(summ, "Error per source (MAPE = mean |predicted / measured - 1|)",
                    {"mape_pct": "{:.1f}", "worst_pct": "{:+.1f}"})
        if not winners.empty:
            print_frame(winners, "TP vs PP winner", {"measured_pp_over_tp": "{:.2f}", "predicted_pp_over_tp": "{:.2f}"})
        print_frame(checks, f"The review's findings on {fab.name}")
    if out:
        from commbench.results import environment_metadata, save_table

        save_table(table, out, environment_metadata(command="accuracy", fabric=fab.name, files=files))


# ---------------------------------------------------------------------------------------------
@main.group()
def fabric():
    """Link theory, fitted latency-bandwidth models and a pass/fail verdict for a fabric.

    \b
    Example:
      commbench fabric links
      commbench fabric validate --expect 200gbe
    """


@fabric.command("links")
@click.option("--ranks", type=int, default=2, show_default=True, help="Ranks n for the theory columns.")
@click.option("--msg-bytes", default="64M", show_default=True, help="Message size S for the theory columns.")
def fabric_links(ranks, msg_bytes):
    """Known link profiles with their theory, and the shipped fabric profiles (fitted or inferred).

    Theory for n ranks and size S: ring all_reduce 2(n-1) x latency + 2(n-1)/n x S / B; tree
    all_reduce 2 ceil(log2 n) x latency + 2 S / B; all_gather (n-1) x latency + (n-1)/n x S / B;
    send/recv latency + S / B.

    \b
    Example:
      commbench fabric links --ranks 4 --msg-bytes 1M
    """
    from commbench.fabric import load_fabric, shipped_fabrics
    from commbench.links import LINKS, theory_time_s

    if ranks < 2:
        raise CommbenchError(f"--ranks must be >= 2, got {ranks}")
    S = _parse_bytes(msg_bytes)
    rows = []
    for link in LINKS.values():
        row = {"link": link.name, "bandwidth_gbps": link.bandwidth_gbps,
               "measured_gbps": link.measured_Bps / 1e9 if link.measured_Bps else None,
               "latency_us": link.latency_s * 1e6}
        for coll, algo in (("all_reduce", "ring"), ("all_reduce", "tree"), ("all_gather", "ring"), ("send_recv", "ring")):
            t = theory_time_s(coll, S, ranks, link, algo)
            row[f"{coll}{'_tree' if algo == 'tree' else ''}_us"] = t * 1e6
        row["source"] = link.source
        rows.append(row)
    print_frame(pd.DataFrame(rows), f"Link theory for n = {ranks} ranks, S = {S:,} B (GB = 1e9 B, per direction)",
                {"measured_gbps": "{:.2f}", "latency_us": "{:.1f}"})
    frames = [load_fabric(name).to_frame() for name in shipped_fabrics()]
    print_frame(pd.concat(frames, ignore_index=True).drop(columns=["collective", "alpha_ci_us", "busbw_ci_gbps"]),
                "Fabric profiles (fabrics/): t(S) = alpha + S x busbw factor / busbw, per size segment",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.3f}"})


@fabric.command("fit")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Save the fit as a fabric profile (.toml) for predict --fabric.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
def fabric_fit(sweep_file, out, as_json):
    """Fit t(S) = alpha + S / beta per collective of a saved sweep, with 95% confidence intervals.

    A second segment is kept where a protocol switch shows (a split that more than halves the
    residual). busbw = beta x the collective's busbw factor.

    \b
    Example:
      commbench fabric fit sweep.csv --out my-fabric.toml
    """
    from commbench.fabric import fabric_toml, load_fabric
    from commbench.results import atomic_write

    if out:
        if not out.endswith(".toml"):
            raise CommbenchError(f"--out {out!r}: a fitted fabric is saved as .toml")
    model = load_fabric(sweep_file)
    frame = model.to_frame()
    frame = frame[frame.collective != "any"].reset_index(drop=True)
    if out:
        atomic_write(Path(out), lambda p: Path(p).write_text(fabric_toml(model, f"Fitted by commbench fabric fit from {sweep_file}.")))
    if as_json:
        click.echo(json.dumps({"rows": _records(frame)}, default=_json_default))
        return
    print_frame(frame, f"alpha-beta fit of {sweep_file} (weighted least squares on p50; CI: 95%, t distribution)",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.2f}", "busbw_gbps": "{:.4f}"})


@fabric.command("infer")
@click.option("--base", default="spark-200gbe", show_default=True, help="Fabric whose small-message slope is kept.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the implied profile (.toml) to study it.")
def fabric_infer(base, out):
    """Diagnose the review's rows: the fabric they would imply, and whether it can exist.

    Solves the per-call latency and the mid- and large-message busbw that make the published TP=2
    gpt-oss-120b rows come out (TP ahead only at batch 1), judges that fabric (bandwidth must not
    fall with size nor drop below the slowest transport the pair has), and reports the ms per
    engine step that the well-configured fabric leaves unexplained. No shipped profile comes from it.

    \b
    Example:
      commbench fabric infer
    """
    from commbench.calibrate import infer_fabric, judge, predicted, unexplained_ms_per_step
    from commbench.fabric import fabric_toml, load_fabric
    from commbench.published import review_rows
    from commbench.results import atomic_write

    if out and not out.endswith(".toml"):
        raise CommbenchError(f"--out {out!r}: a fabric profile is saved as .toml")
    base_fabric = load_fabric(base)
    with console.status("solving for the fabric the published rows imply"):
        model = infer_fabric(base)
    rows = [{"model": r.model, "mode": r.mode, "batch": r.batch, "scenario": r.scenario, "published_tok_s": r.output_tok_s,
             "implied_fabric_tok_s": predicted(r, model), f"{base}_tok_s": predicted(r, base_fabric),
             f"unexplained_ms_per_step_on_{base}": unexplained_ms_per_step(r, base_fabric)} for r in review_rows()]
    print_frame(model.to_frame().drop(columns=["collective", "alpha_ci_us", "busbw_ci_gbps"]),
                f"Fabric the published TP rows imply (over {base}'s small-message slope)",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.3f}"})
    print_frame(pd.DataFrame(rows), "Published rows", {"implied_fabric_tok_s": "{:.1f}", f"{base}_tok_s": "{:.1f}",
                                                       f"unexplained_ms_per_step_on_{base}": "{:+.1f}"})
    verdict = judge(model)
    if verdict.physical:
        console.print("The implied fabric is physical: the rows are consistent with a (slow) fabric. Measure it with "
                      "`commbench fabric validate` on the pair.", highlight=False)
    else:
        console.print("The implied fabric is not physical: " + "; ".join(verdict.reasons) + ". The rows are not a "
                      f"fabric property: the last column is what {base} leaves unexplained "
                      "(see `commbench explain` for the candidate causes).", highlight=False)
    if out:
        text = fabric_toml(model, "Written by commbench fabric infer: a diagnostic implied by end-to-end rows, not a measured profile.")
        atomic_write(Path(out), lambda p: Path(p).write_text(text))


@fabric.command("validate")
@click.option("--expect", required=True, help="Expected link: 200gbe, 100gbe, pcie5x4, pcie5x16, nvlink-h100, "
              "loopback, or a rate like 1gbit, 12.5GB/s.")
@click.option("--backend", default="gloo", show_default=True, help="gloo or mpi.")
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False), default=None, help="Judge a saved sweep instead of running one.")
@click.option("--collective", default="all_reduce", show_default=True, help="Collective to sweep.")
@click.option("--min-bytes", default="8", show_default=True, help="Smallest message.")
@click.option("--max-bytes", default="64M", show_default=True, help="Largest message.")
@click.option("--ranks", type=int, default=2, show_default=True, help="Local ranks of the embedded world.")
@click.option("--iters", type=int, default=5, show_default=True, help="Timed iterations per size.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed iterations per size.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per collective.")
@click.option("--json", "as_json", is_flag=True, help="Print {verdict, preflight, bands, rows} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the sweep with the verdict in its metadata.")
def fabric_validate(expect, backend, sweep_file, collective, min_bytes, max_bytes, ranks, iters, warmup, timeout_s,
                    as_json, out):
    """Preflight the environment, sweep, and judge each size band against the expected link.

    Exit status: 0 pass, 1 fail, 2 bad input. Run it under torchrun or mpiexec across the real
    hosts; without a launcher it checks the local loopback world.

    \b
    Example:
      commbench fabric validate --expect 200gbe
      commbench fabric validate --expect 1gbit --backend gloo
      commbench fabric validate --expect 200gbe --sweep sweep.csv
    """
    from commbench.links import parse_link
    from commbench.results import check_output_path, environment_metadata, load_table, save_table
    from commbench.sweep import check_sweep_choices, sizes_between
    from commbench.validate import bands_frame, findings_frame, judge, preflight, verdict

    link = parse_link(expect)
    check_sweep_choices(collective, backend)
    if out:
        check_output_path(out)
    from commbench.launcher import launcher_world

    env = dict(os.environ)
    if launcher_world() is None and backend == "gloo":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the embedded world's ranks talk over loopback
    findings = preflight(link, backend, env) if sweep_file is None else []
    frame = None
    partial_note = ""
    launcher = "file"
    if sweep_file is not None:
        from commbench.fabric import check_sweep_table

        frame, meta_in = load_table(sweep_file)
        frame = check_sweep_table(frame, sweep_file)
        if meta_in.get("complete") is False:
            partial_note = (f"{sweep_file} is a partial sweep (complete: false, {meta_in.get('error', 'the run ended early')}):"
                            f" judged on the {len(frame)} sizes it holds")
    elif not any(f.status == "fail" for f in findings):
        sizes = sizes_between(_parse_bytes(min_bytes), _parse_bytes(max_bytes))
        _check_embedded_memory(sizes[-1] if sizes else 0, ranks, backend)
        result = _measure(collective, sizes, backend, ranks, iters, warmup, timeout_s)
        if result is None:
            return
        frame, launcher, ranks = result
    bands = judge(frame, link, backend) if frame is not None else []
    fitted = None
    if frame is not None and len(frame) >= 3:
        from commbench.fabric import fit_sweep

        fitted = fit_sweep(frame, name="measured").to_frame().query("collective != 'any'").drop(columns=["fabric"])
    result_verdict = verdict(findings, bands)
    if frame is not None and "wrong" in frame and frame["wrong"].sum():
        result_verdict = "FAIL"
    if out and frame is not None:
        save_table(frame, out, environment_metadata(command="fabric validate", expect=link.name, backend=backend,
                                                    launcher=launcher, verdict=result_verdict, collective=collective,
                                                    hosts=frame.attrs.get("hosts", []),
                                                    ranks=int(frame["ranks"].iloc[0]) if len(frame) else ranks,
                                                    iters=iters, warmup=warmup, timing="blocking",
                                                    bands=bands_frame(bands).to_dict(orient="records")))
    if as_json:
        click.echo(json.dumps({"verdict": result_verdict, "expect": link.name, "partial": partial_note or None,
                               "preflight": _records(findings_frame(findings)),
                               "bands": _records(bands_frame(bands)),
                               "fit": [] if fitted is None else _records(fitted),
                               "rows": [] if frame is None else _records(frame)}, default=_json_default))
    else:
        if findings:
            print_frame(findings_frame(findings), "Preflight")
        if partial_note:
            console.print(f"[yellow]warning:[/] {partial_note}", highlight=False)
        if frame is not None:
            print_frame(frame[[c for c in ("msg_bytes", "time_us_p50", "time_us_p99", "busbw_gbps", "wrong") if c in frame]],
                        f"{collective} sweep ({backend}, {launcher})", {"msg_bytes": "{:,.0f}", "time_us_p50": "{:,.1f}", "time_us_p99": "{:,.1f}",
                                                                        "busbw_gbps": "{:.4f}"})
            print_frame(bands_frame(bands).drop(columns=["diagnosis"]), f"Bands against {link.name} "
                        f"({link.bandwidth_gbps:.4g} GB/s per direction)", {"measured": "{:.4g}", "expected": "{:.4g}",
                                                                          "threshold": "{:.4g}"})
        if fitted is not None:
            print_frame(fitted, "Fitted t(S) = alpha + S x busbw factor / busbw (95% confidence intervals)",
                        {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.4g}"})
        for b in bands:
            if b.diagnosis:
                console.print(f"diagnosis ({b.band}): {b.diagnosis}", highlight=False)
        for f in findings:
            if f.status == "fail":
                console.print(f"preflight: {f.check}={f.value}: {f.note}", highlight=False)
        console.print(f"[bold]{result_verdict}[/]: fabric against {link.name}", highlight=False)
    sys.exit(0 if result_verdict == "PASS" else 1)


# ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", required=False)
@click.option("--hardware", default="dgx-spark", show_default=True, help="Hardware profile for a model report.")
@click.option("--fabric", default=None, help="Fabric profile or sweep file (default: the hardware profile's).")
@click.option("--scenario", default="all", show_default=True, help="Comma-separated presets, or all.")
@click.option("--batch", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated concurrencies.")
@click.option("--sweep", "sweep_files", type=click.Path(dir_okay=False), multiple=True,
              help="A saved sweep (repeatable): alone, a measured-fabric report; with MODEL, measured points on the busbw plot.")
@click.option("--replay", "replay_file", type=click.Path(dir_okay=False), default=None,
              help="A saved replay (trace --replay --out) to plot per site.")
@click.option("--expect", default=None, help="With --sweep alone: judge it against this link.")
@click.option("--title", default="", help="Title of a measured-fabric report.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder to write (default reports/MODEL or reports/SWEEP-NAME).")
def report(model, hardware, fabric, scenario, batch, sweep_files, replay_file, expect, title, out):
    """Write a report folder: report.md with tables, PNG plots and their data as CSV.

    \b
    Example:
      commbench report gpt-oss-120b --hardware dgx-spark
      commbench report --sweep results/sweep.csv --out reports/my-fabric
    """
    from commbench.explain import parse_scenarios
    from commbench.report import command_line, model_report, sweep_report

    if model is None and not sweep_files:
        raise CommbenchError("give a MODEL (a predicted report) or --sweep FILE (a fabric report)")
    if expect:
        from commbench.links import parse_link

        parse_link(expect)  # a bad --expect fails before any folder is made
    for f in (*sweep_files, replay_file):
        if f and not Path(f).is_file():
            raise CommbenchError(f"file {f!r} not found")
    if model is None:
        target = Path(out or Path("reports") / Path(sweep_files[0]).stem)
        args = ["report", *[x for f in sweep_files for x in ("--sweep", f)]]
        args += (["--replay", replay_file] if replay_file else []) + (["--expect", expect] if expect else [])
        args += (["--title", title] if title else []) + ["--out", target]
        with console.status(f"writing {target}"):
            path = sweep_report(list(sweep_files), target, expect, command_line(*args), replay_file, title)
    else:
        scenarios = parse_scenarios(scenario)
        batches = tuple(_parse_csv_ints(batch, "--batch"))
        from commbench.compute import resolve_hardware
        from commbench.fabric import load_fabric
        from commbench.model_card import load_model_card

        name = load_model_card(model).name
        hw = resolve_hardware(hardware)
        load_fabric(fabric or hw.fabric)  # bad names fail before anything is written
        target = Path(out or Path("reports") / name)
        with console.status(f"writing {target}"):
            args = ["report", model, "--hardware", hardware, "--scenario", scenario, "--batch", batch]
            for flag, value in (("--fabric", fabric), ("--sweep", sweep_files[0] if sweep_files else None),
                                ("--replay", replay_file)):
                args += [flag, value] if value else []
            path = model_report(model, hardware, fabric, target, scenarios, batches,
                                sweep_files[0] if sweep_files else None, replay_file,
                                command_line(*args, "--out", target))
    console.print(f"wrote {path} and its plots in {path.parent}")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
