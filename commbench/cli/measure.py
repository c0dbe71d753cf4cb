"""Commands that measure on this machine or a launched world: sweep and compute (and the shared world runner)."""

from __future__ import annotations

import re

import click
from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench import CommbenchError, require
from commbench.cli.base import (dumps, output_format, _parse_csv_ints, _records, _save_or_print, console, main,
                                plan_options, print_frame)


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
    from commbench.measure.launcher import detect
    from commbench.results import host_memory_bytes

    if detect() is not None or backend not in ("gloo", "mpi"):
        return  # a launcher's world: its ranks' memory is theirs to know
    need = 3 * max_bytes * ranks
    have = host_memory_bytes()
    if need > have:
        raise CommbenchError(f"--max-bytes {max_bytes:,} needs about {need / 2**30:.1f} GiB for {ranks} local ranks' "
                             f"buffers; this host has {have / 2**30:.1f} GiB available")


def _add_theory_columns(frame: pd.DataFrame, link_profile) -> None:
    """busbw as percent of PCIe Gen5 x4 and x16 always, of --link and its theory time when given."""
    from commbench.links import LINKS, theory_time_s

    links = [LINKS["pcie5x4"], LINKS["pcie5x16"]] + ([link_profile] if link_profile is not None else [])
    for link in dict.fromkeys(links):
        frame[f"busbw_pct_{link.name}"] = frame["busbw_gbps"] / link.bandwidth_gbps * 100
    if link_profile is not None and len(frame):
        frame[f"theory_us_{link_profile.name}"] = [
            theory_time_s(c, s, int(n), link_profile) * 1e6 for c, s, n in zip(frame.collective, frame.msg_bytes, frame.ranks)]


LONG_RUN_S = 3600.0
"""A run expected to take longer than this (an hour) says so before it starts."""


def _say_if_long(rows: int, iters: int | None) -> None:
    """A note on stderr, before any rank starts, when adaptive sampling (up to timing.BUDGET_S of
    samples per row) could take over LONG_RUN_S."""
    from commbench.measure.launcher import launcher_rank
    from commbench.measure.timing import BUDGET_S

    if iters is None and rows * BUDGET_S > LONG_RUN_S and launcher_rank()[0] == 0:
        click.echo(f"note: {rows:,} rows at up to {BUDGET_S:g} s of samples each: this sweep may take about "
                   f"{rows * BUDGET_S / 3600:.1f} hours (-b, -e and -f set the sizes; --iters N fixes the samples)", err=True)


def _measure(spec, on_row=None):
    """commbench.measure.sweep(spec) with a progress bar; the table (attrs: hosts, launcher, ranks),
    None on a launched world's other ranks."""
    from commbench.cli.base import row_progress
    from commbench.measure import sweep

    _say_if_long(spec.rows, spec.iters)
    with row_progress(spec.rows, f"{spec.collective}: {len(spec.sizes)} sizes on {spec.backend}",
                      lambda row: f"{row['msg_bytes']:,} B {row['time_us_p50']:,.1f} us", on_row) as progress:
        return sweep(spec, on_row=progress)


SWEEP_HIDDEN = ("samples_us", "collective", "time_us", "floor_timer_us", "floor_call_us")


def _streamer(link_profile, title: str):
    """on_row for piped output: each size's row as TSV/CSV as soon as it finishes (nccl-tests prints
    each size as it finishes), the header and the title comment before the first."""
    sep = "\t" if output_format() == "tsv" else ","
    state = {"header": False}

    def stream(row):
        one = pd.DataFrame([row])
        _add_theory_columns(one, link_profile)
        one = one.drop(columns=[c for c in SWEEP_HIDDEN if c in one])
        if not state["header"]:
            click.echo(f"# {title}")
            click.echo(sep.join(one.columns))
            state["header"] = True
        click.echo(one.to_csv(sep=sep, index=False, header=False, lineterminator="\n"), nl=False)

    return stream


RANKS_PER_CORE = 4
"""Most embedded ranks per core of this host: the ranks share its cores, and past a few per core a
blocking collective's time is mostly the scheduler's time slices (and the start-up alone takes minutes)."""
RANK_MEMORY_BYTES = 256 * 2**20
"""Memory one embedded rank takes before its buffers: an interpreter with torch loaded (220 MB
resident measured here, Python 3.11, torch 2.x CPU)."""


def check_world_options(backend: str, ranks: int, what: str = "--ranks") -> None:
    """One-line errors for this host's limits on any run that starts a world (sweep, validate,
    replay), before any rank starts: the embedded world's ranks against this host's cores and memory,
    and a GLOO_SOCKET_IFNAME that names no interface here. The counts and --timeout themselves are
    checked where the run's spec is made (commbench.measure.SweepSpec, ReplaySpec)."""
    import os
    import socket

    from commbench.measure.launcher import detect

    launch = detect()
    if launch is None and backend in ("gloo", "mpi"):  # the embedded world: one process per rank on this host
        from commbench.results import host_memory_bytes

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if ranks > RANKS_PER_CORE * cores:
            raise CommbenchError(f"{what} {ranks}: the embedded world runs one process per rank on this host, at most "
                                 f"{RANKS_PER_CORE} per core and it has {cores} cores ({RANKS_PER_CORE * cores} ranks); "
                                 "run more ranks under a launcher (mpiexec, torchrun, srun) across hosts")
        have = host_memory_bytes()
        if ranks * RANK_MEMORY_BYTES > have:
            raise CommbenchError(f"{what} {ranks} needs about {ranks * RANK_MEMORY_BYTES / 2**30:.1f} GiB for the ranks' "
                                 f"processes ({RANK_MEMORY_BYTES / 2**20:.0f} MiB each); this host has "
                                 f"{have / 2**30:.1f} GiB available")
    names = os.environ.get("GLOO_SOCKET_IFNAME", "")
    if backend == "gloo" and names:
        here = sorted(name for _, name in socket.if_nameindex())
        missing = [n for n in names.split(",") if n not in here]
        if missing:
            raise CommbenchError(f"GLOO_SOCKET_IFNAME={names}: no interface {', '.join(missing)} on this host; valid: "
                                 f"{', '.join(here)}")


def _check_sweep_options(spec) -> None:
    """The run's limits on this host (check_world_options), before any rank starts; the values
    themselves were checked when `spec` (commbench.measure.SweepSpec) was made."""
    check_world_options(spec.backend, spec.ranks)
    _check_embedded_memory(spec.sizes[-1] if spec.sizes else 0, spec.ranks, spec.backend)


def _world_ranks(ranks: int) -> int:
    """The ranks the run will have: a launcher's world size where one started this process (a world of
    one is one rank, whatever --ranks says), else --ranks for the embedded world."""
    from commbench.measure.launcher import detect

    launch = detect()
    return launch.size if launch is not None and launch.size else ranks


def _print_sweep(frame: pd.DataFrame, title: str) -> None:
    pct = {c: "{:.3g}" for c in frame.columns if c.startswith("busbw_pct_")}
    hidden = (*SWEEP_HIDDEN, "p50_ci_lo_us", "p50_ci_hi_us", "fast_mode_us", "slow_mode_us", "floor_us")  # the table: narrower
    print_frame(frame.drop(columns=[c for c in hidden if c in frame]), title,
                {"algbw_gbps": "{:.4f}", "busbw_gbps": "{:.4f}", "time_us_p50": "{:,.1f}", "time_us_min": "{:,.1f}",
                 "time_us_max": "{:,.1f}", "time_us_p99": "{:,.1f}", **pct,
                 **{c: "{:,.1f}" for c in frame.columns if c.startswith("theory_us_")}})


def _floor_of(frame: pd.DataFrame) -> dict | None:
    """The harness floor a sweep's rows carry (the same on every row), as one dict."""
    if "floor_us" not in frame or not len(frame):
        return None
    return {k: frame[f"floor_{k}"].iloc[0] for k in ("us", "timer_us", "call_us")}


def _print_floor(floor: dict | None, backend: str) -> None:
    """The harness floor line under a sweep table (commbench.measure.timing.harness_floor)."""
    if not floor:
        return
    call = "n/a" if floor["call_us"] is None or floor["call_us"] != floor["call_us"] else f"{floor['call_us']:.2f} us"
    console.print(f"harness floor {floor['us']:.2f} us per call (timer {floor['timer_us']:.3f} us + a one-rank {backend} "
                  f"all-reduce {call}); near_floor: p50 within 2x of it", highlight=False)


def _keep_partial(failure, out: str | None, meta: dict, printed: bool) -> None:
    """The rows a failed run finished: saved with complete: false, and shown unless already streamed."""
    from commbench.results import environment_metadata, save_table

    if not failure.rows:
        return
    partial = pd.DataFrame(failure.rows)
    if out:
        save_table(partial, out, environment_metadata(**meta, launcher=failure.launcher, complete=False,
                                                      error=str(failure)))
    if not printed:
        _print_sweep(partial, f"{meta['collective']}: the {len(partial)} sizes that finished before the failure"
                     + (f" (saved to {out})" if out else ""))


@main.command()
@click.argument("collective")
@click.option("-b", "--min-bytes", default="8", show_default=True, help="Smallest message (S), e.g. 8, 4K.")
@click.option("-e", "--max-bytes", default="4M", show_default=True, help="Largest message (S), e.g. 64M.")
@click.option("-f", "--step-factor", "factor", type=float, default=2.0, show_default=True,
              help="Multiply the size by this much per step (nccl-tests -f).")
@click.option("--backend", default="gloo", show_default=True,
              help="gloo (torch.distributed, CPU), mpi (mpi4py), nccl (torch.distributed, CUDA) or cupy (CuPy's NCCL).")
@click.option("-d", "--datatype", "dtype", default="float32", show_default=True,
              help="Element type (nccl-tests -d): float32, float64, float16, bfloat16, int8, uint8, int32, int64.")
@click.option("-o", "--op", "redop", default="sum", show_default=True,
              help="Reduction of all_reduce / reduce_scatter (nccl-tests -o): sum, prod, max, min, avg.")
@click.option("--in-place", "placement", flag_value="in_place", help="Only the in-place call (default: both, where the backend has both).")
@click.option("--out-of-place", "placement", flag_value="out_of_place", help="Only the out-of-place call.")
@click.option("--ranks", type=int, default=2, show_default=True, help="Local ranks of the embedded world.")
@click.option("--iters", type=int, default=None,
              help="Timed iterations per size (default: adaptive, until the p50's 95% CI is within --target-ci).")
@click.option("--target-ci", type=float, default=0.03, show_default=True,
              help="Adaptive sampling: stop when the p50's 95% confidence interval is within +- this fraction.")
@click.option("--timing", default="blocking", show_default=True,
              help="blocking (a barrier before every timed call), back-to-back (nccl-tests: mean of iters calls) or "
                   "c-loop (mpi: back-to-back with the loop in C, below mpi4py's per-call cost) or cuda-graph "
                   "(nccl/cupy: calls captured once in a CUDA graph, replays timed; nccl-tests -G).")
@click.option("--cuda-graph", "cuda_graph", is_flag=True, help="Same as --timing cuda-graph (nccl-tests -G).")
@click.option("--mpi-buffers", "--buffers", "mpi_buffers", default="host", show_default=True,
              help="mpi backend: host (numpy) or cuda (device buffers; needs a CUDA-aware MPI); gloo under a "
                   "launcher: cuda puts its tensors on the GPU (CUDA-event timing).")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed iterations per size.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per collective before a peer counts as dead.")
@click.option("--link", default=None, help="Add busbw as percent of a link: 200gbe, 100gbe, pcie5x4, pcie5x16, or a rate like 1gbit.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the tidy table (.csv/.json/.parquet) with environment metadata.")
def sweep(collective, min_bytes, max_bytes, factor, backend, dtype, redop, placement, ranks, iters, target_ci, timing,
          cuda_graph, mpi_buffers, warmup, timeout_s, link, as_json, out):
    """nccl-tests-style size sweep of COLLECTIVE.

    COLLECTIVE: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv (one-way,
    rank 0 to rank 1, as PP sends) or send_recv_bidir (nccl-tests' ring shift).

    With no launcher it starts its own local world (the embedded default: 2 ranks on loopback, no
    GPU, no cluster); under torchrun or mpiexec it joins that world and rank 0 reports.

    \b
    Example:
      commbench sweep all_reduce --min-bytes 8 --max-bytes 64M
      commbench sweep send_recv --backend mpi
      commbench sweep all_reduce --backend mpi -d int8 -o max --out-of-place
      mpiexec -n 2 -host a,b commbench sweep all_reduce --backend mpi
      torchrun --nnodes 2 --nproc-per-node 1 --rdzv-endpoint HOST:29500 -m commbench sweep all_reduce --backend nccl
    """
    from commbench.links import parse_link
    from commbench.measure import SweepSpec
    from commbench.measure.world import WorldFailed
    from commbench.results import check_output_path, environment_metadata, save_table

    timing = "cuda-graph" if cuda_graph else timing
    spec = SweepSpec(collective=collective, min_bytes=_parse_bytes(min_bytes), max_bytes=_parse_bytes(max_bytes),
                     factor=factor, backend=backend, dtype=dtype, op=redop, placement=placement or "both", ranks=ranks,
                     iters=iters, warmup=warmup, target_ci=target_ci, timing=timing, buffers=mpi_buffers,
                     timeout_s=timeout_s)
    _check_sweep_options(spec)
    link_profile = parse_link(link) if link else None
    if out is not None:
        check_output_path(out)
    meta = dict(backend=backend, ranks=ranks, iters=iters if iters else f"adaptive, +-{target_ci:g} on the p50", warmup=warmup, collective=collective, timing=timing,
                mpi_buffers=mpi_buffers if backend == "mpi" or mpi_buffers == "cuda" else None, datatype=dtype, redop=redop,
                placement=spec.placement)
    try:
        streaming = not as_json and output_format() != "table"
        frame = _measure(spec, _streamer(link_profile, f"{collective}, {backend}, {_world_ranks(ranks)} ranks, {iters or 'adaptive'} "
                                                       "iterations (time = max over ranks per iteration)")
                         if streaming else None)
    except WorldFailed as failure:  # keep what finished, say so, and still fail
        _keep_partial(failure, out, meta, printed=streaming)
        raise
    if frame is None:
        return
    launcher, ranks = frame.attrs["launcher"], frame.attrs["ranks"]
    meta.update(ranks=ranks, hosts=frame.attrs.get("hosts", []))
    meta["harness_floor"] = _floor_of(frame)  # once, in the metadata too
    _add_theory_columns(frame, link_profile)
    if out:
        save_table(frame, out, environment_metadata(**meta, launcher=launcher, complete=True))
    if as_json:
        click.echo(dumps({"rows": _records(frame)}))
    elif not streaming:  # piped: every row was printed as it finished
        _print_sweep(frame, f"{collective}, {backend}, {ranks} ranks ({launcher}), {iters or 'adaptive'} iterations (time = max "
                     "over ranks per iteration; busbw_pct_*: percent of that link's rate)")
        _print_floor(meta.get("harness_floor"), backend)
    if frame["wrong"].sum():
        raise CommbenchError(f"{int(frame['wrong'].sum())} wrong values in the correctness pass")


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
def compute(model, mode, tp, pp, dp, stage, batch, prefill_tokens, context, iters, device, gemm_tokens, as_json, out):
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
    from commbench.measure.compute import launch_row, measure_gemm_curve, measure_launch_cost, measure_stage
    from commbench.predict.serving import expert_coverage
    from commbench.traffic.model_card import load_model_card
    from commbench.traffic.plan import ParallelPlan
    from commbench.results import check_output_path

    for name, value in (("batch", batch), ("prefill-tokens", prefill_tokens), ("iters", iters)):
        if value < 1:
            raise CommbenchError(f"--{name} must be >= 1, got {value}")
    if context < 0:
        raise CommbenchError(f"--context must be >= 0, got {context}")
    tokens = _parse_csv_ints(gemm_tokens, "--gemm-tokens")
    if device is not None:
        torch = require("torch")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise CommbenchError(f"unknown --device {device!r}; valid: cpu, cuda, cuda:N")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CommbenchError(f"--device {device} needs CUDA; this torch sees no GPU (use --device cpu)")
    if out is not None:
        check_output_path(out)
    from commbench.cli.predict import _card_warnings

    card = load_model_card(model)
    for warning in _card_warnings(card, "compute")[len(card.warnings):]:  # the registry's: refused, or said
        click.echo(f"warning: {warning}", err=True)
    plan = ParallelPlan.for_mode(card, mode, tp=tp, pp=pp, dp=dp)
    if plan.dp > 1:
        raise CommbenchError("compute measures tp and pp stages; mode ep is traced and replayed (commbench trace "
                             "--mode ep), not yet composed into compute or predict")
    if not plan.model.uniform_layers:
        raise CommbenchError(f"compute times attention + MLP/MoE layers; {plan.model.name}'s layers differ "
                             f"({plan.model.layer_kind_summary}): predict it from a hardware profile instead")
    with console.status(f"building {plan.model.name} stage {stage} layers") as status:
        frame = measure_stage(plan, stage, prefill_tokens, batch, context, iters=iters, device=device,
                              expert_coverage=expert_coverage,
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


