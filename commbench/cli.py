"""The click layer: thin wrappers over the library. Every command's help ends with an example."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from commbench import CommbenchError

# Wide tables stay readable when piped (rich assumes 80 columns off a terminal).
console = Console(width=None if sys.stdout.isatty() else 200)


class CommbenchGroup(click.Group):
    """Turns CommbenchError into one line on stderr and exit status 2."""

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


@main.command()
@click.argument("model")
@click.option("--mode", default="tp", show_default=True, help="Parallel pattern: tp or pp.")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size (default 2 in tp mode, 1 in pp mode).")
@click.option("--pp", type=int, default=None, help="Pipeline-parallel size (default 2 in pp mode, 1 in tp mode).")
@click.option("--batch", type=int, default=1, show_default=True, help="Concurrent requests.")
@workload_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (inputs, ops, totals).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the op rows as CSV.")
def trace(model, mode, tp, pp, batch, scenario, isl, osl, token_budget, as_json, csv_path):
    """The exact communication of MODEL under TP or PP: every site per prefill chunk and decode step.

    MODEL is a shipped name (see `commbench models`) or a path to a Hugging Face config.json.

    \b
    Example:
      commbench trace gpt-oss-120b --mode pp
      commbench trace gpt-oss-120b --mode tp --batch 128 --scenario balanced --json
    """
    from commbench.model_card import load_model_card
    from commbench.plan import ParallelPlan
    from commbench.results import atomic_write
    from commbench.trace import make_trace
    from commbench.workload import Workload

    card = load_model_card(model)
    plan = ParallelPlan.for_mode(card, mode, tp=tp, pp=pp)
    workload = Workload.from_options(batch, scenario, isl, osl, token_budget)
    result = make_trace(plan, workload)
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


# ---------------------------------------------------------------------------------------------
def _parse_bytes(text: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    t = text.strip().upper().rstrip("B")
    suffix = t[-1] if t and t[-1] in units else ""
    try:
        value = int(float(t[: len(t) - len(suffix)]) * units[suffix])
    except ValueError:
        raise CommbenchError(f"bad size {text!r}; use bytes with an optional K, M or G suffix, e.g. 64M") from None
    return value


@main.command()
@click.argument("collective")
@click.option("--min-bytes", default="8", show_default=True, help="Smallest message (S), e.g. 8, 4K.")
@click.option("--max-bytes", default="4M", show_default=True, help="Largest message (S), e.g. 64M.")
@click.option("--backend", default="gloo", show_default=True, help="gloo (torch.distributed) or mpi (mpi4py).")
@click.option("--ranks", type=int, default=2, show_default=True, help="Local ranks of the embedded world.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed iterations per size.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed iterations per size.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per collective before a peer counts as dead.")
@click.option("--link", default=None, help="Add busbw as percent of a link: 200gbe, 100gbe, pcie5x4, pcie5x16, or a rate like 1gbit.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the tidy table (.csv/.json/.parquet) with environment metadata.")
def sweep(collective, min_bytes, max_bytes, backend, ranks, iters, warmup, timeout_s, link, as_json, out):
    """nccl-tests-style size sweep of COLLECTIVE (all_reduce, all_gather, send_recv).

    With no launcher it starts its own local world (the embedded default: 2 ranks on loopback, no
    GPU, no cluster); under torchrun or mpiexec it joins that world and rank 0 reports.

    \b
    Example:
      commbench sweep all_reduce --min-bytes 8 --max-bytes 64M
      commbench sweep send_recv --backend mpi
      mpiexec -n 2 -host a,b commbench sweep all_reduce --backend mpi
    """
    from commbench.results import check_output_path, environment_metadata, save_table
    from commbench.sweep import (check_sweep_choices, launcher_world, sizes_between, sweep_in_launched_world,
                                 sweep_local, sweep_via_mpiexec)

    check_sweep_choices(collective, backend)
    if ranks < 2 or iters < 1 or warmup < 0:
        raise CommbenchError(f"need ranks >= 2, iters >= 1, warmup >= 0; got {ranks}, {iters}, {warmup}")
    from commbench.links import parse_link

    link_profile = parse_link(link) if link else None
    if out:
        check_output_path(out)
    sizes = sizes_between(_parse_bytes(min_bytes), _parse_bytes(max_bytes))
    world = launcher_world()
    if world is None and backend == "mpi":
        args = ["sweep", collective, "--min-bytes", min_bytes, "--max-bytes", max_bytes, "--backend", "mpi",
                "--iters", str(iters), "--warmup", str(warmup), "--timeout", str(timeout_s)]
        args += ["--json"] if as_json else []
        args += ["--link", link] if link else []
        args += ["--out", out] if out else []
        sys.exit(sweep_via_mpiexec(args, ranks, timeout_s * (len(sizes) + 2)))
    if world is None:
        launcher = "embedded"
        with console.status(f"{collective}: {len(sizes)} sizes on {ranks} gloo ranks (loopback)"):
            frame = sweep_local(collective, sizes, ranks=ranks, iters=iters, warmup=warmup, timeout_s=timeout_s)
    else:
        launcher = "mpiexec" if world == "mpi" else "torchrun"
        rank, frame = sweep_in_launched_world(backend, collective, sizes, iters, warmup, timeout_s)
        if rank != 0:
            return
        ranks = int(frame["ranks"].iloc[0]) if len(frame) else ranks
    if link_profile is not None:
        frame[f"busbw_pct_{link_profile.name}"] = frame["busbw_gbps"] / link_profile.bandwidth_gbps * 100
    if out:
        import torch  # noqa: F401  (so its version lands in the metadata)

        save_table(frame, out, environment_metadata(backend=backend, launcher=launcher, ranks=ranks,
                                                    iters=iters, warmup=warmup, collective=collective))
    if as_json:
        click.echo(json.dumps({"rows": frame.to_dict(orient="records")}, default=float))
    else:
        print_frame(frame.drop(columns=["samples_us", "collective"]), f"{collective}, {backend}, {ranks} ranks ({launcher}), "
                    f"{iters} iterations (time = max over ranks per iteration)",
                    {"algbw_gbps": "{:.4f}", "busbw_gbps": "{:.4f}", "time_us_p50": "{:,.1f}", "time_us_min": "{:,.1f}",
                     "time_us_max": "{:,.1f}", "time_us_p99": "{:,.1f}"})
    if frame["wrong"].sum():
        raise CommbenchError(f"{int(frame['wrong'].sum())} wrong values in the correctness pass")


# ---------------------------------------------------------------------------------------------
def _save_or_print(frame: pd.DataFrame, title: str, as_json: bool, out: str | None, meta: dict,
                   formats: dict | None = None, drop: tuple = ()) -> None:
    from commbench.results import environment_metadata, save_table

    if out:
        save_table(frame, out, environment_metadata(**meta))
    if as_json:
        click.echo(json.dumps({"rows": frame.to_dict(orient="records")}, default=_json_default))
    else:
        print_frame(frame.drop(columns=[c for c in drop if c in frame.columns]), title, formats)


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
@click.argument("model")
@click.option("--mode", default="tp", show_default=True, help="Parallel pattern: tp or pp.")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size (default 2 in tp mode).")
@click.option("--pp", type=int, default=None, help="Pipeline-parallel size (default 2 in pp mode).")
@click.option("--stage", type=int, default=0, show_default=True, help="Pipeline stage whose layers to build.")
@click.option("--batch", type=int, default=8, show_default=True, help="Sequences in the decode step.")
@click.option("--prefill-tokens", type=int, default=512, show_default=True, help="Tokens in the prefill chunk.")
@click.option("--context", type=int, default=1024, show_default=True, help="Cached tokens each sequence attends to.")
@click.option("--iters", type=int, default=3, show_default=True, help="Timed iterations per layer and phase.")
@click.option("--device", default=None, help="torch device (default: cuda if present, else cpu).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the table (.csv/.json/.parquet); "
              "predict --hardware FILE composes with it.")
def compute(model, mode, tp, pp, stage, batch, prefill_tokens, context, iters, device, as_json, out):
    """Measure one rank's per-stage compute at MODEL's own layer shapes on this device.

    Builds one layer of each kind the stage holds (TP shard or PP layer range) with random
    weights, times a prefill chunk and a decode step, and scales by the stage's layer count.

    \b
    Example:
      commbench compute gpt-oss-120b --mode tp --batch 128
      commbench compute debug-tiny --mode pp --out compute.csv
    """
    from commbench.compute import measure_stage
    from commbench.model_card import load_model_card
    from commbench.plan import ParallelPlan
    from commbench.results import check_output_path

    for name, value in (("batch", batch), ("prefill-tokens", prefill_tokens), ("iters", iters)):
        if value < 1:
            raise CommbenchError(f"--{name} must be >= 1, got {value}")
    if context < 0:
        raise CommbenchError(f"--context must be >= 0, got {context}")
    if out:
        check_output_path(out)
    plan = ParallelPlan.for_mode(load_model_card(model), mode, tp=tp, pp=pp)
    with console.status(f"building {plan.model.name} stage {stage} layers") as status:
        frame = measure_stage(plan, stage, prefill_tokens, batch, context, iters=iters, device=device,
                              progress=lambda msg: status.update(f"timing {msg}"))
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
@click.option("--mode", default="both", show_default=True, help="tp, pp or both.")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size in tp mode (default 2).")
@click.option("--pp", type=int, default=None, help="Pipeline-parallel size in pp mode (default 2).")
@click.option("--batch", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated concurrencies.")
@click.option("--scenario", default="balanced", show_default=True, help="Comma-separated presets, or all.")
@click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")
@click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")
@click.option("--token-budget", type=int, default=8192, show_default=True, help="Chunked-prefill token budget per step.")
def predict(models, hardware, fabric, as_json, out, mode, tp, pp, batch, scenario, isl, osl, token_budget):
    """Predict output tok/s, TTFT and TPOT of full runs, TP and PP side by side.

    MODELS is one name or config.json, or several comma-separated. Rows with a published figure
    (../shared/reference/calibration.md) show it and the error.

    \b
    Example:
      commbench predict gpt-oss-120b --hardware dgx-spark --mode both --batch 1,2,4,8,16,32,64,128 --scenario balanced
      commbench predict llama-3.1-8b-instruct --hardware dgx-spark --fabric sweep.csv
    """
    from commbench.explain import parse_modes, parse_scenarios, predict_grid
    from commbench.fabric import load_fabric
    from commbench.hardware import load_hardware
    from commbench.results import check_output_path

    modes, scenarios = parse_modes(mode), parse_scenarios(scenario)
    batches = _parse_csv_ints(batch, "--batch")
    if out:
        check_output_path(out)
    hw = load_hardware(hardware)
    fab = load_fabric(fabric or hw.fabric)
    names = [m.strip() for m in models.split(",") if m.strip()]
    frame = predict_grid(names, hw, fab, modes, batches, scenarios, isl, osl, token_budget, tp, pp)
    shown = ["model", "mode", "tp", "pp", "batch", "scenario", "output_tok_s", "ttft_ms", "tpot_ms",
             "published_tok_s", "error_pct", "fits_memory"]
    _save_or_print(frame, f"Predicted full runs on {hw.name} over {fab.name} (breakdown by term: --json, --out or "
                   f"commbench explain)", as_json, out,
                   {"command": "predict", "models": names, "hardware": hw.name, "fabric": fab.name,
                    "fabric_segments": fab.to_frame().to_dict(orient="records"), "scenarios": scenarios,
                    "token_budget": token_budget},
                   {"output_tok_s": "{:,.1f}", "ttft_ms": "{:,.0f}", "tpot_ms": "{:,.1f}",
                    "published_tok_s": "{:.2f}", "error_pct": "{:+.1f}"},
                   drop=tuple(c for c in frame.columns if c not in shown))
    if set(modes) == {"tp", "pp"} and not as_json:
        ratio = frame.pivot_table(index=["model", "scenario"], columns="batch", values="output_tok_s", aggfunc=list)
        rows = []
        for (model_name, scen), cells in ratio.iterrows():
            rows.append({"model": model_name, "scenario": scen,
                         **{f"b{b}": f"{v[1] / v[0]:.2f}" if isinstance(v, list) and len(v) == 2 else "" for b, v in cells.items()}})
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
    from commbench.explain import TERM_COLUMNS, explain

    grid, lines = explain(model, hardware, fabric, batch, scenario, isl, osl)
    if as_json:
        click.echo(json.dumps({"rows": grid.to_dict(orient="records"), "sentences": lines}, default=_json_default))
        return
    cols = ["mode", "batch", "output_tok_s", "tpot_ms", "ttft_ms", *TERM_COLUMNS]
    print_frame(grid[cols], f"{model}: time per output token by term (ms)",
                {"output_tok_s": "{:,.1f}", "tpot_ms": "{:,.1f}", "ttft_ms": "{:,.0f}",
                 **{c: "{:.3f}" for c in TERM_COLUMNS}})
    for line in lines:
        console.print(line, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
