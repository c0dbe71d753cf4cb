"""Commands over model cards and their traffic: models, models show, trace (and trace --replay)."""

from __future__ import annotations


import click
from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench import CommbenchError
from rich.markup import escape

from commbench.cli.base import (dumps, _records, console, engine_options, main, plan_options, print_frame,
                                workload_options)


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
        from commbench.traffic.model_card import load_model_card, shipped_models

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
    from commbench.traffic.model_card import load_model_card

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
        "model_type": card.model_type,
        "family": card.family,
        "layer_kinds": card.layer_kind_summary,
        "layer_blocks": [list(card.blocks_of(i)) for i in range(card.num_hidden_layers)],
        "pp_boundary_tensors": list(card.boundary_tensors),
        "warnings": list(card.warnings),
        "source": card.source,
    }
    if as_json:
        click.echo(dumps(info, indent=2))
        return
    print_frame(pd.DataFrame({"field": list(info), "value": [str(v) for v in info.values()]}), f"Model card {card.name}")


# ---------------------------------------------------------------------------------------------
@main.command()
@plan_options
@engine_options
@click.option("--batch", type=int, default=1, show_default=True, help="Concurrent requests.")
@workload_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (inputs, engine, warnings, ops, totals; with --replay, rows).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the op rows as CSV.")
@click.option("--replay", is_flag=True, help="Run the traced ops for real, in engine order, per step kind.")
@click.option("--backend", default="gloo", show_default=True, help="Replay backend: gloo, mpi, nccl or cupy.")
@click.option("--phase", default="both", show_default=True, help="Replay prefill, decode or both.")
@click.option("--replay-dtype", default=None,
              help="Replay buffers of this type instead of the traced one (default: the trace's, e.g. bfloat16; "
                   "float32 of the same bytes where the backend lacks it).")
@click.option("--iters", type=int, default=3, show_default=True, help="Replayed steps timed per phase.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed steps per phase.")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="Seconds per replayed row before a peer counts as dead.")
@click.option("--link", default="200gbe", show_default=True, help="Link for the replay's wire-time column.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the replay table (.csv/.json/.parquet) with metadata.")
def trace(model, mode, tp, pp, dp, engine, cuda_graphs, moe_kernel, all2all, batch, scenario, isl, osl, token_budget,
          as_json, csv_path, replay, backend, phase, replay_dtype, iters, warmup, timeout_s, link, out):
    """The exact communication of MODEL under TP, PP or EP: every site per prefill chunk and decode step.

    MODEL is a shipped name (see `commbench models`), a path to a Hugging Face config.json, or a
    Hugging Face hub id (Org/Name: only its config.json is fetched, into the hub cache).

    \b
    Example:
      commbench trace gpt-oss-120b --mode pp
      commbench trace gpt-oss-120b --mode tp --batch 128 --scenario balanced --json
      commbench trace gpt-oss-120b --mode ep --batch 128 --engine vllm-v2
      commbench trace gpt-oss-120b --mode tp --batch 128 --replay
    """
    from commbench.traffic.model_card import load_model_card
    from commbench.traffic.plan import ParallelPlan
    from commbench.results import check_output_path
    from commbench.traffic.runner_options import RunnerOptions
    from commbench.traffic.trace import make_trace
    from commbench.traffic.workload import Workload

    if csv_path is not None:
        check_output_path(csv_path, (".csv",))
    engine_opts = RunnerOptions(engine, cuda_graphs, moe_kernel=moe_kernel, all2all=all2all)
    card = load_model_card(model)
    plan = ParallelPlan.for_mode(card, mode, tp=tp, pp=pp, dp=dp)
    workload = Workload.from_options(batch, scenario, isl, osl, token_budget)
    _refuse_before_output(card, plan, workload, out, replay)
    explicit = click.get_current_context().get_parameter_source("engine") != click.core.ParameterSource.DEFAULT
    result = make_trace(plan, workload, engine_opts, engine_explicit=explicit)  # refused or switched by the registry
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if replay:
        _replay(result, backend, phase, iters, warmup, timeout_s, link, out, as_json, replay_dtype)
        return
    if csv_path:  # the op rows, with the inputs and environment in a .meta.json sidecar like every table
        from commbench.results import environment_metadata, save_table

        save_table(result.ops_frame(), csv_path, environment_metadata(command="trace", **result.inputs))
    if as_json:
        click.echo(dumps(result.to_dict()))
        return
    _print_trace(result, card, plan, workload, explicit, cuda_graphs)


def _print_trace(result, card, plan, workload, explicit: bool, cuda_graphs: bool) -> None:
    """The trace as people read it: its inputs, one table per phase's step, the whole-run totals."""
    from commbench.traffic.runner_options import ENGINES

    w = workload
    engine = result.engine.name
    console.print(f"[bold]{escape(card.name)}[/] {plan.describe()}  batch {w.batch}, {w.scenario} ISL {w.isl} / OSL {w.osl}, "
                  f"token budget {w.token_budget}", highlight=False)
    default = "" if explicit else " (default)" if engine == "vllm-v1" else " (switched: see the warning)"
    console.print(f"engine {engine}{default}: {ENGINES[engine]}; {'CUDA graphs' if cuda_graphs else 'eager'}; "
                  f"layers: {card.layer_kind_summary} (family {card.family})", highlight=False)
    ops = result.ops_records()
    for phase, shape in result.steps.items():
        unit = "micro-batch step" if plan.pp > 1 else "step"
        hidden = ("phase", "count", "wire_bytes_per_rank", "group_size")
        rows = [{k: v for k, v in op.items() if k not in hidden} for op in ops if op["phase"] == phase]
        print_frame(rows, f"{phase}: one {unit} of {shape.tokens:g} tokens, {shape.sampled:g} sampled",
                    {"msg_bytes": "{:,.0f}", "wire_us_200gbe": "{:,.1f}", "wire_us_pcie5x16": "{:,.1f}"})
    print_frame(result.totals_records(), f"Totals (whole run: {w.batch} requests x ({w.isl} in + {w.osl} out), "
                f"{result.run_totals['steps']:,} engine steps)",
                {"msg_bytes": "{:,.0f}", "wire_bytes_per_rank": "{:,.0f}", "calls": "{:,.2f}"})
    console.print("wire time = S x busbw factor / link rate (bandwidth only; per-call latency excluded). "
                  "200gbe = 25 GB/s, pcie5x16 = 63 GB/s per direction.")


def _refuse_before_output(card, plan, workload, out, replay) -> None:
    """What trace refuses before it prints anything: an --out that would save nothing (it is the
    replay's), and a workload past its limits (context, concurrency, steps, memory: traffic.limits)."""
    from commbench.traffic.limits import check_workload
    from commbench.traffic.trace import replica_workload

    if out is not None and not replay:
        raise CommbenchError(f"--out {out!r} saves the replay table: add --replay (the traced op rows: --csv FILE)")
    check_workload(card, replica_workload(plan, workload), plan.pp)


def _replay(result, backend, phase, iters, warmup, timeout_s, link, out, as_json, replay_dtype=None):
    from commbench.cli.base import row_progress, save_partial
    from commbench.cli.measure import check_world_options
    from commbench.measure import ReplaySpec, replay
    from commbench.measure.replays import total_steps
    from commbench.measure.world import WorldFailed
    from commbench.results import check_output_path, environment_metadata, save_table

    phases = {"both": ("prefill", "decode"), "prefill": ("prefill",), "decode": ("decode",)}.get(phase)
    if phases is None:
        raise CommbenchError(f"unknown phase {phase!r}; valid: prefill, decode, both")
    spec = ReplaySpec(result, backend=backend, phases=phases, dtype=replay_dtype, iters=iters, warmup=warmup,
                      timeout_s=timeout_s, link=link)
    check_world_options(backend, spec.world_size, what="world size")
    if out is not None:
        check_output_path(out)
    plan = result.plan
    from commbench.links import parse_link

    link_name = parse_link(link).name
    meta = dict(command="trace --replay", **result.inputs, backend=backend, iters=iters, warmup=warmup, link=link_name)
    try:
        with row_progress(total_steps(spec.plan()[0]), f"replaying {plan.model.name} {plan.describe()}",
                          lambda row: f"{row['phase']} {row['site']}") as on_row:
            frame = replay(spec, on_row=on_row)
    except WorldFailed as failure:  # the rows that finished, saved with complete: false; still a failed run
        save_partial(failure, out, meta, {"wire_us_per_step": f"wire_us_per_step_{link_name}"})
        raise
    if frame is None:
        return
    launcher, hosts = frame.attrs["launcher"], frame.attrs.get("hosts", [])
    if out:
        save_table(frame, out, environment_metadata(**meta, hosts=hosts, launcher=launcher, complete=True))
    # the step rows total their phase's sites: count the sites' own wrong values, once
    wrong = int(frame.loc[frame["site"] != "step", "wrong"].sum()) if "wrong" in frame else 0
    if as_json:
        click.echo(dumps({**result.inputs, "backend": backend, "rows": _records(frame)}))
        if wrong:
            raise CommbenchError(f"{wrong} wrong values in the replay's correctness check (every call's result on "
                                 "every rank; column wrong)")
        return
    w = result.workload
    print_frame(frame, f"Replay of {plan.model.name} {plan.describe()}, batch {w.batch} {w.scenario}: one engine step "
                f"per phase on {backend} ({launcher}), p50 of {iters}; buffers of the traced sizes and types (type)",
                {"msg_bytes": "{:,.0f}", "measured_us_per_step": "{:,.1f}", "isolated_us_per_step": "{:,.1f}",
                 f"wire_us_per_step_{link_name}": "{:,.1f}"})
    console.print("measured: inside the replayed step; isolated: calls x the same call timed alone; "
                  f"wire: calls x S x busbw factor / {link_name} rate.", highlight=False)
    if wrong:
        raise CommbenchError(f"{wrong} wrong values in the replay's correctness check (every call's result on every "
                             "rank; column wrong)")


